"""Case 2: a DPGMM fit or the aggregation killed with SIGKILL leaves nothing that looks finished.

The jobs run in child processes (the rule scripts call exactly these functions) and are
killed from outside while fitting, or kill themselves half-way through writing an output
(SIGKILL, so no clean-up code runs). Only ``.tmp-*`` files may remain; a destination path
exists only when its file is whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convdp import pipeline

from .helpers import PARAMS, child, kill_group, snapshot, tmp_files, wait_for

# Writes part of the file, then SIGKILLs its own process: a crash in the middle of a write.
DIE_MID_WRITE = """
    import os, signal
    def die_mid_write(fh_or_path, data):
        data = data if isinstance(data, bytes) else data.encode()
        with open(fh_or_path, "ab") as fh:
            fh.write(data[: max(len(data) // 2, 1)])
            fh.flush()
            os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
"""


def fit_call(a, layer, mode, out, params=PARAMS, context=None):
    return (f"pipeline.fit({str(a.manifest)!r}, {str(a.data)!r}, {layer!r}, {mode!r}, 'dpgmm', "
            f"{params!r}, {str(out)!r} + '.npz', {str(out)!r} + '.json', seed=0, "
            f"context={context!r}, progress=False)")


@pytest.fixture
def work(assets, tmp_path):
    """A copy of the assets plus one finished fit (relu1, image) that must survive."""
    a = assets.copy(tmp_path / "w")
    done = tmp_path / "w/fits/relu1/image"
    pipeline.fit(a.manifest, a.data, "relu1", "image", "dpgmm", PARAMS, f"{done}.npz",
                 f"{done}.json", progress=False)
    return a, done.parent.parent, snapshot(done.parent)


def test_fit_killed_while_fitting_leaves_no_output(work, tmp_path):
    a, fits, finished = work
    out = fits / "relu3" / "position"
    endless = {**PARAMS, "dpgmm": {**PARAMS["dpgmm"], "n_components": 20, "max_iter": 10**7,
                                   "tol": 0.0}}
    proc = child(f"""
        import logging; logging.basicConfig(level=logging.INFO)
        from convdp import pipeline
        {fit_call(a, "relu3", "position", out, endless)}
    """, tmp_path / "fit.log")
    try:
        wait_for(lambda: "fitting dpgmm" in (tmp_path / "fit.log").read_text(), proc,
                 what="the fit to start")
    finally:
        kill_group(proc)
    assert proc.returncode == -9
    assert not out.with_suffix(".npz").exists() and not out.with_suffix(".json").exists()
    assert not tmp_files(fits / "relu3")
    assert snapshot(fits / "relu1") == finished


@pytest.mark.parametrize("victim", ["npz", "json"])
def test_fit_killed_mid_write_leaves_only_a_temp_file(work, tmp_path, victim):
    a, fits, finished = work
    out = fits / "relu3" / "image"
    patch = ("np.savez_compressed = lambda fh, **arrays: die_mid_write(fh.name, b'PK' * 4096)"
             if victim == "npz" else
             "pathlib.Path.write_text = lambda self, text: die_mid_write(self, text)")
    proc = child([DIE_MID_WRITE, f"""
        import pathlib
        import numpy as np
        from convdp import pipeline
        {patch}
        {fit_call(a, "relu3", "image", out)}
    """], tmp_path / "fit.log")
    proc.wait(timeout=300)
    assert proc.returncode == -9, (tmp_path / "fit.log").read_text()[-2000:]
    leftovers = tmp_files(out.parent)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".tmp-image.{victim}.")
    assert leftovers[0].stat().st_size > 0  # the partial bytes went to the temporary name
    assert not out.with_suffix(".json").exists(), "the JSON (the fit's 'done' mark) exists"
    if victim == "npz":
        assert not out.with_suffix(".npz").exists()
    else:  # the npz was written whole before the JSON was started
        assert set(np.load(out.with_suffix(".npz")).files) >= {"labels", "fit_index"}
    assert snapshot(fits / "relu1") == finished
    # The next run just does the job again.
    pipeline.fit(a.manifest, a.data, "relu3", "image", "dpgmm", PARAMS, out.with_suffix(".npz"),
                 out.with_suffix(".json"), progress=False)
    assert json.loads(out.with_suffix(".json").read_text())["layer"] == "relu3"


def test_aggregate_killed_mid_way_leaves_no_summary(assets, tmp_path):
    a = assets.copy(tmp_path / "w")
    jsons = []
    for i, layer in enumerate(["relu1", "relu3"]):
        for mode in ("position", "image"):
            out = tmp_path / f"w/fits/{layer}/{mode}"
            ctx = {"model": "net", "dataset": "digits", "role": "source", "layer_index": i}
            pipeline.fit(a.manifest, a.data, layer, mode, "dpgmm", PARAMS, f"{out}.npz",
                         f"{out}.json", context=ctx, progress=False)
            jsons.append(f"{out}.json")
    res = tmp_path / "w/results"
    figs = {k: str(res / f"figures/{k}.png")
            for k in ("clusters", "nmi", "label_maps", "heatmap", "comparison")}
    call = (f"aggregate({jsons!r}, {{'digits': {str(a.data)!r}}}, {str(res / 'summary.csv')!r}, "
            f"{figs!r}, n_examples=2)")
    proc = child([DIE_MID_WRITE, f"""
        import matplotlib.figure
        from convdp.aggregate import aggregate
        real_savefig, calls = matplotlib.figure.Figure.savefig, []
        def savefig(self, path, **kw):  # the third figure: killed while writing it
            calls.append(path)
            if len(calls) == 3:
                die_mid_write(path, b"\\x89PNG" * 4096)
            return real_savefig(self, path, **kw)
        matplotlib.figure.Figure.savefig = savefig
        {call}
    """], tmp_path / "agg.log")
    proc.wait(timeout=300)
    assert proc.returncode == -9, (tmp_path / "agg.log").read_text()[-2000:]
    assert not (res / "summary.csv").exists(), "summary.csv exists though aggregation was killed"
    for name in ("comparison", "label_maps"):  # killed while writing, and never reached
        assert not (res / f"figures/{name}.png").exists()
    for name in ("clusters", "nmi"):  # written before the kill: whole
        assert (res / f"figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = tmp_files(res)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-comparison.png.")
    from convdp.aggregate import aggregate

    aggregate(jsons, {"digits": a.data}, res / "summary.csv", figs, n_examples=2)
    assert (res / "summary.csv").exists()
    assert all(Path(f).exists() for f in figs.values()) and not tmp_files(res / "figures")[1:]
