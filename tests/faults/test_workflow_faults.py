"""Cases 1-4 through Snakemake itself: SIGKILL mid-extraction and mid-fit, resume, run twice.

One module-scoped fixture runs the tiny workflow (one layer, to keep it quick) twice:

* run A in one folder, uninterrupted;
* run B in another: SIGKILLed (the whole process group) while an extraction has some but
  not all of its chunks complete, rerun with ``--rerun-incomplete``, SIGKILLed again while
  a DPGMM fit is fitting, and rerun to the end.

The tests then compare B with A: resumed chunks, byte-identical activations, identical
summary and labels, nothing left behind that looks finished.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .helpers import (
    ROOT,
    assert_stores_equal,
    kill_group,
    snapshot,
    store_attrs,
    tmp_files,
    wait_for,
)

pytestmark = pytest.mark.slow

TIMING = ["fit_seconds", "seconds", "wall_seconds"]
DATASETS = ["digits_source", "digits_target"]
LAYERS = ["relu2"]
CHUNK = 2


def smk_cmd(workdir: Path, config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
            str(workdir), "--configfile", str(config), *args]


def smk(workdir: Path, config: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(smk_cmd(workdir, config, *args), capture_output=True, text=True,
                          timeout=timeout)


def smk_background(workdir: Path, config: Path, log: Path, *args: str) -> subprocess.Popen:
    """Snakemake in its own process group, so that SIGKILL reaches it and all its jobs."""
    return subprocess.Popen(smk_cmd(workdir, config, "--cores", "2", *args),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)


def fit_in_progress(workdir: Path, dataset: str) -> Path | None:
    """The log of a DPGMM fit on ``dataset`` that has started fitting (and not finished)."""
    for log in (workdir / "logs/fit_dpgmm/digitnet" / dataset).rglob("*.log"):
        out = workdir / "results/dpgmm" / log.relative_to(workdir / "logs/fit_dpgmm")
        try:
            text = log.read_text()
        except FileNotFoundError:
            continue
        if "fitting dpgmm" in text and not out.with_suffix(".json").exists():
            return log
    return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("workflow")
    cfg = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
    cfg["models"]["digitnet"]["layers"] = LAYERS
    cfg["extract"] |= {"chunk_size": CHUNK, "batch_size": CHUNK}  # 60 chunks per data set
    cfg.setdefault("transfer", {}).update(epochs=1, repeats=1)  # quicker retraining per cut
    config = base / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    a, b = base / "a", base / "b"
    a.mkdir()
    b.mkdir()
    facts: dict = {"a": a, "b": b, "config": config}

    out = smk(a, config, "--cores", "2")
    assert out.returncode == 0, out.stderr[-3000:]

    # Run B, killed during extraction.
    stores = {ds: b / f"results/activations/digitnet/{ds}.zarr" for ds in DATASETS}
    proc = smk_background(b, config, base / "b1.log")

    def some_chunks():
        for ds, store in stores.items():
            attrs = store_attrs(store)
            if attrs.get("complete_chunks") and not attrs.get("complete"):
                return ds
        return None

    try:
        ds = wait_for(some_chunks, proc, timeout=600, what="a partly extracted store")
    finally:
        kill_group(proc)
    attrs = store_attrs(stores[ds])
    facts["killed"] = {"dataset": ds, "done": len(attrs["complete_chunks"]),
                       "complete": attrs["complete"],
                       "manifest": (b / f"results/activations/digitnet/{ds}.json").exists(),
                       "n_chunks": -(-cfg["datasets"][ds]["max_samples"] // CHUNK)}

    # Rerun: resumes; killed again while a DPGMM fit on that data set is fitting.
    unlock = smk(b, config, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    proc = smk_background(b, config, base / "b2.log", "--rerun-incomplete")
    try:
        fit_log = wait_for(lambda: fit_in_progress(b, ds), proc, timeout=600, interval=0.005,
                           what="a DPGMM fit in progress")
    finally:
        kill_group(proc)
    out_json = (b / "results/dpgmm" / fit_log.relative_to(b / "logs/fit_dpgmm")).with_suffix(".json")
    facts["extract_log"] = (b / f"logs/extract_activations/digitnet/{ds}.log").read_text()
    facts["killed_fit"] = {
        "json": out_json, "npz": out_json.with_suffix(".npz"),
        "present": [p.name for p in (out_json, out_json.with_suffix(".npz")) if p.exists()],
        "tmp": [p.name for p in tmp_files(out_json.parent)],
    }
    for lock in (b / ".snakemake/locks").glob("*"):  # what --unlock does (done above for real)
        lock.unlink()
    facts["dry_run"] = smk(b, config, "-n", "--rerun-incomplete")
    out = smk(b, config, "--cores", "2", "--rerun-incomplete")
    assert out.returncode == 0, out.stderr[-3000:]
    return facts


def test_killed_extraction_resumes_through_snakemake(runs):
    k = runs["killed"]
    assert 1 <= k["done"] < k["n_chunks"], f"killed too late to test a resume: {k}"
    assert not k["complete"] and not k["manifest"], "a killed extraction looked finished"
    m = re.search(r"resuming, (\d+) of (\d+) chunks already complete", runs["extract_log"])
    assert m, runs["extract_log"][-2000:]
    assert int(m.group(1)) >= k["done"] and int(m.group(2)) == k["n_chunks"]
    a, b = runs["a"], runs["b"]
    manifest = json.loads((b / f"results/activations/digitnet/{k['dataset']}.json").read_text())
    assert manifest["chunks_resumed"] == int(m.group(1))
    for ds in DATASETS:  # the resumed store, and the other one, equal run A's bit for bit
        rel = f"results/activations/digitnet/{ds}.zarr"
        assert store_attrs(b / rel)["complete"] is True
        assert_stores_equal(a / rel, b / rel, LAYERS)


def test_killed_fit_leaves_nothing_that_looks_finished(runs):
    f = runs["killed_fit"]
    assert f["present"] == [], f"a killed fit left {f['present']} at the output path"
    assert all(name.startswith(".tmp-") for name in f["tmp"])
    # The next run sees the fit as not done and does it (an outcome, not an old leftover).
    dry = runs["dry_run"]
    assert dry.returncode == 0, dry.stderr[-2000:]
    rel = str(f["json"].relative_to(runs["b"]))
    assert rel in dry.stdout + dry.stderr
    assert f["json"].exists() and f["npz"].exists()
    assert not tmp_files(runs["b"] / "results"), "temporary files left behind"


def test_same_config_twice_gives_identical_results(runs):
    a, b = runs["a"], runs["b"]
    sa = pd.read_csv(a / "results/summary.csv")
    sb = pd.read_csv(b / "results/summary.csv")
    assert len(sa) == 2 * len(LAYERS) * 2 * 2
    pd.testing.assert_frame_equal(sa.drop(columns=TIMING, errors="ignore"),
                                  sb.drop(columns=TIMING, errors="ignore"))
    fits = sorted((a / "results").glob("*/digitnet/*/*/*.npz"))
    assert len(fits) == len(sa)
    for npz in fits:
        za, zb = np.load(npz), np.load(b / npz.relative_to(a))
        assert sorted(za.files) == sorted(zb.files)
        for key in za.files:
            assert np.array_equal(za[key], zb[key]), f"{npz.relative_to(a)}: {key} differs"
    for js in sorted((a / "results").glob("*/digitnet/*/*/*.json")):
        ra, rb = (json.loads(p.read_text()) for p in (js, b / js.relative_to(a)))
        for rec in (ra, rb):
            for key in TIMING:
                rec.pop(key, None)
        assert ra == rb, js.relative_to(a)


def test_bad_config_fails_naming_the_key_and_keeps_results(runs):
    a = runs["a"]
    before = snapshot(a / "results")
    cfg = yaml.safe_load(runs["config"].read_text())
    cfg["dpgmm"]["n_componets"] = 5  # a typo: the other config errors are tested in test_errors
    path = a / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = smk(a, path, "--cores", "2", "--forceall")
    assert out.returncode != 0
    assert "invalid config at dpgmm: Additional properties are not allowed ('n_componets'" \
        in out.stderr + out.stdout
    assert snapshot(a / "results") == before, "a failed run changed earlier results"
