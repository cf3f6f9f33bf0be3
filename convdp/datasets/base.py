"""The common types of every loader: :class:`Dataset`, the errors, the torchvision registry's
entries (:class:`RemoteFile`, :class:`TorchvisionSpec`), and :func:`select_indices`, the class
subset and seeded cap that all loaders share."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    """Images with their labels and provenance.

    Attributes
    ----------
    images : ndarray (N, H, W, C) uint8
    labels : ndarray (N,) int64, or None when the images are unlabelled
    class_names : names indexed by label value (the full list, also for a class subset)
    source : human-readable provenance (URL, folder, package)
    files : source file name → md5 or sha256 hex digest of each source file used
    depth : how images wider than 8 bits were scaled to 0–255 (``bits``, the data's ``max``,
        whether the config ``set`` the depth), None where there were none
    """

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    source: str
    files: dict[str, str] = field(default_factory=dict)
    depth: dict | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, np.ndarray) or self.images.ndim != 4:
            shape = getattr(self.images, "shape", None)
            raise ValueError(f"images must be an (N, H, W, C) array, got shape {shape}")
        if self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {self.images.dtype} ({self.source})")
        if self.labels is not None:
            if not isinstance(self.labels, np.ndarray):
                raise ValueError(f"labels must be a numpy array or None ({self.source})")
            if self.labels.dtype != np.int64 or self.labels.shape != (len(self.images),):
                raise ValueError(
                    f"labels must be ({len(self.images)},) int64, got {self.labels.shape} "
                    f"{self.labels.dtype} ({self.source})"
                )

    def __len__(self) -> int:
        return len(self.images)


class DatasetError(ValueError):
    """A data set cannot be loaded as asked (bad layout, bad argument, bad file format)."""


class ImageReadError(DatasetError):
    """An image file cannot be read (unreadable, truncated, not an image)."""

    def __init__(self, path: str | os.PathLike, reason: object):
        # Pillow names the in-memory copy it was given ("<_io.BytesIO object at 0x…>")
        reason = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(reason))
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def checked_images(images: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """``images`` unchanged if they are 8-bit pixels; refused, naming ``path``, otherwise (a
    cast would wrap values above 255 and floor values in 0-1 to black)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: images must be 8-bit (uint8), got {images.dtype}")
    return images


def checked_labels(labels: np.ndarray, n_classes: int, path: str | os.PathLike,
                   first: int = 0, note: str = "") -> np.ndarray:
    """``labels`` (N,) as int64 if they are integers in ``first`` .. ``first + n_classes - 1``
    (a format's own numbering: STL-10's and SVHN's start at 1); refused, naming ``path``, the
    values outside and ``note``, otherwise."""
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iu":
        raise DatasetError(f"{path}: labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    last = first + n_classes - 1
    bad = np.unique(labels[(labels < first) | (labels > last)])
    if bad.size:
        shown = ", ".join(map(str, bad[:5].tolist())) + (", ..." if bad.size > 5 else "")
        raise DatasetError(f"{path}: labels {shown} outside {first}-{last} "
                           f"({n_classes} classes{note})")
    return labels


def select_indices(
    labels: np.ndarray | None,
    n: int,
    classes: Iterable[int] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices (sorted) of the images to keep out of ``n``.

    ``classes`` keeps the images whose label is in it (needs labels). ``max_samples`` caps
    the count: a seeded, class-stratified pick when there are labels (each class keeps its
    share, largest remainders get the leftover slots, and every class two images at least,
    one where it has one, where ``max_samples`` allows: a rare class's share rounded to 0 left
    it out of the data set without a word, and a net trained on it had a class fewer), a
    seeded uniform pick otherwise. A cap too small for that gives a warning.
    """
    idx = np.arange(n)
    if classes is not None:
        if labels is None:
            raise DatasetError("a class subset was asked for, but the images have no labels")
        wanted = np.asarray(sorted({int(c) for c in classes}), dtype=np.int64)
        idx = idx[np.isin(labels, wanted)]
        if len(idx) == 0:
            raise DatasetError(f"no images of classes {wanted.tolist()}")
    if max_samples is None or max_samples >= len(idx):
        return idx
    if max_samples < 1:
        raise DatasetError(f"max_samples must be a positive integer, got {max_samples}")
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(idx, size=max_samples, replace=False))
    sub = labels[idx]
    values, inverse = np.unique(sub, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(values)).astype(np.int64)
    # Proportional quotas in exact integer arithmetic (largest remainder method).
    quota = counts * max_samples // len(idx)
    remainder = counts * max_samples % len(idx)
    leftover = max_samples - int(quota.sum())
    quota[np.argsort(-remainder, kind="stable")[:leftover]] += 1
    # every class two images at least (one where it has one) where the cap allows: a rare
    # class's share rounded to 0 left it out without a word (a net trained on the set had a
    # class fewer), and training, its stratified split and the linear probe need two a class
    floor = np.minimum(2, counts)
    if max_samples >= int(floor.sum()):
        for k in np.flatnonzero(quota < floor):
            for _ in range(int(floor[k] - quota[k])):  # from the largest, which stays above
                quota[np.argmax(quota)] -= 1
            quota[k] = floor[k]
    else:
        log.warning("max_samples %d cannot give each of the %d classes two images: classes "
                    "%s keep fewer (or none)", max_samples, len(values),
                    values[quota < floor].tolist())
    picked = [
        rng.choice(idx[inverse == k], size=int(q), replace=False)
        for k, q in enumerate(quota)
        if q > 0
    ]
    return np.sort(np.concatenate(picked))


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set on its server.

    ``members`` (for a tar archive) maps the archive member files to their MD5, relative to
    the spec's ``archive_folder``, and ``member_splits`` says which split needs which member.
    """

    filename: str
    md5: str
    splits: tuple[str, ...]
    members: tuple[tuple[str, str], ...] = ()
    member_splits: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class TorchvisionSpec:
    """One torchvision data set: its server files and how to read them (``fmt``)."""

    name: str
    fmt: str  # "idx", "cifar10", "cifar100", "svhn", "stl10"
    mirrors: tuple[str, ...]  # base URLs; a file's URL is mirror + filename
    files: tuple[RemoteFile, ...]
    splits: tuple[str, ...]
    class_names: tuple[str, ...] = ()  # when the archive carries no class name file
    archive_folder: str | None = None  # the folder a tar archive unpacks to
    homepage: str = ""

