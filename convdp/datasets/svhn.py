"""SVHN: MATLAB ``.mat`` files (read with scipy), one per split; mirror and MD5s copied from
torchvision 0.29.1's ``torchvision/datasets/svhn.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convdp.datasets.base import (
    DatasetError,
    RemoteFile,
    TorchvisionSpec,
    checked_images,
    checked_labels,
)

SVHN = TorchvisionSpec(
    name="SVHN",
    fmt="svhn",
    mirrors=("http://ufldl.stanford.edu/housenumbers/",),
    files=(
        RemoteFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", ("train",)),
        RemoteFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", ("test",)),
        RemoteFile("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7", ("extra",)),
    ),
    splits=("train", "test", "extra"),
    class_names=tuple(str(d) for d in range(10)),
    homepage="http://ufldl.stanford.edu/housenumbers/",
)

SPECS = (SVHN,)


def load(
    spec: TorchvisionSpec, folder: Path, split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One split: images (N, 32, 32, 3), labels (N,) with the digit 0 as 0, the class names."""
    import scipy.io

    path = folder / f"{split}_32x32.mat"
    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # noqa: BLE001 - scipy raises ValueError, MatReadError, IndexError…
        raise DatasetError(f"{path}: not a readable MATLAB file ({e})") from e
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        got = "no X or y" if x is None or y is None else f"X {x.shape}"
        raise DatasetError(f"{path}: expected X (32, 32, 3, N) and y (N, 1), got {got}")
    images = np.ascontiguousarray(checked_images(x, path).transpose(3, 0, 1, 2))
    if y.size != len(images):
        raise DatasetError(f"{path}: {y.size} labels for {len(images)} images")
    # SVHN labels the digits 1-9 as themselves and 0 as 10
    labels = checked_labels(y, len(spec.class_names), path, first=1,
                            note="; SVHN writes the digit 0 as 10")
    return images, labels % 10, list(spec.class_names)

