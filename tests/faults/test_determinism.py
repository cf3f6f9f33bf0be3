"""Case 3 (Python level): the same inputs and seed give identical activations, fits and labels.

The workflow-level double run is in test_workflow_faults.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from convdp import pipeline

from .helpers import PARAMS, assert_stores_equal

TIMING = {"fit_seconds", "seconds", "wall_seconds"}


def test_extraction_twice_is_bit_identical(assets, tmp_path):
    m = tmp_path / "again/digits.json"
    pipeline.extract(assets.weights, assets.meta, assets.data, list(assets.layers), m,
                     device="cpu", batch_size=20, chunk_size=40, model_name="net", progress=False)
    assert_stores_equal(pipeline.activation_store(assets.manifest), pipeline.activation_store(m))
    first, second = (json.loads(p.read_text()) for p in (assets.manifest, m))
    for rec in (first, second):
        rec.pop("seconds")
    assert first == second


@pytest.mark.parametrize("method", ["dpgmm", "baseline"])
@pytest.mark.parametrize("mode", ["position", "image"])
def test_fit_twice_is_identical(assets, tmp_path, method, mode):
    outs = []
    for run in ("one", "two"):
        out = tmp_path / run / "relu2" / mode
        pipeline.fit(assets.manifest, assets.data, "relu2", mode, method, PARAMS, f"{out}.npz",
                     f"{out}.json", seed=3, context={"run": "same"}, progress=False)
        outs.append(out)
    a, b = (np.load(o.with_suffix(".npz")) for o in outs)
    assert sorted(a.files) == sorted(b.files) and "labels" in a.files
    for key in a.files:
        assert np.array_equal(a[key], b[key]), key
    ra, rb = ({k: v for k, v in json.loads(o.with_suffix(".json").read_text()).items()
               if k not in TIMING} for o in outs)
    assert ra == rb
