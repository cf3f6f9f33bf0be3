"""scikit-learn's handwritten digits (1797 images of 8×8, shipped with scikit-learn, so the
default workflow works offline), split by class the way transfer studies split a data set:
source = digits 0–4, target = digits 5–9."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convdp.datasets.base import Dataset, select_indices
from convdp.datasets.fetch import file_hash
from convdp.datasets.resize import resize_center_crop
from convdp.datasets.transforms import transform_images


def load_digits_split(
    classes: list[int] | None = None,
    size: int = 32,
    max_samples: int | None = None,
    seed: int = 0,
    *,
    part: str = "all",
    heldout_fraction: float = 0.5,
    transform: dict | None = None,
) -> Dataset:
    """scikit-learn's handwritten digits, optionally a class subset, resized to ``size``.

    Pixel values 0–16 are scaled to 0–255. Labels keep their digit value, so the target
    split (5–9) has labels 5–9 and ``class_names`` is always ``["0", …, "9"]``.

    ``part``: ``all`` the images, or one side of a seeded, class-stratified split of the
    selected classes' images into ``train`` and ``heldout`` (``heldout_fraction`` of them): a
    source trained on ``part: train`` and a target with ``part: heldout`` (same classes,
    same fraction, same seed) share no image; other classes or fractions split other images
    (``convdp.config`` refuses such pairs where their classes overlap). ``max_samples`` then
    caps the part. ``transform`` (``{"name": ..., "strength": ...}``,
    :mod:`convdp.datasets.transforms`) is applied after the resize, seeded by ``seed``.
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
    keep = select_indices(labels, len(labels), classes, None, seed)
    keep = split_part(labels, keep, part, heldout_fraction, seed)
    keep = keep[select_indices(labels[keep], len(keep), None, max_samples, seed)]
    images, labels = images[keep], labels[keep]
    images = resize_center_crop(images, size)
    if transform:
        images = transform_images(images, transform["name"], transform.get("strength"), seed)
    csv = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    files = {csv.name: file_hash(csv)} if csv.exists() else {}
    return Dataset(
        images=images,
        labels=labels,
        class_names=[str(d) for d in range(10)],
        source=f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
        files=files,
    )


def split_part(labels: np.ndarray, index: np.ndarray, part: str, heldout_fraction: float,
               seed: int) -> np.ndarray:
    """``index`` (all), or its ``train`` / ``heldout`` side of a seeded, class-stratified
    split; sorted."""
    from sklearn.model_selection import train_test_split

    if part == "all":
        return index
    if part not in ("train", "heldout"):
        raise ValueError(f"part must be all, train or heldout, got {part!r}")
    train, held = train_test_split(index, test_size=heldout_fraction, random_state=seed,
                                   stratify=labels[index])
    return np.sort(train if part == "train" else held)
