"""A plain (non-editable) install validates a config from any directory: the schema ships
inside the package."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_non_editable_install_validates_the_default_config_elsewhere(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    py = venv / "bin" / "python"
    # a copy of the sources, so that the build leaves nothing in the checkout
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "results", ".snakemake", "logs", "build", "*.egg-info", "__pycache__", ".*cache"))
    build = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(src)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = subprocess.run(
        [str(py), "-c",
         "import convdp, pathlib; from convdp.config import load_config, SCHEMA;"
         f"cfg = load_config({str(ROOT / 'config.yaml')!r});"
         "print(convdp.__file__); print(SCHEMA); print(cfg['dpgmm']['max_components'])"],
        cwd=elsewhere, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
    module, schema, cap = check.stdout.split()
    assert module.startswith(str(venv)) and schema.startswith(str(venv)), check.stdout
    assert cap == "320"  # a default that only the schema supplies
