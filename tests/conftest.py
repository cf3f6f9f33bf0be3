"""Shared fixtures: the repository root, a tiny trained-or-not net, planted mixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def digitnet():
    from convdp.models import DigitNet

    torch.manual_seed(0)
    return DigitNet(num_classes=5, in_channels=1).eval()


@pytest.fixture
def tiny_images():
    """(40, 16, 16, 1) uint8 digits."""
    from convdp.data import load_digits_split

    return load_digits_split([0, 1, 2], size=16).images[:40]


def planted_mixture(n_per: int, centres: np.ndarray, scale: float = 0.3, seed: int = 0):
    """Samples from well-separated isotropic Gaussians; returns (X, labels)."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + scale * rng.standard_normal((n_per, centres.shape[1])) for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per)
    return X, y
