"""Case 4, full disk: a size-limited tmpfs fills up while writing.

The error names the file; no partial output is left at a destination (only ``.tmp-*``
names, which are not outputs, and not even those where the writer cleans up); nothing is
marked complete that is not; earlier files on the same disk are intact; after room is
made, a rerun finishes (extraction resuming from the chunks that were complete).
"""

from __future__ import annotations

import errno
import logging

import numpy as np
import pytest
import zarr

from convdp import pipeline
from convdp.extract import open_activations
from convdp.io import write_json

from .helpers import (
    PARAMS,
    assert_stores_equal,
    disk_usage,
    fill,
    grow,
    snapshot,
    store_attrs,
    tmp_files,
)

LAYERS = ["relu1", "relu2", "relu3", "relu4"]


def extract(a, manifest):
    return pipeline.extract(a.weights, a.meta, a.data, LAYERS, manifest, device="cpu",
                            batch_size=8, chunk_size=8, model_name="net", progress=False)


def test_disk_full_during_extraction(assets, small_disk, tmp_path, caplog):
    clean = tmp_path / "clean/digits.json"
    extract(assets, clean)
    clean_store = pipeline.activation_store(clean)
    n_chunks = len(store_attrs(clean_store)["complete_chunks"])
    write_json(small_disk / "earlier.json", {"finished": True})
    fill(small_disk, disk_usage(clean_store) // 2)  # room for about half the store

    manifest = small_disk / "acts/net/digits.json"
    store = pipeline.activation_store(manifest)
    with pytest.raises(OSError) as err:
        extract(assets, manifest)
    assert err.value.errno == errno.ENOSPC
    assert f"to {store}: No space left on device" in str(err.value)
    assert "could not write " in str(err.value) and ", chunk " in str(err.value)
    # Nothing left looking finished; what is marked complete really is.
    assert not manifest.exists()
    attrs = store_attrs(store)
    assert attrs["complete"] is False
    done = attrs["complete_chunks"]
    assert 1 <= len(done) < n_chunks, done
    g, ref = zarr.open_group(store, mode="r"), zarr.open_group(clean_store, mode="r")
    for i in done:
        for layer in LAYERS:
            assert np.array_equal(g[layer][i * 8 : (i + 1) * 8], ref[layer][i * 8 : (i + 1) * 8])
    assert not [p for p in store.rglob("*") if p.name.endswith(".partial")]
    with pytest.raises(ValueError, match=rf"{store} is incomplete"):
        open_activations(store)
    assert (small_disk / "earlier.json").read_text().strip().endswith("}")

    grow(small_disk)
    caplog.set_level(logging.INFO, logger="convdp")
    info = extract(assets, manifest)
    assert info["chunks_resumed"] == len(done)
    assert f"resuming, {len(done)} of {n_chunks} chunks already complete" in caplog.text
    assert_stores_equal(clean_store, store, LAYERS)


def test_disk_full_writing_fit_outputs(assets, small_disk):
    write_json(small_disk / "fits/relu1/position.json", {"old": "finished result"})
    before = snapshot(small_disk)
    fill(small_disk, 4096)
    out = small_disk / "fits/relu1/position"
    with pytest.raises(OSError, match=rf"could not write {out}\.(npz|json): No space left on device"):
        pipeline.fit(assets.manifest, assets.data, "relu1", "position", "dpgmm", PARAMS,
                     f"{out}.npz", f"{out}.json", progress=False)
    assert not out.with_suffix(".npz").exists() and not tmp_files(small_disk)
    (small_disk / "filler").unlink()
    assert snapshot(small_disk) == before, "the earlier result was damaged"


def test_disk_full_overwriting_json_keeps_the_old_file(small_disk):
    dest = small_disk / "record.json"
    write_json(dest, {"version": 1})
    fill(small_disk, 0)
    with pytest.raises(OSError, match=rf"could not write {dest}: No space left on device"):
        write_json(dest, {"version": 2, "payload": "x" * 100_000})
    assert dest.read_text() == '{\n  "version": 1\n}\n'
    assert not tmp_files(small_disk)


def test_disk_full_preparing_a_dataset(small_disk):
    out = small_disk / "data.zarr"
    pipeline.prepare_dataset({"kind": "digits", "classes": [0], "size": 16, "max_samples": 10}, out)
    before = snapshot(out)
    fill(small_disk, 40_000)
    with pytest.raises(OSError, match=rf"could not write {out}: No space left on device"):
        pipeline.prepare_dataset({"kind": "digits", "size": 32}, out)
    assert snapshot(out) == before
    assert not list(small_disk.glob(".tmp-*"))
