"""CIFAR-10 and CIFAR-100: pickled batches in a tar.gz, read with a numpy-only unpickler; their
mirrors and MD5s (archive and members) are copied from torchvision 0.29.1's
``torchvision/datasets/cifar.py``."""

from __future__ import annotations

import contextlib
import importlib
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from convdp.datasets.base import (
    DatasetError,
    RemoteFile,
    TorchvisionSpec,
    checked_images,
    checked_labels,
)

CIFAR10 = TorchvisionSpec(
    name="CIFAR10",
    fmt="cifar10",
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    files=(
        RemoteFile(
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            ("train", "test"),
            members=(
                ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                ("test_batch", "40351d587109b95175f43aff81a1287e"),
                ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
            ),
            member_splits=(
                (
                    "train",
                    (
                        "data_batch_1",
                        "data_batch_2",
                        "data_batch_3",
                        "data_batch_4",
                        "data_batch_5",
                        "batches.meta",
                    ),
                ),
                ("test", ("test_batch", "batches.meta")),
            ),
        ),
    ),
    splits=("train", "test"),
    archive_folder="cifar-10-batches-py",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
)

CIFAR100 = TorchvisionSpec(
    name="CIFAR100",
    fmt="cifar100",
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    files=(
        RemoteFile(
            "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
            ("train", "test"),
            members=(
                ("train", "16019d7e3df5f24257cddd939b257f8d"),
                ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
                ("meta", "7973b15100ade9c7d40fb424638fde48"),
            ),
            member_splits=(("train", ("train", "meta")), ("test", ("test", "meta"))),
        ),
    ),
    splits=("train", "test"),
    archive_folder="cifar-100-python",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
)

SPECS = (CIFAR10, CIFAR100)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: plain containers and numpy arrays, nothing else.

    The CIFAR files are Python pickles inside a tar.gz whose md5 is verified against a fixed
    value before it is unpacked, and the pickles only hold dicts of lists, byte strings and
    numpy arrays. As a second line of defence this unpickler refuses every global other than
    the few numpy needs to rebuild an array, so a tampered file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in CIFAR data")
        if module.startswith("numpy.core."):  # numpy 2 renamed numpy.core to numpy._core
            with contextlib.suppress(ImportError):
                return getattr(importlib.import_module("numpy._core" + module[10:]), name)
        return getattr(importlib.import_module(module), name)


def read_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle (a batch or the meta file) as a dict with str keys."""
    with open(path, "rb") as f:
        # encoding="bytes": the files are Python 2 pickles (str → bytes), as the CIFAR page
        # recommends; safe here because the archive is md5-verified and the unpickler only
        # accepts numpy arrays (see _NumpyOnlyUnpickler).
        try:
            entry = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:  # cut short, damaged
            raise DatasetError(f"{path}: not a readable CIFAR pickle ({e})") from e
    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(entry).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _decode_names(names: Iterable[Any]) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def load(
    spec: TorchvisionSpec, folder: Path, split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One split: images (N, 32, 32, 3), labels (N,) (fine labels for CIFAR-100), class names."""
    assert spec.archive_folder is not None
    base = folder / spec.archive_folder
    if spec.fmt == "cifar10":
        batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        batches = [split]
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    meta = read_pickle(base / meta_file)
    if names_key not in meta:
        raise DatasetError(f"{base / meta_file}: no {names_key!r} entry")
    names = _decode_names(meta[names_key])
    data, labels = [], []
    for batch in batches:
        entry = read_pickle(base / batch)
        try:
            x = checked_images(entry["data"], base / batch)
            y = np.asarray(entry[labels_key])
        except KeyError as e:
            raise DatasetError(f"{base / batch}: no {e} entry") from e
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.ndim != 1 or len(y) != len(x):
            raise DatasetError(
                f"{base / batch}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}"
            )
        data.append(x)
        labels.append(checked_labels(y, len(names), base / batch))
    # Rows are 1024 red, 1024 green, 1024 blue values, each a 32×32 image in row-major order.
    images = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.concatenate(labels), names

