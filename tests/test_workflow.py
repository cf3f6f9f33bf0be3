"""The Snakemake workflow itself: the DAG, a tiny end-to-end run, a bad config."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT

TINY = ROOT / "tests/config/tiny.yaml"


def snakemake(repo_root, workdir, *args, timeout=900):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo_root / "Snakefile"),
           "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


SPLIT_RULES = tuple(f"{step}_{method}" for method in ("dpgmm", "baseline")
                    for step in ("label", "merge")) + ("fit_dpgmm_model", "fit_baseline_model")
TIMING = ["fit_seconds", "seconds", "wall_seconds"]


def job_counts(text):
    """Snakemake's ``Job stats`` table: rule -> jobs."""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", text, re.M)}


def test_dry_run_has_one_fit_per_layer_dataset_mode(repo_root, tmp_path):
    out = snakemake(repo_root, tmp_path, "-n", "--configfile", str(repo_root / "config.yaml"))
    assert out.returncode == 0, out.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, re.M))
    # default config: 4 layers × 2 data sets × 2 modes, digitnet and its random-weights control
    assert counts["fit_dpgmm"] == "32"
    assert counts["fit_baseline"] == "16"  # the control gets no baseline (baseline.controls)
    assert counts["extract_activations"] == "4"
    assert counts["prepare_dataset"] == "2"
    # label_jobs: 1 (the default): each fit job labels its samples, no other job does
    assert not set(SPLIT_RULES) & set(counts), counts


def test_dry_run_with_label_jobs_has_fit_label_and_merge_jobs(repo_root, tmp_path):
    out = snakemake(repo_root, tmp_path, "-n", "--configfile", str(repo_root / "config.yaml"),
                    "--config", "label_jobs=3")
    assert out.returncode == 0, out.stderr
    counts = job_counts(out.stdout)
    # n fits: n model fits, 3 × n labellings, n merges (no baseline for the control)
    for method, n in (("dpgmm", 32), ("baseline", 16)):
        assert f"fit_{method}" not in counts
        assert counts[f"fit_{method}_model"] == n
        assert counts[f"label_{method}"] == 3 * n
        assert counts[f"merge_{method}"] == n


def test_bad_config_fails_before_any_job(repo_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((repo_root / "tests/config/tiny.yaml").read_text().replace("max_iter: 30", "max_iter: -3", 1))
    out = snakemake(repo_root, tmp_path, "--cores", "1", "--configfile", str(bad))
    assert out.returncode != 0
    assert "dpgmm.max_iter" in out.stderr + out.stdout
    assert not (tmp_path / "results").exists()


def test_unknown_layer_fails_listing_layers(repo_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((repo_root / "tests/config/tiny.yaml").read_text().replace("relu4]", "fc7]"))
    out = snakemake(repo_root, tmp_path, "-n", "--configfile", str(bad))
    assert out.returncode != 0
    assert "['fc7'] not found in digitnet; its layers are: conv1, relu1" in out.stderr + out.stdout


def test_two_models_whose_figures_share_a_name_fail_naming_them(repo_root, tmp_path):
    """Model label_maps_digitnet's transfer figure on digits_target is digitnet's label-map
    figure there (transfer_label_maps_digitnet_digits_target.png): the run failed building
    the DAG with Snakemake's AmbiguousRuleException, naming no key of the config."""
    import yaml

    config = yaml.safe_load(TINY.read_text())
    config["models"]["label_maps_digitnet"] = dict(config["models"]["digitnet"])
    path = tmp_path / "collide.yaml"
    path.write_text(yaml.safe_dump(config))
    out = snakemake(repo_root, tmp_path, "-n", "--configfile", str(path))
    assert out.returncode != 0
    assert ("models.label_maps_digitnet on 'digits_target' and models.digitnet on "
            "'digits_target' would write the same figures "
            "(transfer_label_maps_digitnet_digits_target.png)") in out.stderr + out.stdout


@pytest.mark.slow
def test_tiny_run_produces_every_output(repo_root, tiny_run):
    tmp_path = tiny_run
    res = tmp_path / "results"
    df = pd.read_csv(res / "summary.csv")
    assert len(df) == 4 * 2 * 2 * 2
    assert set(df["layer"]) == {"relu1", "relu2", "relu3", "relu4"}
    assert set(df["dataset"]) == {"digits_source", "digits_target"}
    assert set(df["mode"]) == {"position", "image"}
    assert set(df["method"]) == {"dpgmm", "gmm-bic"}
    assert (df["clusters_kept"] >= 1).all() and df["nmi"].between(0, 1).all()
    # every fit says whether its truncation bound the count, the truncation used, the
    # effective number of clusters, and the range over restarts
    for col in ("saturated", "truncation", "clusters_effective", "clusters_kept_min",
                "clusters_kept_max", "too_few_samples"):
        assert df[col].notna().all(), col
    assert (df["clusters_kept_min"] <= df["clusters_kept"]).all()
    assert (df["clusters_kept"] <= df["clusters_kept_max"]).all()
    assert (df["clusters_effective"] <= df["truncation"]).all()
    for fig in ("clusters_per_layer", "nmi_per_layer", "label_maps", "cluster_class_heatmap",
                "model_comparison"):
        data = (res / "figures" / f"{fig}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, fig
    maps = np.load(res / "dpgmm/digitnet/digits_source/relu2/position.npz")["labels"]
    assert maps.shape == (120, 8, 8)  # 16×16 inputs, one pooling before relu2
    meta = pd.read_json(res / "models/digitnet.json", typ="series")
    assert meta["layer_names"][:3] == ["conv1", "relu1", "pool1"]
    assert 0 < meta["val_accuracy"] <= 1
    assert not list(res.rglob(".tmp-*")), "temporary files left behind"
    # Nothing left to do, and the report builds.
    again = snakemake(repo_root, tmp_path, "-n", "--configfile", str(repo_root / "tests/config/tiny.yaml"))
    assert "Nothing to be done" in again.stdout + again.stderr
    rep = snakemake(repo_root, tmp_path, "--report", str(tmp_path / "report.html"),
                    "--configfile", str(repo_root / "tests/config/tiny.yaml"))
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert (tmp_path / "report.html").stat().st_size > 10000


@pytest.mark.slow
def test_split_labelling_gives_the_unsplit_results(tiny_run, tmp_path):
    """relu2 fitted once per data set × mode × method, labelled by 2 jobs, merged: the same
    summary (timings aside) and the same fit arrays as the unsplit tiny run. The run starts
    from a copy of the tiny run's results without relu2's fits and the summary (Snakemake
    does not redo a missing file whose readers are done; file times kept, so nothing
    upstream is redone): only relu2 is fitted again, split, and what reads its fits."""
    relu2_fits = [Path("results", method, "digitnet", ds, "relu2")
                  for method in ("dpgmm", "baseline") for ds in ("digits_source", "digits_target")]
    shutil.copytree(tiny_run / "results", tmp_path / "results")
    for rel in relu2_fits:
        shutil.rmtree(tmp_path / rel)
    (tmp_path / "results/summary.csv").unlink()
    out = snakemake(ROOT, tmp_path, "--cores", "2", "--configfile", str(TINY),
                    "--config", "label_jobs={relu2: 2}")
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout + out.stderr)
    assert not {"train_model", "extract_activations", "transfer_retrain"} & set(counts), counts
    for method in ("dpgmm", "baseline"):  # relu2: 2 data sets × 2 modes; the other layers copied
        assert f"fit_{method}" not in counts
        assert counts[f"fit_{method}_model"] == 2 * 2
        assert counts[f"label_{method}"] == 2 * 2 * 2
        assert counts[f"merge_{method}"] == 2 * 2

    def summary(root):
        return pd.read_csv(root / "results/summary.csv").drop(columns=TIMING, errors="ignore")

    pd.testing.assert_frame_equal(summary(tmp_path), summary(tiny_run))
    fits = sorted(p.relative_to(tiny_run) for folder in relu2_fits
                  for p in (tiny_run / folder).glob("*.npz") if p.stem in ("position", "image"))
    assert len(fits) == 2 * 2 * 2  # methods × data sets × modes
    for rel in fits:
        with np.load(tiny_run / rel) as whole, np.load(tmp_path / rel) as split:
            assert split.files == whole.files, rel
            for key in whole.files:
                np.testing.assert_array_equal(split[key], whole[key], err_msg=f"{rel}: {key}")
    relu2 = tmp_path / "results/dpgmm/digitnet/digits_source/relu2"
    assert sorted(p.name for p in relu2.iterdir()) == [  # the parts were temporary
        "image.json", "image.model.json", "image.model.npz", "image.npz",
        "position.json", "position.model.json", "position.model.npz", "position.npz"]
    assert (tmp_path / "logs/label_dpgmm/digitnet/digits_source/relu2/position.part2of2.log").is_file()


@pytest.mark.slow
def test_changing_only_the_baseline_reruns_only_its_fits(tiny_run):
    """Each fit's params are its own method's section: a new baseline.k_max plans the baseline
    fits and the aggregation, and no DPGMM fit (nor anything upstream)."""
    out = snakemake(ROOT, tiny_run, "-n", "--configfile", str(TINY), "--config",
                    "baseline={method: gmm, covariance_type: full, k_min: 2, k_max: 7}")
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout + out.stderr)
    assert counts.get("fit_baseline") == 4 * 2 * 2, counts
    assert counts.get("aggregate") == 1, counts
    assert not {"fit_dpgmm", "extract_activations", "train_model", "transfer_scores"} & set(counts)


def test_outputs_of_targets_no_longer_configured_are_named(tmp_path):
    """A target data set, a model or a layer removed from the config leaves its figures and
    verdict beside the current ones; the end of the run names them."""
    import io

    from convdp.runlog import print_stale_outputs, stale_outputs

    expected = ["results/summary.csv", "results/figures/label_maps.png",
                "results/transfer/net/tgt.csv", "results/figures/atlas/net/src/relu1.png"]
    for path in [*expected, "results/figures/transfer_net_old.png", "results/transfer/net/old.csv",
                 "results/transfer/net/old.json", "results/figures/atlas/net/src/relu2.png",
                 "results/transfer/net/tgt/scores.json", "results/activations/net/src.json",
                 "results/transfer_benchmark/oldnet/pairs.csv"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    assert stale_outputs(expected, tmp_path) == [
        "results/figures/atlas/net/src/relu2.png", "results/figures/transfer_net_old.png",
        "results/transfer/net/old.csv", "results/transfer/net/old.json",
        "results/transfer_benchmark/oldnet/pairs.csv"]
    out = io.StringIO()
    print_stale_outputs(expected, tmp_path, limit=2, file=out)
    assert out.getvalue() == (
        "convdp: 5 file(s) under results/ come from an earlier configuration (no output of this "
        "one); delete them if they are not wanted:\n  results/figures/atlas/net/src/relu2.png\n"
        "  results/figures/transfer_net_old.png\n  ... and 3 more\n")
    out = io.StringIO()
    print_stale_outputs(expected + stale_outputs(expected, tmp_path), tmp_path, file=out)
    assert out.getvalue() == ""


def test_job_warnings_of_this_run_are_printed_at_its_end(tmp_path):
    """convdp's warnings of the logs written since the run started, log by log; older logs
    and other loggers' lines are left out; warnings that differ in numbers and quoted names
    alone are one line with their count; beyond ``limit`` kinds a count."""
    import io
    import os

    from convdp.runlog import job_warnings, print_job_warnings

    logs = tmp_path / "logs"
    (logs / "fit").mkdir(parents=True)
    line = "2026-12-05 15:05:13,196 {} {}: {}\n"
    (logs / "fit" / "a.log").write_text(
        line.format("INFO", "convdp.cluster", "fitting")
        + line.format("WARNING", "convdp.cluster", "relu1: only 12 samples")
        + line.format("WARNING", "py.warnings", "a library's warning"))
    old = logs / "old.log"
    old.write_text(line.format("WARNING", "convdp", "from an earlier run"))
    os.utime(old, (1000, 1000))
    assert job_warnings(logs, since=2000) == [(str(logs / "fit" / "a.log"),
                                               "relu1: only 12 samples")]
    assert len(job_warnings(logs)) == 2
    (logs / "fit" / "b.log").write_text(line.format("WARNING", "convdp.cluster",
                                                    "relu2: only 7 samples"))
    out = io.StringIO()
    print_job_warnings(logs, 0, limit=1, file=out)
    assert out.getvalue() == (f"convdp: 3 warning(s) in this run's job logs:\n"
                              f"  2x like {logs / 'fit' / 'a.log'}: relu1: only 12 samples\n"
                              f"  ... and 1 more kinds (grep WARNING {logs})\n")
    out = io.StringIO()
    print_job_warnings(tmp_path / "none", 0, file=out)
    assert out.getvalue() == ""
