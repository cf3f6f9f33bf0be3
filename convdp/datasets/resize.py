"""The one resize every kind of data set goes through: short side to ``size``, then a centre
crop to ``size`` × ``size`` (what the config schema's ``size`` promises).

The filter is bilinear with antialiasing (torch's ``interpolate(mode="bilinear",
antialias=True)``, computed in float and rounded): plain bilinear interpolation when
enlarging, a triangle filter widened by the scale factor when shrinking, so a large image
is averaged rather than aliased. Square images are only resized (the crop takes nothing
off), so the digits' 8×8 → 32×32 images are what they always were.
"""

from __future__ import annotations

import numpy as np

from convdp.datasets.base import Dataset

_BATCH = 1024  # images interpolated at a time (bounds the float copy)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) once the short side of a height × width image is ``size``: the long
    side truncated, as torchvision's ``Resize(size)`` does."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of the centre ``size`` × ``size`` crop of a height × width image, rounded
    as torchvision's ``CenterCrop`` rounds them."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def resize_center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) uint8 images → (N, size, size, C) uint8: short side resized to ``size``
    (bilinear, antialiased), then centre-cropped; the geometry and filter of torchvision's
    ``Resize(size, antialias=True)`` then ``CenterCrop(size)`` on float tensors, rounded.
    Returns ``images`` itself when they are size × size already."""
    import torch
    import torch.nn.functional as F

    n, h, w, _ = images.shape
    if (h, w) == (size, size):
        return images
    nh, nw = resized_shape(h, w, size)
    top, left = crop_offsets(nh, nw, size)
    out = np.empty((n, size, size, images.shape[3]), np.uint8)
    for start in range(0, n, _BATCH):
        x = torch.from_numpy(images[start : start + _BATCH].astype(np.float32)).permute(0, 3, 1, 2)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False,
                              antialias=True)
        y = x[:, :, top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8)
        out[start : start + _BATCH] = y.permute(0, 2, 3, 1).numpy()
    return out


def resize_dataset(ds: Dataset, size: int | None) -> Dataset:
    """``ds`` with its images resized and centre-cropped to size × size (see
    :func:`resize_center_crop`); ``ds`` itself when size is None or nothing changes."""
    if size is None:
        return ds
    images = resize_center_crop(ds.images, size)
    if images is ds.images:
        return ds
    return Dataset(images, ds.labels, ds.class_names, ds.source, ds.files)
