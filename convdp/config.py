"""Workflow configuration: JSON-schema validation (with defaults) plus the checks a schema can't do.

Every error names the key at fault, and is raised before any job runs.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key."""


def load_config(path: str | Path) -> dict:
    """Read a YAML config and validate it (see :func:`validate_config`)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return validate_config(config)


def validate_config(config: dict, schema: str | Path = SCHEMA, check_layers: bool = True) -> dict:
    """Validate ``config`` in place against the schema, fill in defaults, check cross-references.

    ``check_layers`` builds each model's architecture (no weights) to check its layer names.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    jobs = config.get("label_jobs")
    if isinstance(jobs, dict):  # `--config 'label_jobs={relu4: 4}'` gives the 4 as a string
        config["label_jobs"] = {k: int(v) if isinstance(v, str) and v.isdigit() else v
                                for k, v in jobs.items()}
    try:
        validate(config, str(schema), set_default=True)
    except WorkflowError as exc:
        raise ConfigError(_schema_message(exc)) from None
    datasets = config["datasets"]
    for name, spec in datasets.items():
        need = {"torchvision": "name", "folder": "path", "images": "paths"}.get(spec["kind"])
        if need and need not in spec:
            raise ConfigError(f"datasets.{name}: kind {spec['kind']!r} needs the key {need!r}")
    for name, spec in config["models"].items():
        key = f"models.{name}"
        for ds in spec["analyse_on"]:
            if ds not in datasets:
                raise ConfigError(f"{key}.analyse_on: unknown data set {ds!r}; defined: {sorted(datasets)}")
        if spec["weights"] == "train":
            if "train_on" not in spec:
                raise ConfigError(f"{key}.train_on is required when weights is 'train'")
            if spec["train_on"] not in datasets:
                raise ConfigError(f"{key}.train_on: unknown data set {spec['train_on']!r}; defined: {sorted(datasets)}")
        if check_layers:
            from convdp.models import build_model
            from convdp.models import check_layers as check

            try:
                net = build_model(spec["arch"], spec.get("num_classes", 10),
                                  3 if spec["arch"] != "digitnet" else 1)
                spec["layers"] = check(net, spec["layers"], name)
            except ValueError as exc:
                raise ConfigError(f"{key}.layers: {exc}" if "layer" in str(exc) else f"{key}.arch: {exc}") from None
    if check_layers or all(isinstance(s["layers"], list) for s in config["models"].values()):
        _check_label_jobs(config)
    b = config["baseline"]
    if b["k_min"] > b["k_max"]:
        raise ConfigError(f"baseline.k_min ({b['k_min']}) is larger than baseline.k_max ({b['k_max']})")
    return config


def _check_label_jobs(config: dict) -> None:
    """``label_jobs`` as a mapping may name only layers that some model clusters."""
    jobs = config["label_jobs"]
    if not isinstance(jobs, dict):
        return
    layers = {name: spec["layers"] for name, spec in config["models"].items()}
    known = {layer for names in layers.values() for layer in names}
    for layer in jobs:
        if layer not in known:
            listing = "; ".join(f"{m}: {', '.join(names)}" for m, names in layers.items())
            raise ConfigError(f"label_jobs.{layer}: {layer!r} is not a layer of any model; "
                              f"the models' layers are {listing}")


def label_jobs(config: dict, layer: str) -> int:
    """How many jobs label ``layer``'s samples (config ``label_jobs``; 1 = the fit job itself)."""
    jobs = config.get("label_jobs", 1)
    return int(jobs.get(layer, 1)) if isinstance(jobs, dict) else int(jobs)


def _schema_message(exc: Exception) -> str:
    """The useful part of jsonschema's message, with the path to the key."""
    cause = exc.__cause__ or exc.__context__
    path = getattr(cause, "absolute_path", None)
    where = ".".join(str(p) for p in path) if path else "(top level)"
    msg = getattr(cause, "message", None) or str(exc)
    if getattr(cause, "context", None):  # oneOf / anyOf: say why each alternative fails
        why = "; ".join(
            f"{'.'.join(str(p) for p in c.absolute_path) or where}: {c.message}"
            for c in cause.context
        )
        msg += f" ({why})"
    return f"invalid config at {where}: {msg}"


def with_overrides(config: dict, **overrides) -> dict:
    """A deep copy of ``config`` with top-level sections updated (for tests and tools)."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
