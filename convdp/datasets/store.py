"""The data set store (``results/data/{dataset}.zarr``): written atomically, opened read-only
with a clear error when missing or incomplete, read back whole.

Layout:

- ``images``: (N, H, W, C) uint8, chunked along N;
- ``labels``: (N,) int64, ``-1`` everywhere when the data set has no labels;
- attributes ``class_names``, ``source``, ``files`` (source file → sha256), ``checksum``
  (sha256 of the stored images and labels, :func:`content_checksum`), ``labelled`` and
  ``n_images``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convdp.datasets.base import Dataset
from convdp.io import finish_zarr_writes

if TYPE_CHECKING:
    import zarr

UNLABELLED = -1


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
    import zarr

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
                "depth": data.depth,
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
    import zarr

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


def read_labels(path: str | os.PathLike, group: zarr.Group | None = None) -> np.ndarray | None:
    """The class of each image of the stored data set, or None when it is unlabelled
    (``group``: the store already opened)."""
    group = open_dataset(path) if group is None else group
    return group["labels"][:] if group.attrs.get("labelled", True) else None


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Read a whole data set store back into memory."""
    group = open_dataset(path)
    attrs = dict(group.attrs)
    return Dataset(
        images=group["images"][:],
        labels=read_labels(path, group),
        class_names=list(attrs.get("class_names", [])),
        source=attrs.get("source", str(path)),
        files=dict(attrs.get("files", {})),
        depth=attrs.get("depth"),
    )
