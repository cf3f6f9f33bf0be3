"""The README's commands as a user types them: ``--configfile`` is the run's whole config,
``--config`` overrides take the schema's types, and ``--report`` works from a plain install."""

from __future__ import annotations

import ast
import copy
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.utils import update_config

from convdp.config import ConfigError, coerce_types, validate_config
from tests.conftest import ROOT

PAPER = ROOT / "config/paper.yaml"
OFFLINE = "models={vgg16: {weights: none}}"


def snakemake(workdir, *args, timeout=300):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
           "--directory", str(workdir), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


def job_counts(text):
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", text, re.M)}


# -- --configfile is the whole configuration ------------------------------------------------


def test_paper_configfile_runs_only_the_papers_experiment(tmp_path):
    # config.yaml in the working directory, as in a clone: it must not be merged in
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    rc, out = snakemake(tmp_path, "-n", "--configfile", str(PAPER), "--config", OFFLINE)
    assert rc == 0, out[-3000:]
    assert "digitnet" not in out and "digits" not in out
    counts = job_counts(out)
    # blocks 1-4; no random-weights control of a model whose weights are random already
    assert counts["fit_dpgmm"] == 4 and counts["extract_activations"] == 1, counts
    assert "vgg16_random" not in out
    assert counts["prepare_dataset"] == 1 and "wildcards: model=vgg16, dataset=histology" in out


def test_without_configfile_config_yaml_is_the_config(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    rc, out = snakemake(tmp_path, "-n", "--config", "seed=1")
    assert rc == 0, out[-3000:]
    counts = job_counts(out)
    # 4 layers × 2 data sets × 2 modes, digitnet and its random-weights control
    assert counts["fit_dpgmm"] == 32 and "model=digitnet_random" in out


def test_a_run_directory_without_a_config_takes_the_workflows(tmp_path):
    # `snakemake --directory runs/a`: no config.yaml there, the workflow's own is the config
    rc, out = snakemake(tmp_path, "-n")
    assert rc == 0, out[-3000:]
    assert job_counts(out)["fit_dpgmm"] == 32
    # one of its own there (the convention of deployed workflows) is taken instead
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["models"]["digitnet"]["layers"] = ["relu1", "relu2"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc, out = snakemake(tmp_path, "-n")
    assert rc == 0, out[-3000:]
    assert job_counts(out)["fit_dpgmm"] == 16


# -- --config overrides with the schema's types ---------------------------------------------


def test_numeric_overrides_validate_and_plan(tmp_path):
    rc, out = snakemake(
        tmp_path, "-n", "--configfile", str(PAPER), "--config", OFFLINE,
        "dpgmm={n_components: 80, concentration: 0.5, max_components: null, merge: false}",
        "preprocess={pca: 8, scale_max: 12.5}", "seed=3", "label_jobs={features.22: 3}")
    assert rc == 0, out[-3000:]
    counts = job_counts(out)
    assert counts["label_dpgmm"] == 3 and counts["fit_dpgmm"] == 3, counts


def test_a_value_that_cannot_be_converted_is_refused_naming_the_key(tmp_path):
    rc, out = snakemake(tmp_path, "-n", "--configfile", str(PAPER), "--config", OFFLINE,
                        "dpgmm={n_components: eighty}")
    assert rc != 0
    assert "invalid config at dpgmm.n_components: 'eighty' is not of type 'integer'" in out
    assert not (tmp_path / "results").exists()


def test_a_key_given_twice_in_the_configfile_is_refused_naming_both_lines(tmp_path):
    """An override block appended under a key the file already has: Snakemake (PyYAML) kept
    the last, and every other setting of the first block went back to the schema's default
    without a word (`dpgmm: {n_components: 5}` after config.yaml's dpgmm: restarts 4 -> 1)."""
    text = (ROOT / "config.yaml").read_text()
    first = text.splitlines().index("dpgmm:") + 1
    config = tmp_path / "twice.yaml"
    config.write_text(text + "\n# later: fewer components\ndpgmm:\n  n_components: 5\n")
    last = config.read_text().splitlines().index("dpgmm:", first) + 1
    rc, out = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert rc != 0
    assert (f"{config}: key 'dpgmm' is given twice (lines {first} and {last}); YAML keeps only "
            "the last") in out
    assert not (tmp_path / "results").exists()


def overridden(*entries, check_layers=False):
    """The paper's config with ``--config`` entries, as Snakemake hands them to the
    workflow (its own parser), validated."""
    config = yaml.safe_load(PAPER.read_text())
    config["models"]["vgg16"]["weights"] = "none"
    update_config(config, parse_config(list(entries)))
    return validate_config(config, check_layers=check_layers)


@pytest.mark.parametrize("entry, path, value", [
    ("seed=3", "seed", 3),
    ("dpgmm={n_components: 80, concentration: 0.5}", "dpgmm.n_components", 80),
    ("dpgmm={n_components: 80, concentration: 0.5}", "dpgmm.concentration", 0.5),
    ("dpgmm={max_components: null, merge: false, restarts: 2}", "dpgmm.max_components", None),
    ("dpgmm={max_components: null, merge: false, restarts: 2}", "dpgmm.merge", False),
    ("dpgmm={tol: 1e-4, grow_at: 0.5}", "dpgmm.tol", 1e-4),
    ("preprocess={pca: 8, max_samples: 500}", "preprocess.pca", 8),
    ("preprocess={pca: null, scale_max: 10}", "preprocess.pca", None),
    ("preprocess={pca: null, scale_max: 10}", "preprocess.scale_max", 10.0),
    ("baseline={k_min: 3, k_max: 9, k_limit: 30}", "baseline.k_max", 9),
    ("extract={batch_size: 4, chunk_size: 2}", "extract.chunk_size", 2),
    ("transfer={retrain: false, epochs: 2, lr: 0.05}", "transfer.retrain", False),
    ("transfer={retrain: false, epochs: 2, lr: 0.05}", "transfer.lr", 0.05),
    ("report={n_examples: 3}", "report.n_examples", 3),
    ("label_jobs={features.22: 4}", "label_jobs.features.22", 4),
    ("label_jobs=4", "label_jobs", 4),
    ("models={vgg16: {num_classes: 10, input_size: 128, train: {epochs: 3, lr: 0.01}}}",
     "models.vgg16.input_size", 128),
    ("models={vgg16: {num_classes: 10, input_size: 128, train: {epochs: 3, lr: 0.01}}}",
     "models.vgg16.train.lr", 0.01),
    ("models={vgg16: {normalize: null}}", "models.vgg16.normalize", None),
    ("datasets={histology: {size: 64, max_samples: 1}}", "datasets.histology.size", 64),
    # a number or "auto": the const "auto" made any string pass as one, so "2" was refused
    ("extract={smooth: {features.22: 2}}", "extract.smooth.features.22", 2.0),
    ("extract={smooth: {features.22: auto}}", "extract.smooth.features.22", "auto"),
])
def test_override_takes_the_schema_type(entry, path, value):
    config = overridden(entry)
    keys = path.split(".")
    if keys[0] == "label_jobs" and len(keys) > 1:
        keys = ["label_jobs", ".".join(keys[1:])]
    if keys[:2] == ["extract", "smooth"] and len(keys) > 2:
        keys = ["extract", "smooth", ".".join(keys[2:])]
    for key in keys:
        config = config[key]
    assert config == value and type(config) is type(value)


def test_whole_number_floats_are_integers_where_the_schema_asks_one():
    """`seed: 1.0` passed the schema as an integer, then failed in train_model (a float seed)
    naming no key: 1.0 is taken as 1; 1.5 is still refused, and numbers stay floats."""
    config = overridden("seed=3")
    config = validate_config(config | {"seed": 1.0, "dpgmm": config["dpgmm"] | {
        "n_components": 40.0, "concentration": 2.0}}, check_layers=False)
    assert config["seed"] == 1 and type(config["seed"]) is int
    assert type(config["dpgmm"]["n_components"]) is int
    assert type(config["dpgmm"]["concentration"]) is float
    with pytest.raises(ConfigError, match=r"seed: 1\.5 is not of type 'integer'"):
        validate_config(overridden("seed=3") | {"seed": 1.5}, check_layers=False)


def test_override_checks_layers_with_converted_values():
    config = overridden("dpgmm={n_components: 80}", "preprocess={pca: 8}", check_layers=True)
    assert config["models"]["vgg16"]["layers"][3] == "features.22"


@pytest.mark.parametrize("entry, message", [
    ("dpgmm={n_components: 8.5}", r"dpgmm\.n_components: '8\.5' is not of type 'integer'"),
    ("dpgmm={concentration: nan}", r"dpgmm\.concentration: 'nan' is not of type 'number'"),
    ("dpgmm={merge: maybe}", r"dpgmm\.merge: 'maybe' is not of type 'boolean'"),
    ("preprocess={pca: many}", r"preprocess\.pca: 'many' is not of type 'integer', 'null'"),
    ("label_jobs={features.22: two}", r"label_jobs"),
    ("baseline={k_max: 0}", r"baseline\.k_max: 0 is less than the minimum of 1"),
])
def test_unconvertible_override_is_refused_naming_the_key(entry, message):
    with pytest.raises(ConfigError, match=message):
        overridden(entry)


def test_strings_stay_strings_where_the_schema_takes_strings():
    schema = yaml.safe_load((ROOT / "convdp/schema.yaml").read_text())
    config = {"models": {"m": {"arch": "x", "weights": "none", "layers": "blocks"}},
              "datasets": {"d": {"kind": "digits", "name": "10", "base_url": "null"}},
              "extract": {"device": "auto"}}
    out = coerce_types(copy.deepcopy(config), schema)
    assert out["models"]["m"] == config["models"]["m"]
    assert out["datasets"]["d"]["name"] == "10" and out["datasets"]["d"]["base_url"] is None
    # "auto" or a number: a --config "12" is the number (it was refused as not "auto")
    for given, taken in (("12", 12), ("auto", "auto")):
        spec = {"datasets": {"f": {"kind": "folder", "path": "x", "bit_depth": given}}}
        assert coerce_types(spec, schema)["datasets"]["f"]["bit_depth"] == taken


# -- the report's dependencies are declared -------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Top-level names of every module a Python file imports (function-level imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _declared(dist: str, extras: frozenset = frozenset(), seen: set | None = None) -> set[str]:
    """``dist`` and everything its requirements (with ``extras``) bring in, as installed
    distribution names: what ``pip install`` of it alone gives."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen = set() if seen is None else seen
    key = (canonicalize_name(dist), extras)
    if key in seen:
        return set()
    seen.add(key)
    out = {canonicalize_name(dist)}
    for line in md.requires(dist) or []:
        req = Requirement(line)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            continue
        try:
            out |= _declared(req.name, frozenset(req.extras), seen)
        except md.PackageNotFoundError:
            out.add(canonicalize_name(req.name))
    return out


def test_what_snakemake_report_imports_is_declared():
    """`snakemake --report` from `pip install -e .` alone: every module that snakemake's
    report code imports (pygments lazily, when it renders) comes from a declared dependency,
    not from the test extras."""
    import snakemake.report
    from packaging.utils import canonicalize_name

    declared = _declared("convdp")
    report_dir = Path(snakemake.report.__file__).parent
    modules = set().union(*(_imports(p) for p in report_dir.rglob("*.py")))
    modules -= set(sys.stdlib_module_names) | {"snakemake"}
    providers = md.packages_distributions()
    assert "pygments" in modules and "jinja2" in modules
    missing = {}
    for module in sorted(modules):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & declared:
            missing[module] = sorted(dists) or ["(not installed)"]
    assert not missing, f"modules the report imports that no declared dependency brings: {missing}"
    # and the test extras are not what brings pygments
    assert "pytest" not in declared
