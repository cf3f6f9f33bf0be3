"""The config's ``datasets:`` entries: ``kind`` → loader, then the one resize.

Every kind comes out with its images resized (short side) and centre-cropped to
``size`` × ``size`` by :func:`convdp.datasets.resize.resize_center_crop` when a ``size`` is
given (digits default to 32; image files decode and resize one at a time, as they may differ
in size).
"""

from __future__ import annotations

import os

from convdp.datasets.base import Dataset, select_indices
from convdp.datasets.digits import load_digits_split
from convdp.datasets.images import load_histology, load_image_folder, load_images
from convdp.datasets.registry import load_torchvision_dataset
from convdp.datasets.resize import resize_dataset


def load_dataset(spec: dict, data_root: str | os.PathLike = "data", seed: int = 0) -> Dataset:
    """Load the data set that one entry of the config's ``datasets:`` describes.

    ``spec["kind"]`` selects the loader: ``digits`` (bundled with scikit-learn),
    ``torchvision`` (MNIST, CIFAR10, …; downloaded into ``data_root``), ``folder`` (an image
    folder, class sub-folders as labels), ``images`` (a few images on their own) or
    ``histology`` (scikit-image's immunohistochemistry image, the paper's stand-in).
    ``classes`` and ``max_samples`` select a class subset and cap the count (seeded).
    """
    kind = spec["kind"]
    if kind != "digits" and (spec.get("transform") or spec.get("part", "all") != "all"):
        raise ValueError(f"'transform' and 'part' are for kind digits, not {kind!r}")
    classes, cap, size = spec.get("classes"), spec.get("max_samples"), spec.get("size")
    depth = spec.get("bit_depth", "auto")
    depth = None if depth == "auto" else int(depth)
    if kind == "digits":
        return load_digits_split(classes, size or 32, cap, seed, part=spec.get("part", "all"),
                                 heldout_fraction=spec.get("heldout_fraction", 0.5),
                                 transform=spec.get("transform"))
    if kind == "torchvision":
        ds = load_torchvision_dataset(
            spec["name"], data_root, spec.get("split", "train"), classes, cap, seed,
            spec.get("base_url"),
        )
        return resize_dataset(ds, size)
    if kind == "folder":
        return load_image_folder(spec["path"], size, spec.get("on_error", "stop"), classes, cap,
                                 seed, depth)
    if kind in ("images", "histology"):
        if classes is not None:
            raise ValueError(f"kind {kind!r} has no labels, so 'classes' cannot be used")
        if kind == "images":
            # the cap picks the files before they are read, as for a folder: the images left
            # out neither set the depth of the ones kept nor stay in ``files``
            paths = spec["paths"]
            paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
            keep = select_indices(None, len(paths), None, cap, seed)
            return load_images([paths[i] for i in keep], size, depth)
        ds = load_histology(size)
        keep = select_indices(None, len(ds.images), None, cap, seed)
        return Dataset(ds.images[keep], None, ds.class_names, ds.source, ds.files, ds.depth)
    raise ValueError(f"unknown data set kind {kind!r}")
