"""The MNIST family (MNIST, FashionMNIST, KMNIST): gzipped IDX files, with their mirrors and
MD5s (copied from torchvision 0.29.1's ``torchvision/datasets/mnist.py``)."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convdp.datasets.base import (
    DatasetError,
    RemoteFile,
    TorchvisionSpec,
    checked_images,
    checked_labels,
)

_MNIST_CLASSES = (
    "0 - zero",
    "1 - one",
    "2 - two",
    "3 - three",
    "4 - four",
    "5 - five",
    "6 - six",
    "7 - seven",
    "8 - eight",
    "9 - nine",
)


def _idx_files(md5s: Sequence[str]) -> tuple[RemoteFile, ...]:
    names = (
        ("train-images-idx3-ubyte.gz", "train"),
        ("train-labels-idx1-ubyte.gz", "train"),
        ("t10k-images-idx3-ubyte.gz", "test"),
        ("t10k-labels-idx1-ubyte.gz", "test"),
    )
    return tuple(RemoteFile(n, m, (s,)) for (n, s), m in zip(names, md5s, strict=True))


MNIST = TorchvisionSpec(
    name="MNIST",
    fmt="idx",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    files=_idx_files(
        (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        )
    ),
    splits=("train", "test"),
    class_names=_MNIST_CLASSES,
    homepage="http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST = TorchvisionSpec(
    name="FashionMNIST",
    fmt="idx",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=_idx_files(
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        )
    ),
    splits=("train", "test"),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
)

KMNIST = TorchvisionSpec(
    name="KMNIST",
    fmt="idx",
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    files=_idx_files(
        (
            "bdb82020997e1d708af4cf47b453dcf7",
            "e144d726b3acfaa3e44228e80efcd344",
            "5c965bf0a639b31b8f53240b1b52f4d7",
            "7320c461ea6c1c855c0b718fb2a4b134",
        )
    ),
    splits=("train", "test"),
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    homepage="https://github.com/rois-codh/kmnist",
)

SPECS = (MNIST, FASHION_MNIST, KMNIST)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:  # cut short, bad CRC, bad deflate data
            raise DatasetError(f"{path}: damaged gzip data ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header cut short ({len(data)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge header cannot wrap
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: IDX header says shape {shape} ({expected} bytes), "
            f"file has {len(data) - header} bytes of data"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def load(
    spec: TorchvisionSpec, folder: Path, split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One split: images (N, 28, 28, 1), labels (N,) and the class names."""
    prefix = "train" if split == "train" else "t10k"
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = checked_images(read_idx(images_path), images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: expected images (N, H, W), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    labels = checked_labels(labels, len(spec.class_names), labels_path)
    return images[..., None], labels, list(spec.class_names)

