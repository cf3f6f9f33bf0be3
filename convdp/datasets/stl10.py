"""STL-10: raw binaries in a tar.gz (memory-mapped, so that a few images of the 2.7 GB
unlabeled file cost only what they are); mirror and MD5s copied from torchvision 0.29.1's
``torchvision/datasets/stl10.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convdp.datasets.base import DatasetError, RemoteFile, TorchvisionSpec, checked_labels

STL10 = TorchvisionSpec(
    name="STL10",
    fmt="stl10",
    mirrors=("http://ai.stanford.edu/~acoates/stl10/",),
    files=(
        RemoteFile(
            "stl10_binary.tar.gz",
            "91f7769df0f17e558f3565bffb0c7dfb",
            ("train", "test", "unlabeled"),
            members=(
                ("train_X.bin", "918c2871b30a85fa023e0c44e0bee87f"),
                ("train_y.bin", "5a34089d4802c674881badbb80307741"),
                ("unlabeled_X.bin", "5242ba1fed5e4be9e1e742405eb56ca4"),
                ("test_X.bin", "7f263ba9f9e0b06b93213547f721ac82"),
                ("test_y.bin", "36f9794fa4beb8a2c72628de14fa638e"),
            ),
            member_splits=(
                ("train", ("train_X.bin", "train_y.bin")),
                ("test", ("test_X.bin", "test_y.bin")),
                ("unlabeled", ("unlabeled_X.bin",)),
            ),
        ),
    ),
    splits=("train", "test", "unlabeled"),
    # The archive's class_names.txt is used when present; this is its content.
    class_names=(
        "airplane",
        "bird",
        "car",
        "cat",
        "deer",
        "dog",
        "horse",
        "monkey",
        "ship",
        "truck",
    ),
    archive_folder="stl10_binary",
    homepage="https://cs.stanford.edu/~acoates/stl10/",
)

SPECS = (STL10,)


def load(
    spec: TorchvisionSpec, folder: Path, split: str
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """One split: images (N, 96, 96, 3) as a view of the memory-mapped file, so that indexing
    it reads only the chosen images; labels (N,) (None for ``unlabeled``); the class names."""
    assert spec.archive_folder is not None
    base = folder / spec.archive_folder
    x_path = base / f"{split}_X.bin"
    size = 3 * 96 * 96
    if not x_path.is_file() or x_path.stat().st_size == 0:
        raise DatasetError(f"{x_path}: {'empty' if x_path.is_file() else 'missing'}")
    raw = np.memmap(x_path, dtype=np.uint8, mode="r")
    if raw.size % size:
        raise DatasetError(f"{x_path}: {raw.size} bytes is not a whole number of 96×96×3 images")
    # Each image is stored channel by channel, column-major: (C, W, H) → (H, W, C).
    images = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
    names = _class_names(spec, base / "class_names.txt")
    labels = None
    if split != "unlabeled":
        y_path = base / f"{split}_y.bin"
        on_disk = np.fromfile(y_path, dtype=np.uint8)
        if len(on_disk) != len(images):
            raise DatasetError(f"{y_path}: {len(on_disk)} labels for {len(images)} images")
        labels = checked_labels(on_disk, len(names), y_path, first=1,
                                note="; STL-10's labels are 1-based") - 1
    return images, labels, names


def _class_names(spec: TorchvisionSpec, path: Path) -> list[str]:
    """The archive's class names, one per line (a trailing empty line allowed), or the
    spec's where the archive has none; as many as the spec's, none empty."""
    if not path.is_file():
        return list(spec.class_names)
    names = [n.strip() for n in path.read_text().rstrip("\n").split("\n")]
    if len(names) != len(spec.class_names) or not all(names):
        raise DatasetError(f"{path}: expected {len(spec.class_names)} class names, one per "
                           f"line, got {names}")
    return names
