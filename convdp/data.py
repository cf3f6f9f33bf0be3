"""Data sets on disk: images (N, H, W, C), labels (N,), class names and provenance, in Zarr.

The default workflow uses scikit-learn's handwritten digits (1797 images of 8×8, shipped
with scikit-learn, so it works offline), resized to 32×32 and split by class the way
transfer studies split a data set: source = digits 0–4, target = digits 5–9.

Store layout (``results/data/{dataset}.zarr``):

- ``images``: (N, H, W, C) uint8, chunked along N;
- ``labels``: (N,) int64, ``-1`` everywhere when the data set has no labels;
- attributes ``class_names``, ``source``, ``files`` (source file → sha256), ``checksum``
  (sha256 of the stored images and labels) and ``labelled``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import zarr

from convdp.datasets import Dataset, select_indices
from convdp.download import file_hash
from convdp.io import finish_zarr_writes

UNLABELLED = -1


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, H, W, C) uint8 images to (N, size, size, C) uint8."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_digits_split(
    classes: list[int] | None = None, size: int = 32, max_samples: int | None = None, seed: int = 0
) -> Dataset:
    """scikit-learn's handwritten digits, optionally a class subset, resized to ``size``.

    Pixel values 0–16 are scaled to 0–255. Labels keep their digit value, so the target
    split (5–9) has labels 5–9 and ``class_names`` is always ``["0", …, "9"]``.
    """
    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    if classes is not None:
        unknown = sorted(set(classes) - set(range(10)))
        if unknown:
            raise ValueError(f"digits has classes 0-9; unknown classes {unknown}")
    keep = select_indices(labels, len(labels), classes, max_samples, seed)
    images, labels = images[keep], labels[keep]
    if size != images.shape[1]:
        images = resize_images(images, size)
    csv = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    files = {csv.name: file_hash(csv)} if csv.exists() else {}
    return Dataset(
        images=images,
        labels=labels,
        class_names=[str(d) for d in range(10)],
        source=f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
        files=files,
    )


def content_checksum(images: np.ndarray, labels: np.ndarray | None) -> str:
    """sha256 over the image bytes, their shape and the labels: identifies the data exactly."""
    h = hashlib.sha256()
    h.update(repr(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def write_dataset(path: str | os.PathLike, data: Dataset, chunk: int = 256) -> str:
    """Write ``data`` to a Zarr store at ``path`` atomically; return its checksum.

    The store is written under a temporary name beside ``path`` and renamed into place, so
    a killed job never leaves a store that looks finished.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    images = np.ascontiguousarray(data.images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype} ({data.source})")
    labels = (
        np.full(len(images), UNLABELLED, np.int64)
        if data.labels is None
        else np.asarray(data.labels, np.int64)
    )
    checksum = content_checksum(images, data.labels)
    try:
        group = zarr.open_group(tmp, mode="w")
        arr = group.create_array(
            "images", shape=images.shape, chunks=(min(chunk, len(images)), *images.shape[1:]),
            dtype="uint8",
        )
        arr[:] = images
        group.create_array("labels", shape=labels.shape, dtype="int64")[:] = labels
        group.attrs.update(
            {
                "class_names": list(data.class_names),
                "source": data.source,
                "files": dict(data.files),
                "checksum": checksum,
                "labelled": data.labels is not None,
                "n_images": int(len(images)),
            }
        )
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as exc:
        finish_zarr_writes()  # else writes still in flight recreate what rmtree removes
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk, say: name the store
            raise OSError(exc.errno, f"could not write {path}: {exc.strerror or exc}") from exc
        raise
    return checksum


def open_dataset(path: str | os.PathLike) -> zarr.Group:
    """Open a data set store read-only, with a clear error if it is missing or incomplete."""
    path = Path(path)
    try:
        group = zarr.open_group(path, mode="r")
        group["images"], group["labels"]  # noqa: B018 - presence check
        group.attrs["checksum"]  # noqa: B018
    except (FileNotFoundError, KeyError) as exc:
        raise ValueError(
            f"{path} is not a complete convdp data set store (missing {exc}); "
            "delete it and rerun the workflow"
        ) from exc
    return group


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Read a whole data set store back into memory."""
    group = open_dataset(path)
    attrs = dict(group.attrs)
    labels = group["labels"][:]
    return Dataset(
        images=group["images"][:],
        labels=labels if attrs.get("labelled", True) else None,
        class_names=list(attrs.get("class_names", [])),
        source=attrs.get("source", str(path)),
        files=dict(attrs.get("files", {})),
    )


def load_dataset(spec: dict, data_root: str | os.PathLike = "data", seed: int = 0) -> Dataset:
    """Load the data set that one entry of the config's ``datasets:`` describes.

    ``spec["kind"]`` selects the loader: ``digits`` (bundled with scikit-learn),
    ``torchvision`` (MNIST, CIFAR10, …; downloaded into ``data_root``), ``folder`` (an image
    folder, class sub-folders as labels), ``images`` (a few images on their own) or
    ``histology`` (scikit-image's immunohistochemistry image, the paper's stand-in).
    ``classes`` and ``max_samples`` select a class subset and cap the count (seeded).
    """
    from convdp import datasets as dsets

    kind = spec["kind"]
    classes, cap, size = spec.get("classes"), spec.get("max_samples"), spec.get("size")
    if kind == "digits":
        return load_digits_split(classes, size or 32, cap, seed)
    if kind == "torchvision":
        ds = dsets.load_torchvision_dataset(
            spec["name"], data_root, spec.get("split", "train"), classes, cap, seed,
            spec.get("base_url"),
        )
        return resize_dataset(ds, size)
    if kind == "folder":
        return dsets.load_image_folder(spec["path"], size, spec.get("on_error", "stop"), classes,
                                       cap, seed)
    if kind in ("images", "histology"):
        if classes is not None:
            raise ValueError(f"kind {kind!r} has no labels, so 'classes' cannot be used")
        ds = dsets.load_images(spec["paths"], size) if kind == "images" else dsets.load_histology(size)
        keep = select_indices(None, len(ds.images), None, cap, seed)
        return Dataset(ds.images[keep], None, ds.class_names, ds.source, ds.files)
    raise ValueError(f"unknown data set kind {kind!r}")


def resize_dataset(ds: Dataset, size: int | None) -> Dataset:
    """``ds`` with its (square) images resized to size × size; unchanged when size is None."""
    if size is None or size == ds.images.shape[1] == ds.images.shape[2]:
        return ds
    return Dataset(resize_images(ds.images, size), ds.labels, ds.class_names, ds.source, ds.files)
