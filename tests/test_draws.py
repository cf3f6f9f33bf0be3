"""convdp.draws: the transfer scores' and the mmd2 baseline's draws, which a sample store
keeps at extraction time."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from convdp.draws import MIN_HELDOUT, complement_at, score_draw
from convdp.samples import subsample


def _by_definition(total, seed, max_samples, fit_index):
    """The source draw as defined: subsample's draw over every index the fit did not see."""
    heldout = np.setdiff1d(np.arange(total), fit_index, assume_unique=True)
    if len(heldout) < MIN_HELDOUT:
        return subsample(total, max_samples, seed), "in-sample"
    return subsample(heldout, max_samples, seed), "held-out"


@pytest.mark.parametrize("seed", range(4))
def test_the_source_draw_is_subsamples_draw_over_the_held_out_indices(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        total = int(rng.integers(1, 40_000))
        fit = subsample(total, int(rng.integers(1, total + 1)), seed)
        max_samples = None if rng.random() < 0.3 else int(rng.integers(1, 20_000))
        drawn, kind = score_draw(total, "source", seed, max_samples, fit)
        expected, expected_kind = _by_definition(total, seed, max_samples, fit)
        assert kind == expected_kind and np.array_equal(drawn, expected), (total, max_samples)


def test_complement_ranks():
    taken = np.array([0, 3, 4, 9])
    rest = np.setdiff1d(np.arange(12), taken)  # 1 2 5 6 7 8 10 11
    assert np.array_equal(complement_at(taken, np.arange(len(rest))), rest)
    assert np.array_equal(complement_at(np.array([], np.int64), np.arange(3)), [0, 1, 2])


def test_a_held_out_draw_of_a_huge_layer_holds_no_index_of_every_position():
    """10,000 images of 112 x 112 positions: the draw's memory is that of its 20,000 indices
    and the fit's 10,000 (an index of every position: 1 GB)."""
    total = 10_000 * 112 * 112
    fit = subsample(total, 10_000, 0)
    tracemalloc.start()
    try:
        drawn, kind = score_draw(total, "source", 0, 20_000, fit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kind == "held-out" and len(drawn) == 20_000
    assert np.all(np.diff(drawn) > 0) and not np.isin(drawn, fit).any()
    assert peak < 20e6, peak


def test_the_sample_store_draws_without_importing_the_transfer_package():
    code = ("import sys; from convdp.sampled import position_index; "
            "position_index((4, 8, 8, 3), {'modes': ['position'], 'max_samples': 50, 'seed': 0, "
            "'transfer': {'mode': 'position', 'max_samples': 60, 'n_examples': 1, "
            "'role': 'source'}}); "
            "print(sorted(m for m in ('convdp.transfer', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out
