"""The real workflow through a real (local, single-node) Slurm with profiles/slurm.

* ``test_slurm_dry_run_lists_one_job_per_fit`` (fast, no Slurm needed): a dry run
  with the Slurm profile on the default config.yaml plans one fit_dpgmm job per
  layer x data set x mode, each with its memory, run time and CPUs, and the
  extraction jobs ask for a GPU.
* ``test_slurm_dry_run_lists_label_jobs_when_split`` (fast): the same with
  ``label_jobs`` for one layer: its fits become a model fit, 3 label jobs and a
  merge, one CPU each; a label job's memory is sized from one stored chunk of
  the layer (shape from the extraction manifest; <TBD> before there is one).
* ``test_tiny_workflow_through_slurm_equals_local_run`` (marker ``slurm``; needs
  root and the Debian Slurm packages, see .ci/install_slurm.sh; skipped
  otherwise): runs tests/config/tiny.yaml, cut to two layers (relu1, relu4: the
  shallowest and the deepest; every rule is still there, with half the fits), through
  Slurm and, at the same time, locally; checks with Slurm itself (squeue/scontrol)
  that every non-local job was a COMPLETED Slurm job, and that both runs computed the
  same results: summary.csv equal in every column but the timings, DPGMM label arrays
  equal.

Thread counts.  The comparison can be exact because the training job whose
output everything compared here depends on gets the same number of threads in
both runs: train_model 2 (rule: 2 with --cores 2 locally; profile: 8, capped by
--max-threads 2 here).  (transfer_retrain runs with 1 thread locally and 2 here,
but its accuracies feed neither summary.csv nor the fits.)  Training is *not*
bit-reproducible across thread counts: on the CPU, the weight and bias gradients of
the early conv layers are reductions over batch x positions that PyTorch splits
across its threads, so 1, 2, 4 and 8 threads give weights that differ in the last
bits (~1e-8).  The fits are insensitive: sklearn's BayesianGaussianMixture/
GaussianMixture give bit-identical arrays with 1 and 2 threads on the tiny data
(fit_dpgmm runs with 1 thread locally, 2 here).  So on a real cluster
(train_model with 8 threads, or on a GPU) results match a local run only up to
such rounding; the test does not hide that by loosening its comparison.

Run with:  python -m pytest -m slurm tests/test_slurm_workflow.py
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.slurm_cluster import (
    SNAKEMAKE_FLAGS,
    clean_env,
    leftover_pids,
    local_slurm,
    missing_requirements,
    slurm_jobs,
)

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
PROFILE = REPO / "profiles" / "slurm"
TINY_CONFIG = REPO / "tests" / "config" / "tiny.yaml"
# The Slurm run's layers: a shallow and a deep one.  Each job costs Slurm's start-up (two
# Snakemake starts a job, see SLURM_TIMEOUT_S) whatever its size, so the run's time goes
# with its number of jobs, and the point — every job through Slurm, the same results as
# a local run — needs every rule, not every layer.
SLURM_LAYERS = ["relu1", "relu4"]
DEFAULT_CONFIG = REPO / "config.yaml"

# Rules that must run on the submit host (`localrules:`); the others' jobs must all go
# to Slurm.  Which rules a run has is read from Snakemake's own plan (the workflow grows).
LOCAL_RULES = ("aggregate", "all")
GPU_RULES = ("train_model", "extract_activations", "transfer_retrain")  # `gpu: 1` in the profile
# Wall-clock measurements: the only summary.csv columns allowed to differ between runs.
TIMING_COLUMNS = frozenset({"fit_seconds", "seconds", "wall_seconds"})

DRY_RUN_TIMEOUT_S = 180
# Hard limits on the two runs (they run at the same time), far above their normal run
# times so that only a hang trips them.  On the 2-CPU test node Slurm runs the jobs one
# after the other (each asks for 2 CPUs), and each job starts Snakemake twice (batch
# script, then srun) before its script: ~28 s a job with the local run beside it (672 s
# for the 24 Slurm jobs of the 26), a minute and more on a loaded machine.
# CONVDP_SLURM_TEST_TIMEOUT_S overrides the limit.
SLURM_TIMEOUT_S = int(os.environ.get("CONVDP_SLURM_TEST_TIMEOUT_S", "3600"))
LOCAL_TIMEOUT_S = 1800
POLL_S = 3.0


def _why_not_slurm() -> str | None:
    why = missing_requirements()
    if why is None:
        try:
            import snakemake_executor_plugin_slurm  # noqa: F401
        except ImportError:
            why = "snakemake-executor-plugin-slurm is not installed (pip install .[slurm])"
    return why


def _why_not_plugin() -> str | None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install .[slurm])"
    return None


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def fits_per_method(config_path: Path) -> int:
    """layers x data sets x modes, summed over models (random-weights controls included):
    the DPGMM fit jobs (the BIC baseline skips the controls unless baseline.controls)."""
    from convdp.config import validate_config

    cfg = validate_config(yaml.safe_load(config_path.read_text()), check_layers=False)
    return sum(
        len(m["analyse_on"]) * len(m["layers"]) * len(cfg["modes"]) for m in cfg["models"].values()
    )


def slurm_comment(rule: str, wildcards: dict[str, str]) -> str:
    """The comment snakemake-executor-plugin-slurm gives a rule's job (``--comment``)."""
    values = "_".join(wildcards.values()).replace("/", "_")
    return f"rule_{rule}_wildcards_{values}" if values else f"rule_{rule}"


def job_stats(log: str) -> dict[str, int]:
    """The ``Job stats`` table Snakemake prints before it starts (rule -> jobs)."""
    lines = log.splitlines()
    start = lines.index("Job stats:") + 3  # title, header, dashes
    stats = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


def profile_args():
    """profiles/slurm as Snakemake's own CLI parser reads it."""
    from snakemake.cli import parse_args

    _, args = parse_args(["--profile", str(PROFILE), "--workflow-profile", "none"])
    return args


def profile_set_resources() -> dict[str, dict[str, str]]:
    """profiles/slurm's ``set-resources`` (rule -> resource -> expression)."""
    return {
        rule: {k: str(v.raw) for k, v in res.items()}
        for rule, res in profile_args().set_resources.items()
    }


def test_node_set_resources(node_mem_mb: int) -> list[str]:
    """``--set-resources`` arguments: profiles/slurm's own list, adapted to the test node.

    A command-line ``--set-resources`` *replaces* the profile's whole list, so this
    repeats every entry of the profile unchanged except for two things the single
    test node cannot satisfy (sbatch would reject the job outright):
      * ``gpu: 1`` of the GPU rules -> ``gpu=0`` (the node has no GPU and refuses
        ``--gpus=1``; the tiny config runs on the CPU anyway).  Without a GPU the
        plugin asks for ``--cpus-per-task=<threads>`` instead of ``--cpus-per-gpu``;
      * every ``mem_mb`` is capped at the node's memory (``min(<profile>, node)``):
        the profile asks up to 32 GB (and twice as much on a retry).
    Threads (``set-threads``), run times and everything else come from the profile.
    """
    args = []
    for rule, res in profile_set_resources().items():
        for name, raw in res.items():
            if name == "gpu":
                raw = "0"
            elif name == "mem_mb":
                raw = f"min({raw}, {node_mem_mb})"
            args.append(f"{rule}:{name}={raw}")
    return args


test_node_set_resources.__test__ = False  # a helper, not a test


def node_memory_mb(env: dict) -> int:
    out = subprocess.run(
        ["sinfo", "--noheader", "--format=%m"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return min(int(x.rstrip("+")) for x in out.split())


class JobRecorder(threading.Thread):
    """Polls squeue while a run is going on and keeps the last state of every job
    (squeue forgets finished jobs after MinJobAge; a long run must not lose any)."""

    def __init__(self, env: dict):
        super().__init__(daemon=True)
        self.env = env
        self.jobs: dict[str, dict[str, str]] = {}
        self.errors: list[str] = []
        self._halt = threading.Event()

    def poll(self) -> None:
        try:
            for job in slurm_jobs(self.env):
                self.jobs[job["jobid"]] = job
        except Exception as e:  # noqa: BLE001 - recorded, the final poll must work
            self.errors.append(repr(e))

    def run(self) -> None:
        while not self._halt.wait(POLL_S):
            self.poll()

    def stop(self) -> dict[str, dict[str, str]]:
        self._halt.set()
        self.join(timeout=60)
        self.poll()
        return self.jobs


def start(cmd: list[str], *, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    fh = open(log, "w")  # noqa: SIM115 - closed by finish()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # own process group: a timeout kills all of it
    )  # fmt: skip
    proc.log_file = fh  # type: ignore[attr-defined]
    proc.log_path = log  # type: ignore[attr-defined]
    proc.started = time.monotonic()  # type: ignore[attr-defined]
    proc.ended = None  # type: ignore[attr-defined]

    def note_end() -> None:  # when it really ended, not when finish() looked
        proc.wait()
        proc.ended = time.monotonic()  # type: ignore[attr-defined]

    threading.Thread(target=note_end, daemon=True).start()
    return proc


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int | None, float, str]:
    """Wait for ``proc`` (at most ``timeout`` s after its start); kill its process
    group on timeout.  Returns (returncode or None on timeout, seconds, log)."""
    left = max(1.0, timeout - (time.monotonic() - proc.started))  # type: ignore[attr-defined]
    try:
        rc: int | None = proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        rc = None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                continue
    end = proc.ended or time.monotonic()  # type: ignore[attr-defined]
    seconds = end - proc.started  # type: ignore[attr-defined]
    proc.log_file.close()  # type: ignore[attr-defined]
    return rc, seconds, proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def summary_differences(a: Path, b: Path) -> list[str]:
    """Cells that differ between two summary.csv files, timing columns excepted."""
    with open(a, newline="") as fa, open(b, newline="") as fb:
        ra, rb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    if not ra or list(ra[0]) != list(rb[0] if rb else []):
        return [f"header/rows: {list(ra[0]) if ra else []} vs {list(rb[0]) if rb else []}"]
    if len(ra) != len(rb):
        return [f"{len(ra)} rows vs {len(rb)} rows"]
    diffs = []
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        key = "/".join(x[k] for k in ("model", "dataset", "layer", "mode", "method"))
        diffs += [
            f"row {i} ({key}) {col}: {x[col]!r} vs {y[col]!r}"
            for col in x
            if col not in TIMING_COLUMNS and x[col] != y[col]
        ]
    return diffs


def label_differences(root_a: Path, root_b: Path, method_dir: str) -> tuple[int, list[str]]:
    """Compare the ``labels`` arrays of all fits in results/<method_dir>/."""
    fa = sorted(p.relative_to(root_a) for p in (root_a / "results" / method_dir).rglob("*.npz"))
    fb = sorted(p.relative_to(root_b) for p in (root_b / "results" / method_dir).rglob("*.npz"))
    if fa != fb:
        return len(fa), [f"different files: {sorted(set(map(str, fa)) ^ set(map(str, fb)))}"]
    diffs = []
    for rel in fa:
        with np.load(root_a / rel) as za, np.load(root_b / rel) as zb:
            la, lb = za["labels"], zb["labels"]
            if la.shape != lb.shape or not np.array_equal(la, lb):
                n = la.size if la.shape != lb.shape else int((la != lb).sum())
                diffs.append(f"{rel}: {n} of {la.size} labels differ")
    return len(fa), diffs


# --------------------------------------------------------------------------
# Snakemake's job printout (dry run and real run)
# --------------------------------------------------------------------------
_RES_ITEM = re.compile(r"(\w+)=([^,]*)(?:,\s*|$)")


def parse_jobs(log: str) -> list[dict]:
    """The job blocks Snakemake logs (``rule X:`` / ``localrule X:`` then indented
    fields): rule, local or not, wildcards, threads and resources of every job."""
    jobs: list[dict] = []
    job: dict | None = None
    for line in log.splitlines():
        if m := re.match(r"^(local)?rule (\w+):$", line):
            job = {
                "rule": m.group(2),
                "local": bool(m.group(1)),
                "wildcards": {},
                "threads": 1,
                "resources": {},
            }
            jobs.append(job)
        elif job is None:
            continue
        elif not line.startswith("    "):
            job = None  # end of the job's block
        elif line.startswith("    wildcards: "):
            job["wildcards"] = dict(_RES_ITEM.findall(line.split(": ", 1)[1]))
        elif line.startswith("    threads: "):
            job["threads"] = int(line.split(": ", 1)[1])
        elif line.startswith("    resources: "):
            job["resources"] = dict(_RES_ITEM.findall(line.split(": ", 1)[1]))
    return jobs


# --------------------------------------------------------------------------
# fast: dry run with the Slurm profile (no Slurm needed)
# --------------------------------------------------------------------------
def slurm_dry_run(workdir: Path, *extra: str) -> str:
    """``snakemake -n`` with profiles/slurm on the default config in ``workdir``: its log."""
    cmd = [
        sys.executable, "-m", "snakemake", "-n",
        "--snakefile", str(SNAKEFILE),
        "--directory", str(workdir),  # nothing is written into the repository
        "--configfile", str(DEFAULT_CONFIG),
        "--profile", str(PROFILE),
        "--workflow-profile", "none",
        # A dry run caps every job's threads at --cores, which is 1 when not given
        # (Snakemake then does not print them at all); a real Slurm run has no such
        # cap.  A large --cores makes the dry run show the threads sbatch would get.
        "--cores", "1024",
        *extra,
    ]  # fmt: skip
    r = subprocess.run(
        cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=DRY_RUN_TIMEOUT_S
    )
    log = r.stdout + r.stderr
    assert r.returncode == 0, tail(log)
    return log


@pytest.mark.skipif(_why_not_plugin() is not None, reason=str(_why_not_plugin()))
def test_slurm_dry_run_lists_one_job_per_fit(tmp_path):
    log = slurm_dry_run(tmp_path)
    jobs = parse_jobs(log)
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert {rule: len(js) for rule, js in by_rule.items()} == job_stats(log)

    # one fit_dpgmm (and one fit_baseline) job per layer x data set x mode, no two alike
    from convdp.config import validate_config

    cfg = validate_config(yaml.safe_load(DEFAULT_CONFIG.read_text()), check_layers=False)
    want = sorted(
        (m, d, layer, mode)
        for m, spec in cfg["models"].items()
        for d in spec["analyse_on"]
        for layer in spec["layers"]
        for mode in cfg["modes"]
    )
    # 4 layers x 2 data sets x 2 modes, for digitnet and its random-weights control; the BIC
    # baseline for digitnet only (baseline.controls: false)
    assert len(want) == fits_per_method(DEFAULT_CONFIG) == 32
    wants = {"fit_dpgmm": want, "fit_baseline": [w for w in want if w[0] == "digitnet"]}
    for rule in ("fit_dpgmm", "fit_baseline"):
        got = sorted(
            tuple(j["wildcards"][k] for k in ("model", "dataset", "layer", "mode"))
            for j in by_rule[rule]
        )
        assert got == wants[rule], rule

    # every job shows what sbatch will ask for: memory (--mem), time (-t) and CPUs
    # (--cpus-per-gpu for GPU jobs, else --cpus-per-task = threads)
    cpus = {}
    for job in jobs:
        res = job["resources"]
        assert int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0, job
        gpu = int(res.get("gpu", "0") or 0)
        cpus[job["rule"]] = int(res["cpus_per_gpu"]) if gpu else job["threads"]
        assert cpus[job["rule"]] >= 1, job
    # the profile's set-threads reach the CPU jobs (not capped at 1 as without --cores)
    for rule, threads in profile_args().set_threads.items():
        if rule in by_rule and rule not in GPU_RULES:
            assert cpus[rule] == threads.value, (rule, cpus)
    # CPU-only fits: no GPU
    for rule in ("fit_dpgmm", "fit_baseline"):
        assert all(int(j["resources"].get("gpu", "0") or 0) == 0 for j in by_rule[rule]), rule
    # the extraction (and training) jobs ask Slurm for one GPU each under the Slurm profile
    for rule in GPU_RULES:
        assert by_rule[rule], rule
        for job in by_rule[rule]:
            assert job["resources"].get("gpu") == "1", job
            assert int(job["resources"]["cpus_per_gpu"]) >= 1, job


@pytest.mark.skipif(_why_not_plugin() is not None, reason=str(_why_not_plugin()))
def test_slurm_dry_run_lists_label_jobs_when_split(tmp_path):
    from convdp.cluster import components_cap, label_memory_mb
    from convdp.config import validate_config

    cfg = validate_config(yaml.safe_load(DEFAULT_CONFIG.read_text()), check_layers=False)
    model, spec = "digitnet", cfg["models"]["digitnet"]
    source, target = spec["analyse_on"]
    layer = spec["layers"][-1]
    # As when the source's extraction has run (the label jobs are submitted after it): its
    # manifest gives the layer's shape. The target's extraction has not run yet.
    shape = [2500, 4, 4, 64]
    manifest = tmp_path / "results" / "activations" / model / f"{source}.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": {layer: {"shape": shape}}}))
    log = slurm_dry_run(tmp_path, "--config", f"label_jobs={{{layer}: 3}}")
    jobs = parse_jobs(log)
    stats = job_stats(log)
    assert Counter(j["rule"] for j in jobs) == Counter(stats)
    # the layer's fits per method: digitnet's and its control's (the baseline: digitnet's)
    n_models = {"dpgmm": len(cfg["models"]), "baseline": 1}
    k = components_cap(cfg)
    profile_runtime = {rule: res.get("runtime") for rule, res in profile_set_resources().items()}
    for method in ("dpgmm", "baseline"):
        n_split = n_models[method] * len(spec["analyse_on"]) * len(cfg["modes"])
        n_fits = fits_per_method(DEFAULT_CONFIG) // len(cfg["models"]) * n_models[method]
        assert stats[f"fit_{method}"] == n_fits - n_split, stats
        assert stats[f"fit_{method}_model"] == stats[f"merge_{method}"] == n_split, stats
        assert stats[f"label_{method}"] == 3 * n_split, stats
        for job in jobs:
            if job["rule"] not in (f"fit_{method}_model", f"label_{method}", f"merge_{method}"):
                continue
            res, wc = job["resources"], job["wildcards"]
            assert wc["layer"] == layer and job["threads"] == 1 and not job["local"], job
            assert int(res.get("gpu", "0") or 0) == 0 and int(res["runtime"]) > 0, job
            if job["rule"] == f"fit_{method}_model":  # sized from the fitting samples
                assert int(res["mem_mb"]) > 1000, job
                assert res["runtime"] == profile_runtime[job["rule"]].replace(" * attempt", ""), job
            elif job["rule"] == f"label_{method}":  # sized from one chunk of the layer
                assert wc["parts"] == "3" and wc["part"] in {"1", "2", "3"}, job
                if wc["model"] == model and wc["dataset"] == source:
                    want = label_memory_mb(shape, cfg["extract"]["chunk_size"], wc["mode"], k, 3)
                    assert int(res["mem_mb"]) == want, job
                else:  # evaluated when the job is submitted, after the extraction
                    assert res["mem_mb"] == "<TBD>", job
            else:  # merge: sized from the fit's record, written by the model fit
                assert res["mem_mb"] == "<TBD>", job
    # position mode holds 16 samples an image: its label jobs need more than image mode's
    mem = {(j["wildcards"]["dataset"], j["wildcards"]["mode"]): int(j["resources"]["mem_mb"])
           for j in jobs if j["rule"] == "label_dpgmm" and j["wildcards"]["dataset"] == source
           and j["wildcards"]["model"] == model}
    assert mem[source, "position"] > mem[source, "image"] >= 1000, mem
    assert target in {j["wildcards"]["dataset"] for j in jobs if j["rule"] == "label_dpgmm"}


# --------------------------------------------------------------------------
# slow: the tiny configuration through a real Slurm, compared with a local run
# --------------------------------------------------------------------------
@pytest.mark.slurm
def test_tiny_workflow_through_slurm_equals_local_run(tmp_path):
    if why := _why_not_slurm():
        # CI sets CONVDP_REQUIRE_SLURM=1 so that a missing plugin or package fails
        # the job instead of skipping the only test that really submits.
        if os.environ.get("CONVDP_REQUIRE_SLURM") == "1":
            pytest.fail(f"CONVDP_REQUIRE_SLURM=1 but no local Slurm: {why}")
        pytest.skip(f"no local Slurm: {why}")
    slurm_dir, local_dir = tmp_path / "slurm_run", tmp_path / "local_run"
    tiny = yaml.safe_load(TINY_CONFIG.read_text())
    (model,) = tiny["models"].values()
    model["layers"] = SLURM_LAYERS
    config_path = tmp_path / "tiny_two_layers.yaml"
    config_path.write_text(yaml.safe_dump(tiny))
    slurm_dir.mkdir()
    local_dir.mkdir()
    procs: list[subprocess.Popen] = []

    with local_slurm(tmp_path / "cluster") as env:
        try:
            # The local reference run: default workflow profile, 2 cores, no Slurm in
            # its environment.  It runs at the same time as the Slurm run (which
            # mostly waits on sbatch/squeue and job start-up).
            local_cmd = [
                sys.executable, "-m", "snakemake",
                "--snakefile", str(SNAKEFILE),
                "--directory", str(local_dir),
                "--configfile", str(config_path),
                "--cores", "2",
            ]  # fmt: skip
            local = start(local_cmd, cwd=local_dir, env=clean_env(), log=tmp_path / "local.log")
            procs.append(local)
            recorder = JobRecorder(env)
            recorder.start()
            slurm_cmd = [
                sys.executable, "-m", "snakemake",
                "--snakefile", str(SNAKEFILE),
                "--directory", str(slurm_dir),
                "--configfile", str(config_path),
                "--profile", str(PROFILE),
                # profiles/default would be loaded as workflow profile and win
                "--workflow-profile", "none",
                *SNAKEMAKE_FLAGS,  # squeue status queries: no slurmdbd here
                # This node has 2 CPUs; the profile asks up to 8 per job (sbatch would
                # refuse).  It also gives train_model 2 threads, as in the local run:
                # the trained weights depend on the thread count (see the module doc).
                "--max-threads", "2",
                # no GPU on the test node, memory capped to the node: see the helper
                "--set-resources", *test_node_set_resources(node_memory_mb(env)),
                "--verbose",  # logs every `sbatch call: ...`
            ]  # fmt: skip
            cluster = start(slurm_cmd, cwd=slurm_dir, env=env, log=tmp_path / "slurm.log")
            procs.append(cluster)
            slurm_rc, slurm_s, slurm_log = finish(cluster, SLURM_TIMEOUT_S)
            jobs = recorder.stop()
            local_rc, local_s, local_log = finish(local, LOCAL_TIMEOUT_S)
        finally:  # also on KeyboardInterrupt: leave no snakemake behind
            for proc in procs:
                if proc.poll() is None:
                    finish(proc, 0)
        print(f"Slurm run: {slurm_s:.0f} s, local run: {local_s:.0f} s (at the same time)")

        assert slurm_rc is not None, (
            f"Slurm run timed out after {SLURM_TIMEOUT_S} s\n{tail(slurm_log)}"
        )
        assert slurm_rc == 0, tail(slurm_log, 120)
        assert local_rc is not None, (
            f"local run timed out after {LOCAL_TIMEOUT_S} s\n{tail(local_log)}"
        )
        assert local_rc == 0, tail(local_log, 120)
        assert recorder.errors == [], recorder.errors

        # --- Snakemake's plan: which jobs had to go to Slurm ---------------------
        planned = parse_jobs(slurm_log)
        stats = job_stats(slurm_log)
        assert Counter(j["rule"] for j in planned) == Counter(stats), (stats, planned)
        remote = [j for j in planned if not j["local"]]
        local_rules = {j["rule"] for j in planned if j["local"]}
        remote_rules = {j["rule"] for j in remote}
        assert set(LOCAL_RULES) <= local_rules, local_rules
        assert not local_rules & remote_rules, (local_rules, remote_rules)
        n_fits = fits_per_method(config_path)  # layers x data sets x modes
        assert stats["fit_dpgmm"] == stats["fit_baseline"] == n_fits == 8, stats
        assert {"prepare_dataset", "train_model", "extract_activations"} <= remote_rules

        # --- Slurm's own record: one COMPLETED job per non-local job ------------
        comments = [j["comment"] for j in jobs.values()]
        wanted = sorted(slurm_comment(j["rule"], j["wildcards"]) for j in remote)
        assert sorted(comments) == wanted, (  # also: no retried (doubled) job
            f"Slurm jobs {sorted(Counter(comments) - Counter(wanted))} unplanned, "
            f"{sorted(Counter(wanted) - Counter(comments))} missing"
        )
        fit_jobs = [c for c in comments if c.startswith("rule_fit_dpgmm_wildcards_")]
        assert len(fit_jobs) == n_fits, fit_jobs
        not_ok = [j for j in jobs.values() if (j["state"], j["exit_code"]) != ("COMPLETED", "0:0")]
        assert not not_ok, not_ok
        # every sbatch call became one of these jobs, and none asked for a GPU
        calls = [line for line in slurm_log.splitlines() if "sbatch call:" in line]
        assert len(calls) == len(remote), calls
        assert not any("--gpus" in c for c in calls), calls

        # --- same results as the local run ---------------------------------------
        for d in (slurm_dir, local_dir):
            assert (d / "results" / "summary.csv").is_file()
            assert len(list((d / "results" / "figures").glob("*.png"))) >= 4
        diffs = summary_differences(
            slurm_dir / "results/summary.csv", local_dir / "results/summary.csv"
        )
        assert not diffs, "summary.csv differs (Slurm vs local):\n" + "\n".join(diffs)
        n, diffs = label_differences(slurm_dir, local_dir, "dpgmm")
        assert n == n_fits
        assert not diffs, "DPGMM labels differ (Slurm vs local):\n" + "\n".join(diffs)

    # munged, slurmctld, slurmd, slurmstepd and job processes are all gone
    assert leftover_pids(env) == []
