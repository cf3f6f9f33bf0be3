"""The torchvision data sets: the registry (one entry per data set, its files and MD5s kept
beside its parser in :mod:`~convdp.datasets.mnist`, :mod:`~convdp.datasets.cifar`,
:mod:`~convdp.datasets.svhn` and :mod:`~convdp.datasets.stl10`), fetching a split's files, and
loading a split.

Files are *not* downloaded through torchvision's dataset classes: they go through
:func:`convdp.datasets.fetch.download_any` into ``<root>/<NAME>/`` and are parsed with numpy.
``base_url`` points every file of a data set at another server (a mirror, a local ``file://``
folder, or a test server).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from convdp.datasets import cifar, mnist, stl10, svhn
from convdp.datasets.base import Dataset, DatasetError, RemoteFile, TorchvisionSpec, select_indices
from convdp.datasets.fetch import (
    MARKER,
    DownloadError,
    download_any,
    ensure_extracted,
    is_extracted,
    verify_file,
)

log = logging.getLogger(__name__)

# Each format's parser: (spec, folder, split) → images (N, H, W, C) uint8 (possibly a lazy
# view: only the images selected are read), labels (N,) int64 or None, class names.
_Parser = Callable[[TorchvisionSpec, Path, str], tuple[np.ndarray, np.ndarray | None, list[str]]]
_PARSERS: dict[str, _Parser] = {
    "idx": mnist.load,
    "cifar10": cifar.load,
    "cifar100": cifar.load,
    "svhn": svhn.load,
    "stl10": stl10.load,
}

TORCHVISION_REGISTRY: dict[str, TorchvisionSpec] = {
    spec.name: spec for spec in (*mnist.SPECS, *cifar.SPECS, *svhn.SPECS, *stl10.SPECS)
}
TORCHVISION_DATASETS = tuple(TORCHVISION_REGISTRY)


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _get_spec(name: str) -> TorchvisionSpec:
    by_key = {_normalise(k): k for k in TORCHVISION_REGISTRY}
    key = by_key.get(_normalise(name))
    if key is None:
        raise DatasetError(
            f"unknown torchvision data set {name!r}; known: {', '.join(TORCHVISION_REGISTRY)}"
        )
    return TORCHVISION_REGISTRY[key]


def _check_split(spec: TorchvisionSpec, split: str) -> None:
    if split not in spec.splits:
        raise DatasetError(
            f"{spec.name} has splits {', '.join(spec.splits)}; unknown split {split!r}"
        )


def _urls(spec: TorchvisionSpec, filename: str, base_url: str | None) -> list[str]:
    bases = [base_url] if base_url else list(spec.mirrors)
    return [b.rstrip("/") + "/" + filename for b in bases]


def _member_names(rf: RemoteFile, split: str | None) -> list[str]:
    if split is None:
        return [m for m, _ in rf.members]
    return list(dict(rf.member_splits)[split])


def _ensure_files(
    spec: TorchvisionSpec, root: str | os.PathLike, split: str | None, base_url: str | None
) -> tuple[Path, dict[str, str]]:
    """Make the files of ``split`` (all splits when None) present and verified.

    Returns the data set folder and the files used (name → md5).
    """
    folder = Path(root) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    needed = [rf for rf in spec.files if split is None or split in rf.splits]
    used: dict[str, str] = {}
    for rf in needed:
        try:
            used.update(_ensure_file(spec, folder, rf, split, base_url))
        except DownloadError as e:
            listing = ", ".join(f"{f.filename} (md5 {f.md5})" for f in needed)
            where = f"{spec.name} {split} split" if split else spec.name
            e.add_note(f"{where} needs these files in {folder}: {listing}")
            raise
    return folder, used


def _changed_members(unpacked: Path, rf: RemoteFile, split: str | None) -> list[str]:
    """The members ``split`` needs (all when None) that are missing from ``unpacked`` or
    differ from their MD5s (the MD5s of an archive's members are checked on every load, as
    the MNIST and SVHN files are)."""
    md5s = dict(rf.members)
    return [m for m in _member_names(rf, split) if not verify_file(unpacked / m, md5=md5s[m])]


def _ensure_file(
    spec: TorchvisionSpec, folder: Path, rf: RemoteFile, split: str | None, base_url: str | None
) -> dict[str, str]:
    """Make one registry file present and verified (downloaded, unpacked); name → md5 used."""
    dest = folder / rf.filename
    if rf.members:
        assert spec.archive_folder is not None
        unpacked = folder / spec.archive_folder
        marked = is_extracted(unpacked, rf.md5)
        # Our own unpack, or, without the archive, an unpacked folder (e.g. copied from a
        # torchvision root): used when each needed member has torchvision's md5
        if marked or (not dest.exists() and unpacked.is_dir()):
            changed = _changed_members(unpacked, rf, split)
            if not changed and marked:
                return {rf.filename: rf.md5}
            if not changed:
                md5s = dict(rf.members)
                return {f"{spec.archive_folder}/{m}": md5s[m] for m in _member_names(rf, split)}
            if marked:
                # a member changed after unpacking (an interrupted copy, an edit): unpack the
                # archive again (fetched again where it is gone) rather than read it
                log.warning("%s no longer match their MD5s since %s was unpacked; unpacking it "
                            "again", ", ".join(str(unpacked / m) for m in changed), rf.filename)
                (unpacked / MARKER).unlink()
        download_any(_urls(spec, rf.filename, base_url), dest, rf.md5)
        ensure_extracted(dest, rf.md5, spec.archive_folder)
        changed = _changed_members(unpacked, rf, split)
        if changed:
            raise DatasetError(f"{unpacked / changed[0]}, unpacked from {dest}, does not match "
                               f"its MD5 {dict(rf.members)[changed[0]]}")
    else:
        download_any(_urls(spec, rf.filename, base_url), dest, rf.md5)
    return {rf.filename: rf.md5}


def fetch_torchvision_dataset(
    name: str,
    root: str | os.PathLike,
    base_url: str | None = None,
    split: str | None = None,
) -> Path:
    """Download and verify (and unpack archives of) a torchvision data set; load nothing.

    ``split=None`` fetches every split's files (note SVHN's ``extra`` is 1.3 GB, STL-10's
    single archive 2.6 GB). Returns ``<root>/<NAME>``. Files already present with the right
    checksum are not downloaded again.
    """
    spec = _get_spec(name)
    if split is not None:
        _check_split(spec, split)
    folder, _ = _ensure_files(spec, root, split, base_url)
    return folder


def load_torchvision_dataset(
    name: str,
    root: str | os.PathLike,
    split: str = "train",
    classes: Sequence[int] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    base_url: str | None = None,
) -> Dataset:
    """One split of MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100, SVHN or STL10.

    Files are downloaded (if missing) and verified into ``<root>/<NAME>/``; ``base_url``
    replaces the data set's mirrors (file URL = base_url + "/" + file name). Splits: train and
    test, plus SVHN's extra and STL-10's unlabeled (labels None).

    ``classes`` (label values) keeps a class subset; labels keep their original values and
    ``class_names`` stays the full list. ``max_samples`` caps the number of images by a
    seeded, class-stratified pick (see :func:`select_indices`). Images come back in file
    order; MNIST-family images have one channel, the others three.
    """
    spec = _get_spec(name)
    _check_split(spec, split)
    folder, files = _ensure_files(spec, root, split, base_url)

    def keep(labels: np.ndarray | None, n: int, n_classes: int) -> np.ndarray:
        if classes is not None:
            bad = sorted({int(c) for c in classes} - set(range(n_classes)))
            if bad:
                raise DatasetError(f"{spec.name} has classes 0-{n_classes - 1}; unknown {bad}")
        return select_indices(labels, n, classes, max_samples, seed)

    images, labels, class_names = _PARSERS[spec.fmt](spec, folder, split)
    idx = keep(labels, len(images), len(class_names))
    if len(idx) != len(images):  # only the images chosen are read (STL-10 is memory-mapped)
        images, labels = images[idx], None if labels is None else labels[idx]
    images = np.ascontiguousarray(images)
    where = base_url or spec.mirrors[0]
    return Dataset(
        images=images,
        labels=labels,
        class_names=class_names,
        source=f"{spec.name} {split} split from {where} (files in {folder})",
        files=files,
    )
