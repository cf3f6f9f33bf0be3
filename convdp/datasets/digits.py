"""scikit-learn's handwritten digits (1797 images of 8×8, shipped with scikit-learn, so the
default workflow works offline), split by class the way transfer studies split a data set:
source = digits 0–4, target = digits 5–9."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convdp.datasets.base import Dataset, select_indices
from convdp.datasets.fetch import file_hash
from convdp.datasets.resize import resize_center_crop


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
    images = resize_center_crop(images, size)
    csv = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    files = {csv.name: file_hash(csv)} if csv.exists() else {}
    return Dataset(
        images=images,
        labels=labels,
        class_names=[str(d) for d in range(10)],
        source=f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
        files=files,
    )
