"""The seeded draws of sample indices that the transfer scores and the ``mmd2`` baseline
read (the fits' own draw is :func:`convdp.samples.subsample`).

Apart from the modules that read them, and light to import (NumPy alone): a sample store
(:mod:`convdp.sampled`) keeps exactly these positions, chosen when the extraction starts,
and importing :mod:`convdp.transfer` for them cost an extraction a second (scikit-learn,
Matplotlib). Nor do they hold an index of every position: the held-out draw of a source
takes the positions the fit did not see from their count, so that a layer of 10,000 images
of 112 × 112 positions (125 million) draws as fast as a small one.
"""

from __future__ import annotations

import numpy as np

from convdp.samples import subsample

MIN_HELDOUT = 100
"""Fewer held-out source samples than this: the in-sample ones are used (and flagged)."""

BASELINE_SAMPLES = 1500
"""Samples a side of the ``mmd2`` baseline (drawn by :func:`mmd2_draw`)."""


def complement_at(taken: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The ``ranks``-th (0-based) of the indices not in ``taken`` (sorted, unique, >= 0):
    ``np.setdiff1d(np.arange(total), taken)[ranks]`` without that array. The one of rank
    ``j`` is ``j`` plus the number of taken indices below it, which is the number of ``i``
    with ``taken[i] - i <= j``."""
    taken = np.asarray(taken, np.int64)
    ranks = np.asarray(ranks, np.int64)
    return ranks + np.searchsorted(taken - np.arange(len(taken)), ranks, side="right")


def score_draw(total: int, role: str, seed: int, max_samples: int | None,
               fit_index: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The sorted sample indices (of ``total``) :func:`convdp.transfer.scores.layer_shift`
    scores, and what they are.

    ``source``: a ``seed`` draw among the samples the fit did not see (``fit_index``,
    sorted and unique), ``"held-out"``; all of them (``"in-sample"``) when fewer than
    :data:`MIN_HELDOUT` are left. ``target``: a ``seed + 1`` draw among all, ``"all"``. The
    draws are :func:`convdp.samples.subsample`'s over those indices.
    """
    if role == "target":
        return subsample(total, max_samples, seed + 1), "all"
    fit_index = np.asarray(fit_index, np.int64)
    n_heldout = total - len(fit_index)
    if n_heldout < MIN_HELDOUT:
        return subsample(total, max_samples, seed), "in-sample"
    # subsample's draw over the held-out indices: the same draw of their ranks (sorted), then
    # the indices of those ranks (in the same order)
    return complement_at(fit_index, subsample(n_heldout, max_samples, seed)), "held-out"


def mmd2_draw(total: int, role: str, seed: int, max_samples: int = BASELINE_SAMPLES) -> np.ndarray:
    """The sorted sample indices (of ``total``) the ``mmd2`` baseline reads on the ``source``
    or the ``target``: seeded ``seed + 2`` and ``seed + 3``."""
    return subsample(total, max_samples, seed + {"source": 2, "target": 3}[role])
