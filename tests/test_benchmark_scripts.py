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
