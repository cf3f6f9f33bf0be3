"""The rules' ``code`` param (convdp.jobcode): an edit of the code a job runs reruns it, an
edit elsewhere does not; stores resumed across a rerun only by the same code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convdp import pipeline
from convdp.jobcode import script_digest, script_modules
from tests.conftest import ROOT
from tests.faults.helpers import make_digits, make_model

FILES = {
    "mypkg/__init__.py": '"""A package."""\n',
    # a façade, as convdp.pipeline is: each function imports what it runs
    "mypkg/facade.py": '''
        """Façade."""
        from mypkg import base

        LIMIT = 3


        def used(x):
            from mypkg.work import run

            return helper(run(x))


        def helper(y):
            return base.clip(y, LIMIT)


        def unused():
            from mypkg import other

            return other.thing()
        ''',
    "mypkg/base.py": "def clip(y, limit):\n    return min(y, limit)\n",
    "mypkg/work.py": '''
        def run(x):
            from .deep import twice  # a relative import inside a function

            return twice(x)
        ''',
    "mypkg/deep.py": "def twice(x):\n    return 2 * x\n",
    "mypkg/other.py": "def thing():\n    return 1\n",
    "mypkg/sub/__init__.py": "",
    "mypkg/sub/leaf.py": "VALUE = 1\n",
    "script.py": "from mypkg.facade import used\n\nused(1)\n",
}


@pytest.fixture
def tree(tmp_path):
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return tmp_path


def digest(tree):
    return script_digest(tree / "script.py", tree, "mypkg")


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_code_a_script_runs_is_the_functions_it_calls_and_what_they_import(tree):
    parts, whole = script_modules(tree / "script.py", tree, "mypkg")
    assert sorted(parts) == ["mypkg.facade"]
    assert whole == {"mypkg", "mypkg.base", "mypkg.work", "mypkg.deep"}
    # the façade's part: its statements outside definitions, then what `used` reaches
    names = [d.split("\n")[0] for d in parts["mypkg.facade"] if "\n" in d]
    assert sorted(names) == ["helper", "used"]


@pytest.mark.parametrize("path, old, new", [
    ("mypkg/deep.py", "2 * x", "3 * x"),                    # two imports down, relative
    ("mypkg/base.py", "min(y, limit)", "max(y, limit)"),    # a module-level import of the façade
    ("mypkg/facade.py", "LIMIT = 3", "LIMIT = 4"),          # a constant of the façade
    ("mypkg/facade.py", "return base.clip", "return 1 + base.clip"),  # a function `used` calls
    ("mypkg/__init__.py", '"""A package."""', "import os"),  # the package's __init__
    ("script.py", "used(1)", "used(2)"),
])
def test_an_edit_of_code_the_script_runs_changes_its_digest(tree, path, old, new):
    before = digest(tree)
    edit(tree / path, old, new)
    assert digest(tree) != before


@pytest.mark.parametrize("path, old, new", [
    ("mypkg/other.py", "return 1", "return 2"),             # imported by a function not run
    ("mypkg/facade.py", "return other.thing()", "return 0"),  # that function itself
    ("mypkg/sub/leaf.py", "VALUE = 1", "VALUE = 2"),        # never imported
    ("mypkg/deep.py", "return 2 * x", "# doubles\n    return 2 * x  # as before"),  # comments
    ("mypkg/facade.py", '"""Façade."""', '"""Another docstring."""'),
])
def test_an_edit_elsewhere_leaves_the_digest(tree, path, old, new):
    before = digest(tree)
    edit(tree / path, old, new)
    assert digest(tree) == before


def test_every_rule_with_a_script_has_its_scripts_code_param():
    """A rule without it would keep its results over an edit of the code it runs; `use rule`
    copies inherit it (their `with: params:` update the keys they name)."""
    checked = 0
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule |use rule )", smk.read_text()):
            script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', block)
            if block.startswith("rule ") and script:
                name = block.split()[1].rstrip(":")
                assert f'code=code_of("{script[1]}")' in block, f"{smk.name}: rule {name}"
                checked += 1
    assert checked >= 18


def test_the_workflows_rules_rerun_on_the_code_they_run_only():
    """Extraction does not run the figures' code, nor the fits the extraction's; the figures
    run the plotting code."""
    scripts = ROOT / "scripts"
    _, extraction = script_modules(scripts / "extract_activations.py")
    _, figures = script_modules(scripts / "aggregate.py")
    _, fits = script_modules(scripts / "fit.py")
    assert {"convdp.extract", "convdp.models", "convdp.smoothing"} <= extraction
    assert not extraction & {"convdp.plotting", "convdp.aggregate", "convdp.dpgmm",
                             "convdp.cluster", "convdp.transfer", "convdp.atlas"}
    assert {"convdp.plotting", "convdp.aggregate"} <= figures
    assert "convdp.extract" not in figures
    assert {"convdp.cluster", "convdp.dpgmm.fitting"} <= fits
    assert "convdp.plotting" not in fits


def test_a_store_is_resumed_only_by_the_same_code(tmp_path):
    weights, meta = make_model(tmp_path)
    data = make_digits(tmp_path / "data.zarr", n=40)
    kw = dict(device="cpu", batch_size=16, chunk_size=16, progress=False)
    out = tmp_path / "acts.json"
    first = pipeline.extract(weights, meta, data, ["relu1"], out, code="a", **kw)
    assert first["fingerprint"]["code"] == "a" and first["chunks_resumed"] == 0
    assert pipeline.extract(weights, meta, data, ["relu1"], out, code="a", **kw)[
        "chunks_resumed"] == 3
    again = pipeline.extract(weights, meta, data, ["relu1"], out, code="b", **kw)
    assert again["chunks_resumed"] == 0 and again["fingerprint"]["code"] == "b"
    assert Path(pipeline.activation_store(out)).is_dir()


def test_an_edit_of_the_package_reruns_the_jobs_that_run_it(tmp_path):
    """Through Snakemake, on a copy of the workflow and package (imported from the copy): a
    new function in the plotting code reruns no data set job, one in the digits parser does."""
    for name in ("Snakefile", "rules", "scripts", "convdp", "envs", "profiles", "report"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    target = "results/data/digits_source.zarr"

    def snakemake(*args):
        out = subprocess.run(
            [sys.executable, "-m", "snakemake", target, "--configfile",
             str(ROOT / "tests/config/tiny.yaml"), *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout + out.stderr

    snakemake("--cores", "1")
    for module, reruns in (("plotting.py", False), ("datasets/digits.py", True)):
        with open(tmp_path / "convdp" / module, "a") as f:
            f.write("\n\ndef _added():\n    return 1\n")
        text = snakemake("-n")
        assert ("Nothing to be done" not in text) == reruns, (module, text[-1500:])
        if reruns:
            assert "code of prepare_dataset.py with convdp" in text


def test_a_job_whose_convdp_is_not_the_workflows_stops_naming_both(tmp_path):
    """The rule's code param was read from the package beside the workflow; a job that
    imports another convdp (an older pip install, another clone) would make results the
    rerun check never saw: it stops, naming both; with the same code it runs."""
    from types import SimpleNamespace

    from convdp.pipeline import snakemake_job

    right = f"code of fit.py with convdp: {script_digest(ROOT / 'scripts' / 'fit.py')}"
    for code, fails in ((right, False), ("code of fit.py with convdp: " + "0" * 64, True)):
        smk = SimpleNamespace(log=[str(tmp_path / "job.log")], threads=1,
                              params=SimpleNamespace(code=code), scriptdir=str(ROOT / "scripts"))
        ran = []
        if fails:
            with pytest.raises(RuntimeError, match="whose code is not the code the workflow at"):
                with snakemake_job(smk):
                    ran.append(1)
            assert "pip install -e" in (tmp_path / "job.log").read_text()
        else:
            with snakemake_job(smk):
                ran.append(1)
        assert ran == ([] if fails else [1])
