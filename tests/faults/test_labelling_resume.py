"""The labelling pass of a sample store killed with SIGKILL half-way, then rerun: the label
maps are byte for byte those of a run never killed (it resumes from the chunks done)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from convdp import pipeline
from convdp.labelling import fit_key, label_pass

from .helpers import PARAMS, child, kill_group, make_digits, make_model, wait_for

LAYERS = ["relu1", "relu3"]
KW = dict(device="cpu", batch_size=5, chunk_size=10, progress=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A sample store of 60 images in 6 chunks, and a DPGMM fit of each layer on it."""
    d = tmp_path_factory.mktemp("labelling")
    weights, meta = make_model(d)
    data = make_digits(d / "data.zarr", n=60)
    plan = {"modes": ["position"], "max_samples": PARAMS["preprocess"]["max_samples"], "seed": 0,
            "transfer": None}
    pipeline.extract(weights, meta, data, LAYERS, d / "sample.json", sample=plan, **KW)
    fits = {}
    for layer in LAYERS:
        out = d / "fits" / layer
        pipeline.fit_model(d / "sample.json", layer, "position", "dpgmm", PARAMS,
                           f"{out}.model.npz", f"{out}.model.json")
        fits[fit_key("dpgmm", layer, "position")] = f"{out}.model.npz"
    return d, (weights, meta, data, d / "sample.json", fits)


def chunk_bytes(store):
    """Every stored file of the label arrays (the chunks and their metadata), by path."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.parent != store}


def test_labelling_killed_then_rerun_is_byte_identical(fitted, tmp_path):
    d, args = fitted
    clean = label_pass(*args, tmp_path / "clean/labels.json", **KW)
    assert clean["chunks_resumed"] == 0
    out = tmp_path / "killed/labels.json"
    store = out.with_suffix(".zarr")
    # slowed down (each chunk's samples are held back), so the kill lands mid-pass
    proc = child(f"""
        import time
        import convdp.samples as samples
        from convdp.labelling import label_pass
        to_samples = samples.to_samples
        samples.to_samples = lambda block, mode: (time.sleep(0.3), to_samples(block, mode))[1]
        label_pass(*{[str(a) if not isinstance(a, dict) else a for a in args]!r},
                   {str(out)!r}, **{KW!r})
    """, tmp_path / "killed.log")

    def some_done():
        try:
            return len(zarr.open_group(store, mode="r").attrs.get("complete_chunks", [])) >= 2
        except Exception:  # noqa: BLE001 - not created yet
            return False

    try:
        wait_for(some_done, proc, what="two chunks labelled")
    finally:
        kill_group(proc)
    assert proc.returncode == -9 and not out.exists()
    done = len(zarr.open_group(store, mode="r").attrs["complete_chunks"])
    assert 2 <= done < 6
    rerun = label_pass(*args, out, **KW)
    assert rerun["chunks_resumed"] >= 2
    assert chunk_bytes(store) == chunk_bytes(tmp_path / "clean/labels.zarr")
    for key in args[-1]:
        a = zarr.open_group(store, mode="r")[key][:]
        b = zarr.open_group(tmp_path / "clean/labels.zarr", mode="r")[key][:]
        assert a.dtype == np.int16 and a.tobytes() == b.tobytes() and a.min() >= 0
    manifest = json.loads(out.read_text())
    assert manifest["fits"] == sorted(args[-1])


def test_a_label_store_that_lost_a_chunk_file_is_refused(fitted, tmp_path):
    """A lost chunk of a label array read back as -1 (its fill value), without a word."""
    from convdp.labelling import open_labels

    d, args = fitted
    manifest = tmp_path / "labels.json"
    label_pass(*args, manifest, **KW)
    key = fit_key("dpgmm", "relu3", "position")
    labels, _ = open_labels(manifest, key)
    assert (labels >= 0).all()
    store = manifest.with_suffix(".zarr")
    sorted(p for p in (store / key / "c").rglob("*") if p.is_file())[2].unlink()
    with pytest.raises(ValueError, match=rf"the labels '{key}' are damaged: 1 of their 6 chunk"):
        open_labels(manifest, key)


def test_killed_sample_extraction_resumes_byte_identical(tmp_path):
    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=80)
    plan = {"modes": ["position", "image"], "max_samples": 400, "seed": 0,
            "transfer": {"mode": "position", "role": "target", "max_samples": 200, "n_examples": 2}}
    kw = dict(device="cpu", batch_size=4, chunk_size=4, progress=False)
    manifest = tmp_path / "killed/acts.json"
    store = pipeline.activation_store(manifest)
    proc = child(f"""
        from convdp.pipeline import extract
        extract({str(weights)!r}, {str(meta)!r}, {str(data)!r}, {LAYERS!r}, {str(manifest)!r},
                sample={plan!r}, **{kw!r})
    """, tmp_path / "child.log")

    def some_done():
        try:
            return len(zarr.open_group(store, mode="r").attrs.get("complete_chunks", [])) >= 1
        except Exception:  # noqa: BLE001 - not created yet
            return False

    try:
        wait_for(some_done, proc, what="the first complete chunk")
    finally:
        kill_group(proc)
    done = len(zarr.open_group(store, mode="r").attrs["complete_chunks"])
    assert 1 <= done < 20 and not manifest.exists()
    info = pipeline.extract(weights, meta, data, LAYERS, manifest, sample=plan, **kw)
    assert info["chunks_resumed"] >= done and info["store_kind"] == "sample"
    clean = tmp_path / "clean/acts.json"
    pipeline.extract(weights, meta, data, LAYERS, clean, sample=plan, **kw)
    assert chunk_bytes(store) == chunk_bytes(pipeline.activation_store(clean))
