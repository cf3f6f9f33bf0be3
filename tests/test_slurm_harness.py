"""Submit a throwaway 3-rule workflow through a real local Slurm with the
repository's profiles/slurm profile (snakemake-executor-plugin-slurm).

Needs root and the Debian Slurm packages (.ci/install_slurm.sh); skipped
otherwise.  Run with:  pytest -m slurm tests/test_slurm_harness.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.slurm_cluster import (
    SNAKEMAKE_FLAGS,
    leftover_pids,
    local_slurm,
    missing_requirements,
    slurm_job_states,
    slurm_jobs,
)

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"

_why_not = missing_requirements()
if _why_not is None and shutil.which("snakemake") is None:
    _why_not = "snakemake is not installed"
if _why_not is None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        _why_not = "snakemake-executor-plugin-slurm is not installed (pip install .[slurm])"


SNAKEFILE = textwrap.dedent(
    """\
    localrules: all

    rule all:
        input: "c.txt"

    rule make_a:
        output: "a.txt"
        resources: mem_mb=100, runtime=5
        shell: "echo a-$SLURM_JOB_ID > {output}"

    rule make_gpu:
        output: "gpu.txt"
        resources: gpu=1, mem_mb=100, runtime=5
        shell: "echo gpu-$SLURM_JOB_ID > {output}"

    rule combine:
        input: "a.txt", "gpu.txt"
        output: "c.txt"
        resources: mem_mb=100, runtime=5
        shell: "cat {input} > {output}"
    """
)

# The test node has no GPUs and refuses `sbatch --gpus=1`.  Override ONLY the
# GPU-using job's request; everything else comes from profiles/slurm.
NO_GPU_OVERRIDE = ["--set-resources", "make_gpu:gpu=0"]

TIMEOUT_S = 300


def _snakemake(workdir: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(workdir / "Snakefile"),
        "--directory", str(workdir),
        "--profile", str(PROFILE),
        "--workflow-profile", "none",
        *SNAKEMAKE_FLAGS,  # squeue status queries, no slurmdbd here
        "--verbose",  # logs every `sbatch call: ...`
        *extra,
    ]  # fmt: skip
    return subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _sbatch_calls(log: str) -> list[str]:
    return [line for line in log.splitlines() if "sbatch call:" in line]


def test_profiles_parse(monkeypatch):
    """Both profiles load with Snakemake's own CLI parser (no Slurm needed)."""
    from snakemake.cli import parse_args

    monkeypatch.setenv("SBATCH_ACCOUNT", "proj-123")
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    _, args = parse_args(["--profile", str(PROFILE), "--workflow-profile", "none"])
    assert args.executor == "slurm"
    assert args.retries == 1 and args.rerun_incomplete
    assert not args.resources  # no global gpu=1 cap on the cluster
    defaults = args.default_resources
    assert defaults["slurm_account"].raw == "'proj-123'"  # from $SBATCH_ACCOUNT
    assert defaults["slurm_partition"].raw == "''"  # empty: default partition
    per_rule = args.set_resources
    assert per_rule["extract_activations"]["gpu"].value == 1
    assert per_rule["train_model"]["gpu"].value == 1
    # a retry (attempt 2) of a fit gets twice the time; its memory is left to the rule's
    # fit_mem_mb (sized from the fitting samples, doubled on a retry), not overridden here
    kw = dict(wildcards={}, input=[], threads=1, rulename="fit_dpgmm", async_run=None)
    for rule in ("fit_dpgmm", "fit_baseline"):
        assert "mem_mb" not in per_rule[rule]
        first, second = (per_rule[rule]["runtime"].evaluate(attempt=a, **kw).value for a in (1, 2))
        assert second == 2 * first, (rule, first, second)

    _, args = parse_args(["--workflow-profile", str(REPO / "profiles" / "default")])
    assert args.executor is None
    assert args.resources["gpu"].value == 1


@pytest.mark.slurm
@pytest.mark.skipif(_why_not is not None, reason=f"no local Slurm: {_why_not}")
def test_workflow_runs_through_local_slurm(tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)

    with local_slurm(tmp_path / "cluster") as env:
        # 1. unchanged profile: the GPU rule becomes `sbatch ... --gpus=1`,
        #    which this GPU-less node rejects.
        r = _snakemake(wf, env, "gpu.txt")
        log = r.stdout + r.stderr
        assert r.returncode != 0, log
        gpu_calls = [c for c in _sbatch_calls(log) if "rule_make_gpu" in c]
        assert gpu_calls and all("--gpus=1" in c for c in gpu_calls), log
        assert not (wf / "gpu.txt").exists()

        # 2. with the GPU override the whole workflow goes through Slurm
        r = _snakemake(wf, env, *NO_GPU_OVERRIDE)
        log = r.stdout + r.stderr
        assert r.returncode == 0, log
        calls = _sbatch_calls(log)
        assert len(calls) == 3, log  # make_a, make_gpu, combine (all is local)
        assert not any("--gpus" in c for c in calls), log
        for c in calls:
            assert "--mem 100" in c and "-t 5" in c, c  # resources reached sbatch
            assert "-p debug" in c, c  # default partition (SBATCH_PARTITION unset)
            assert " -A " not in c, c  # no account (SBATCH_ACCOUNT unset)

        # the outputs were written by Slurm jobs
        a_text = (wf / "a.txt").read_text()
        assert a_text.startswith("a-") and a_text.strip() != "a-", a_text
        assert (wf / "c.txt").read_text().splitlines() == [
            a_text.strip(),
            (wf / "gpu.txt").read_text().strip(),
        ]

        # 3. Slurm itself reports the jobs as COMPLETED
        states = slurm_job_states(env)
        for rule in ("make_a", "make_gpu", "combine"):
            jobid, state = states[f"rule_{rule}"]
            assert state == "COMPLETED", (rule, states)
            show = subprocess.run(
                ["scontrol", "show", "job", jobid],
                env=env, capture_output=True, text=True, timeout=30, check=True,
            ).stdout  # fmt: skip
            assert "JobState=COMPLETED" in show and "ExitCode=0:0" in show, show
            if rule != "combine":
                assert f"-{jobid}" in (wf / f"{rule.removeprefix('make_')}.txt").read_text()
        # the rejected --gpus=1 submissions never became jobs
        assert len(slurm_jobs(env)) == 3, slurm_jobs(env)

    # munged, slurmctld, slurmd, slurmstepd and job processes are all gone
    assert leftover_pids(env) == []
