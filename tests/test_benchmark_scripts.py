"""Every benchmark script the README names starts: its imports resolve against the package as
it is now and ``--help`` prints its usage (a script that only runs by hand is otherwise never
imported by the suite: a moved constant broke ``paper_image_size.py`` unnoticed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))


def test_the_benchmarks_folder_holds_the_scripts_the_readme_names():
    readme = (ROOT / "README.md").read_text()
    named = {name for name in SCRIPTS if f"benchmarks/{name}" in readme}
    assert named == set(SCRIPTS), f"not in the README: {sorted(set(SCRIPTS) - named)}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts_and_prints_its_usage(script):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.lstrip().startswith("usage:"), out.stdout[:500]


def test_gpu_script_runs_the_steps_it_is_given(tmp_path):
    """``benchmarks/gpu.sh OUTDIR STEP...`` runs only the named steps (a lent GPU gives one
    command 10 minutes, the three steps take 11), with ``DPGMM_ARGS`` passed on, and refuses
    a step it does not know. ``PYTHON=echo`` stands in for the interpreter: what is checked
    is which commands the script runs, not the benchmarks."""
    def gpu(*args, **env):
        return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(tmp_path), *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={"PATH": "/usr/bin:/bin", "PYTHON": "echo", **env})

    out = gpu("dpgmm", DPGMM_ARGS="--repeats 2")
    assert out.returncode == 0, out.stderr
    assert "benchmarks/dpgmm_speed.py --device cuda --activations none --repeats 2" in out.stdout
    assert "== agree" not in out.stdout and "extract_speed" not in out.stdout
    assert (tmp_path / "gpu_dpgmm.txt").exists() and not (tmp_path / "gpu_agree.txt").exists()
    out = gpu("agree", "warp")
    assert out.returncode == 2 and "unknown step 'warp'" in out.stderr
    assert not (tmp_path / "gpu_agree.txt").exists()
