"""Case 1 (Python level): extraction killed with SIGKILL half-way resumes, bit for bit."""

from __future__ import annotations

import logging

import pytest

from convdp import pipeline
from convdp.extract import open_activations

from .helpers import (
    assert_stores_equal,
    child,
    kill_group,
    make_digits,
    make_model,
    store_attrs,
    tmp_files,
    wait_for,
)

LAYERS = ["relu1", "relu2", "relu3", "relu4"]
N_IMAGES, CHUNK = 160, 4


def test_killed_extraction_resumes_bit_identical(tmp_path, caplog):
    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=N_IMAGES)
    manifest = tmp_path / "killed" / "acts.json"
    store = pipeline.activation_store(manifest)
    n_chunks = -(-N_IMAGES // CHUNK)
    proc = child(f"""
        from convdp.pipeline import extract
        extract({str(weights)!r}, {str(meta)!r}, {str(data)!r}, {LAYERS!r}, {str(manifest)!r},
                device="cpu", batch_size={CHUNK}, chunk_size={CHUNK}, model_name="net",
                progress=False)
    """, tmp_path / "child.log")
    try:
        wait_for(lambda: len(store_attrs(store).get("complete_chunks", [])) >= 1, proc,
                 what="the first complete chunk")
    finally:
        kill_group(proc)
    done = store_attrs(store)["complete_chunks"]
    assert 1 <= len(done) < n_chunks, f"killed too late to test a resume: {len(done)} chunks done"
    # Nothing looks finished: no manifest, and readers refuse the store, naming it.
    assert not manifest.exists()
    assert store_attrs(store)["complete"] is False
    with pytest.raises(ValueError, match=rf"{store}.*incomplete"):
        open_activations(store)

    caplog.set_level(logging.INFO, logger="convdp")
    info = pipeline.extract(weights, meta, data, LAYERS, manifest, device="cpu",
                            batch_size=CHUNK, chunk_size=CHUNK, model_name="net", progress=False)
    assert info["chunks_resumed"] >= len(done)
    assert f"{store}: resuming, {info['chunks_resumed']} of {n_chunks} chunks already complete" \
        in caplog.text
    assert manifest.exists() and not tmp_files(tmp_path)

    clean_manifest = tmp_path / "clean" / "acts.json"
    clean = pipeline.extract(weights, meta, data, LAYERS, clean_manifest, device="cpu",
                             batch_size=CHUNK, chunk_size=CHUNK, model_name="net", progress=False)
    assert clean["chunks_resumed"] == 0
    assert info["layers"] == clean["layers"]
    assert_stores_equal(store, pipeline.activation_store(clean_manifest), LAYERS)
    for layer in LAYERS:  # and the readers take it
        pipeline.open_layer(manifest, layer)
