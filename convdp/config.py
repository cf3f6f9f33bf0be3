"""Workflow configuration: JSON-schema validation (with defaults) plus the checks a schema can't do.

Every error names the key at fault, and is raised before any job runs.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
from collections import Counter
from importlib import resources
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

SCHEMA = Path(str(resources.files("convdp").joinpath("schema.yaml")))
"""The config schema, shipped in the package (so a non-editable install validates too)."""


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key."""


def load_config(path: str | Path) -> dict:
    """Read a YAML config and validate it (see :func:`validate_config`)."""
    return validate_config(read_config_file(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key repeated in one mapping: PyYAML (and Snakemake's
    reading of a config file) keep the last, so an override block appended under a key the
    file already has would silently drop every setting of the first."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML refuses it itself
                    continue
                if first is not None:
                    raise ConfigError(
                        f"{self.name}: key {key!r} is given twice (lines {first} and {line}); "
                        "YAML keeps only the last, which would drop every setting under the "
                        "first: write the key once")
                seen[key] = line
        return super().construct_mapping(node, deep)


def _unique_pairs(pairs: list, path: Path) -> dict:
    """A JSON object's ``(key, value)`` pairs as a dict, refusing a key given twice."""
    seen = Counter(key for key, _ in pairs)
    twice = [key for key, n in seen.items() if n > 1]
    if twice:
        raise ConfigError(f"{path}: key {twice[0]!r} is given twice in one object; JSON "
                          "readers keep only the last: write the key once")
    return dict(pairs)


def read_config_file(path: str | Path) -> dict:
    """A config file (YAML, or JSON) as a dict, before validation; a key given twice in one
    mapping, or a top level that is not a mapping, is a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    try:  # JSON first, as Snakemake reads a config file (tab-indented JSON is no YAML)
        config = json.loads(text, object_pairs_hook=lambda pairs: _unique_pairs(pairs, path))
    except json.JSONDecodeError:
        try:
            with open(path, encoding="utf-8") as f:  # the loader's name is the file's
                config = yaml.load(f, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config is a mapping of keys (datasets:, models:, …) at its "
                          f"top level, not a {type(config).__name__}")
    return config


def validate_config(config: dict, schema: str | Path = SCHEMA, check_layers: bool = True) -> dict:
    """Validate ``config`` in place against the schema, fill in defaults, check cross-references.

    ``check_layers`` builds each model's architecture (no weights) to check its layer names.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    # `--config 'dpgmm={n_components: 80}'` hands the 80 over as a string: take it as the
    # schema's type (an unconvertible value is left for the schema to refuse, naming the key)
    schema_dict = yaml.safe_load(Path(schema).read_text())
    coerce_types(config, schema_dict)
    try:
        validate(config, str(schema), set_default=True)
    except WorkflowError as exc:
        raise ConfigError(_schema_message(exc)) from None
    _check_finite(config)
    _check_names(config)
    from convdp.control import expand_controls

    try:  # control: random adds the model NAME_random (convdp.control)
        expand_controls(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check_duplicates(config)
    _check_digit_parts(config["datasets"])
    _check_figure_names(config["models"], config["transfer"]["benchmark"])
    _check_device(config["extract"]["device"])
    _check_device(config["dpgmm"]["device"], "dpgmm.device")
    _check_torch_only(config["dpgmm"], schema_dict["properties"]["dpgmm"]["properties"])
    datasets = config["datasets"]
    defaults = {k: v.get("default") for k, v in
                schema_dict["properties"]["datasets"]["additionalProperties"]["properties"].items()}
    for name, spec in datasets.items():
        _check_kind_keys(name, spec, defaults)
    facts = {name: _check_dataset(name, spec) for name, spec in datasets.items()}
    for name, spec in config["models"].items():
        key = f"models.{name}"
        for ds in spec["analyse_on"]:
            if ds not in datasets:
                raise ConfigError(f"{key}.analyse_on: unknown data set {ds!r}; defined: {sorted(datasets)}")
            n_images = facts[ds]["images"]
            if "image" in config["modes"] and n_images is not None and n_images < 2:
                raise ConfigError(
                    f"modes: image mode clusters one vector per image and data set {ds!r} "
                    f"({key}.analyse_on) has {n_images}: leave image out of modes, or give the "
                    "data set more images")
        if spec["weights"] == "train" and "train_on" not in spec:
            raise ConfigError(f"{key}.train_on is required when weights is 'train'")
        if "train_on" in spec:  # the source, for a net trained here or not (README)
            if spec["train_on"] not in datasets:
                raise ConfigError(f"{key}.train_on: unknown data set {spec['train_on']!r}; defined: {sorted(datasets)}")
            if spec["train_on"] in spec["analyse_on"][1:]:
                # the first of analyse_on is the source: the training data as a target would
                # be scored and retrained on as a new data set
                raise ConfigError(
                    f"{key}.analyse_on: the data set the net is trained on "
                    f"({spec['train_on']!r}) must come first (it is the source; the others are "
                    f"the targets): {[spec['train_on']] + [d for d in spec['analyse_on'] if d != spec['train_on']]}")
        if spec["weights"] == "train":
            if "num_classes" in spec and not spec.get("control_of"):
                raise ConfigError(
                    f"{key}.num_classes: a net trained here has one output per class of its "
                    f"training data ({spec['train_on']!r}), whatever this says: remove it, and "
                    f"choose the classes with datasets.{spec['train_on']}.classes")
        else:
            from convdp.provenance import weights_file

            w = weights_file(spec)
            if w and not Path(w).is_file():
                raise ConfigError(f"{key}.weights: weights file {w} does not exist")
            if not w and spec["weights"] != "none":
                _check_weights_name(key, spec["weights"], spec["arch"], spec.get("num_classes"))
        channels = _check_channels(name, spec, facts)
        if check_layers:
            from convdp.layers import check_layers as check

            try:
                net = meta_net(spec, channels)
            except ValueError as exc:
                raise ConfigError(f"{key}.arch: {exc}") from None
            try:
                spec["layers"] = check(net, spec["layers"], name)
            except ValueError as exc:
                raise ConfigError(f"{key}.layers: {exc}") from None
            _check_sizes(config, name, net, channels, facts)
    if check_layers or all(isinstance(s["layers"], list) for s in config["models"].values()):
        _check_layer_keys(config["label_jobs"], "label_jobs", config)
        _check_layer_keys(config["extract"]["smooth"], "extract.smooth", config)
    b = config["baseline"]
    if b["k_min"] > b["k_max"]:
        raise ConfigError(f"baseline.k_min ({b['k_min']}) is larger than baseline.k_max ({b['k_max']})")
    if b.get("k_limit") is not None and b["k_limit"] < b["k_max"]:  # was raised to k_max unsaid
        raise ConfigError(f"baseline.k_limit ({b['k_limit']}) is below baseline.k_max "
                          f"({b['k_max']}): the range grows from k_max up to k_limit; give "
                          "k_limit >= k_max, or null (4 x k_max)")
    dp = config["dpgmm"]
    most = max(dp["n_components"], dp.get("max_components") or 0, b.get("k_limit") or 4 * b["k_max"])
    if most > LABEL_MAX:  # cluster ids are stored as int16: larger ones would wrap
        raise ConfigError(f"dpgmm.n_components / max_components or baseline.k_limit (4 x k_max "
                          f"when null) allow {most} clusters; labels hold at most {LABEL_MAX}")
    return config


LABEL_MAX = 32767
"""The largest cluster id the int16 labels (fits, label parts, the labelling pass) hold."""


_NULLS = {"null", "Null", "NULL", "~", "none", "None"}
_TRUE, _FALSE = {"true", "True", "TRUE", "yes", "Yes"}, {"false", "False", "FALSE", "no", "No"}


def coerce_types(value, schema: dict):
    """``value`` with strings taken as the type the JSON schema asks where it asks for no
    string: integer, number, boolean or null (unions such as ``[integer, "null"]`` too), in
    nested objects and arrays, mappings updated in place.

    Snakemake gives the values inside a nested ``--config`` entry (``'dpgmm={n_components:
    80}'``) as strings. A string that none of the types takes is returned unchanged, so that
    validation refuses it naming the key.
    """
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        objects = [s for s in _alternatives(schema) if s.get("type") == "object"]
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is None:  # a oneOf alternative that is an object (label_jobs)
                sub = next((o.get("properties", {}).get(key, o.get("additionalProperties"))
                            for o in objects), None)
            if isinstance(sub, dict):
                value[key] = coerce_types(value[key], sub)
        return value
    if isinstance(value, list):
        items = schema.get("items") or next(
            (s["items"] for s in _alternatives(schema) if isinstance(s.get("items"), dict)), None)
        return [coerce_types(v, items) for v in value] if isinstance(items, dict) else value
    if isinstance(value, float):
        # 1.0 passes the schema as an integer, then fails where a job needs an int (a seed)
        types, _ = _types(schema)
        if "integer" in types and "number" not in types and value.is_integer():
            return int(value)
        return value
    if not isinstance(value, str):
        return value
    types, consts = _types(schema)
    if value in consts:
        return value
    if "null" in types and value in _NULLS:
        return None
    # a string the enum or const does not list is no string the schema takes (extract.smooth:
    # a number or "auto", so a --config "2" is the number)
    if "string" in _types(schema, consts=False)[0] and not _refused_string(value, schema):
        return value
    if "boolean" in types and value in _TRUE | _FALSE:
        return value in _TRUE
    for kind, convert in (("integer", int), ("number", float)):
        if kind in types:
            try:
                number = convert(value)
            except ValueError:
                continue
            if math.isfinite(number):
                return number
    return value


def _refused_string(value: str, schema: dict) -> bool:
    """Whether every string alternative of ``schema`` refuses ``value`` by its pattern
    (``bit_depth``: "auto" or a number, so a --config "12" is the number)."""
    import re

    strings = [s for s in _alternatives(schema) if "string" in
               ({s["type"]} if isinstance(s.get("type"), str) else set(s.get("type", [])))]
    return bool(strings) and all("pattern" in s and not re.search(s["pattern"], value)
                                 for s in strings)


def _alternatives(schema: dict) -> list[dict]:
    return [schema] + [s for k in ("oneOf", "anyOf") for s in schema.get(k, [])]


def _types(schema: dict, consts: bool = True) -> tuple[set[str], list]:
    """The JSON types ``schema`` allows (over oneOf/anyOf alternatives; with ``consts``, the
    types of its enum/const values too), and its enum/const values."""
    types, values = set(), []
    for s in _alternatives(schema):
        t = s.get("type", [])
        types |= {t} if isinstance(t, str) else set(t)
        values += list(s.get("enum", [])) + ([s["const"]] if "const" in s else [])
    for c in values if consts else []:
        types.add("null" if c is None else "boolean" if isinstance(c, bool) else
                  "integer" if isinstance(c, int) else "number" if isinstance(c, float) else
                  "string" if isinstance(c, str) else "other")
    return types, values


def _check_finite(value, key: str = "") -> None:
    """No number is NaN or infinite: YAML's ``.nan`` / ``.inf`` (and JSON's ``NaN``) come in
    as floats, and NaN passes every ``minimum`` / ``maximum`` of the schema (it compares
    false): ``dpgmm.weight_threshold: .nan`` kept no cluster in any fit, without a word. A
    string from ``--config`` is refused alike (:func:`coerce_types`)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{key}.{i}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"invalid config at {key or '(top level)'}: {value!r} is not a "
                          "finite number")


def _check_names(config: dict) -> None:
    """Model and data set names are path components (``results/activations/{model}/
    {dataset}.json``, ``results/dpgmm/{model}/{dataset}/...``): a ``/`` in one makes two
    pairs one file (model ``net`` on ``x/d`` and model ``net/x`` on ``d``), so one pair's
    results would be read as the other's. ``.`` and ``..`` are no folder of their own: every
    model on a data set ``..`` wrote ``results/dpgmm/{model}/../{layer}/...``, the one file
    ``results/dpgmm/{layer}/...``, each model's fits over the others'. Snakemake reads
    ``{...}`` in a file name as a wildcard (a data set ``t{1}`` failed the DAG with
    "Wildcards in input files cannot be determined from output files: '1'")."""
    for section in ("datasets", "models"):
        for name in config[section]:
            if (not isinstance(name, str) or name in ("", ".", "..")
                    or any(ch in name for ch in "/{}")):
                raise ConfigError(f"{section}.{name}: {name!r} is not a valid name: names "
                                  "become folder and file names, so give a non-empty one "
                                  "without '/', '{' or '}', other than '.' and '..'")


def _check_duplicates(config: dict) -> None:
    """No list names the same thing twice."""
    lists = {"modes": config["modes"]}
    for name, spec in config["datasets"].items():
        lists |= {f"datasets.{name}.{k}": spec[k] for k in ("classes", "paths") if k in spec}
    for name, spec in config["models"].items():
        lists[f"models.{name}.analyse_on"] = spec["analyse_on"]
        if isinstance(spec["layers"], list):
            lists[f"models.{name}.layers"] = spec["layers"]
    for key, items in lists.items():
        twice = [x for x, n in Counter(items).items() if n > 1]
        if twice:
            raise ConfigError(f"{key}: {twice[0]!r} is listed more than once")


def _check_digit_parts(datasets: dict) -> None:
    """A digits data set on ``part: train`` and one on ``part: heldout`` share no image only
    when they split the same classes at the same ``heldout_fraction`` (the split is made over
    the selected classes' images): where their classes overlap, anything else is refused."""
    def classes(spec):
        return set(spec.get("classes") or range(10))

    digits = {n: s for n, s in datasets.items() if s["kind"] == "digits"}
    for a, sa in digits.items():
        for b, sb in digits.items():
            if (sa["part"], sb["part"]) != ("train", "heldout") or not classes(sa) & classes(sb):
                continue
            if classes(sa) != classes(sb) or sa["heldout_fraction"] != sb["heldout_fraction"]:
                raise ConfigError(
                    f"datasets.{a} (part: train) and datasets.{b} (part: heldout) share digits "
                    f"{sorted(classes(sa) & classes(sb))} but split different classes or "
                    "fractions, so they would share images: give both the same classes and "
                    "heldout_fraction (or classes that do not overlap)")


def _check_figure_names(models: dict, benchmark: bool = False) -> None:
    """The transfer figures of a model and target data set are named
    ``transfer_{model}_{dataset}.png`` and ``transfer_label_maps_{model}_{dataset}.png``, and
    (``benchmark``, two targets or more) ``transfer_benchmark_{model}.png``: two whose names
    join to the same (models ``net`` and ``net_x`` on data sets ``x_t`` and ``t``; model
    ``label_maps_net``'s figure and ``net``'s label maps; model ``benchmark`` on data set
    ``net`` and ``net``'s benchmark) would write one file, which Snakemake refused only as
    two ambiguous jobs, naming no key."""
    seen: dict[str, str] = {}

    def claim(figure: str, owner: str) -> None:
        other = seen.setdefault(figure, owner)
        if other != owner:
            raise ConfigError(f"{owner} and {other} would write the same figures ({figure}): "
                              "rename a model or data set")

    for model, spec in models.items():
        if spec.get("control_of"):  # a random-weights control's scores go into its model's
            continue
        targets = spec["analyse_on"][1:]  # the first is the source: no verdict of its own
        for ds in targets:
            for figure in (f"transfer_{model}_{ds}.png", f"transfer_label_maps_{model}_{ds}.png"):
                claim(figure, f"models.{model} on {ds!r}")
        if benchmark and len(targets) >= 2:
            claim(f"transfer_benchmark_{model}.png", f"models.{model}'s transfer benchmark")


def _check_device(device: str, key: str = "extract.device") -> None:
    if device == "auto":
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key}: {device!r} is not a device; use auto, cpu, cuda, "
                          "cuda:N (N = 0, 1, ...) or mps")


_KIND_KEYS = {
    "digits": ("part", "heldout_fraction", "transform"),
    "torchvision": ("name", "split", "base_url"),
    "folder": ("path", "on_error", "bit_depth", "masks", "mask_background", "mask_ignore"),
    "images": ("paths", "bit_depth"),
    "histology": (),
}
"""The keys of a data set that only its kind reads (beside kind, classes, max_samples, size)."""


def _check_kind_keys(name: str, spec: dict, defaults: dict) -> None:
    """Refuse keys a data set's kind does not read (``split: test`` on digits gave the same
    images as ``split: train``), and keys whose companion is missing; a key at its schema
    default (``defaults``, filled in for every key) changes nothing and passes."""
    key, kind = f"datasets.{name}", spec["kind"]
    changed = {k for k in spec if spec[k] != defaults.get(k)}
    # (bit_depth other than auto and masks have their own messages, _check_dataset)
    ignored = sorted(changed - {"kind", "classes", "max_samples", "size", "bit_depth", "masks"}
                     - set(_KIND_KEYS.get(kind, ())))
    if ignored:
        owners = {k: [kd for kd, keys in _KIND_KEYS.items() if k in keys] for k in ignored}
        raise ConfigError(f"{key}: kind {kind!r} does not read {ignored} (they are for kind "
                          + "; ".join(f"{k}: {' or '.join(v) or 'none'}"
                                      for k, v in owners.items()) + ")")
    if changed & {"mask_background", "mask_ignore"} and not spec.get("masks"):
        raise ConfigError(f"{key}: mask_background and mask_ignore are for a data set with "
                          "masks (datasets.NAME.masks)")
    if "heldout_fraction" in changed and spec.get("part", "all") == "all":
        raise ConfigError(f"{key}.heldout_fraction: only part train or heldout splits the "
                          "images (part is 'all')")


def _mask_value(value: int | str | None) -> int | None:
    """A configured mask value (``mask_background``, ``mask_ignore``) as a label: an integer
    as it is, a colour ``"#rrggbb"`` or ``"0xRRGGBB"`` (the schema checks the form) as
    ``0xRRGGBB``, the label of a colour mask (:mod:`convdp.masks`; not imported here: the
    extraction's job code would then take in the masks' and the figures' modules)."""
    if isinstance(value, str):
        return int(value[1:] if value.startswith("#") else value, 16)
    return value


def _check_dataset(name: str, spec: dict) -> dict:
    """Check one data set's keys against what it is; return what the nets will see of it:
    ``channels``, image ``size`` (None where only the files know) and number of ``images``
    (None where unknown without reading it)."""
    key, kind = f"datasets.{name}", spec["kind"]
    need = {"torchvision": "name", "folder": "path", "images": "paths"}.get(kind)
    if need and need not in spec:
        raise ConfigError(f"{key}: kind {kind!r} needs the key {need!r}")
    size, n_images = spec.get("size"), None
    if kind == "digits":
        from sklearn.datasets import load_digits

        counts = Counter(load_digits().target.tolist())
        channels, size, n_classes, what = 1, size or 32, 10, "digits"
        n_images = sum(counts[c] for c in spec.get("classes") or range(10))
    elif kind == "torchvision":
        from convdp.datasets import TORCHVISION_REGISTRY as known

        def norm(n: str) -> str:
            return "".join(ch for ch in n.lower() if ch.isalnum())

        tv = {norm(k): v for k, v in known.items()}.get(norm(spec["name"]))
        if tv is None:
            raise ConfigError(f"{key}.name: unknown torchvision data set {spec['name']!r}; "
                              f"known: {', '.join(known)}")
        if spec["split"] not in tv.splits:
            raise ConfigError(f"{key}.split: {tv.name} has splits {', '.join(tv.splits)}; "
                              f"unknown split {spec['split']!r}")
        channels, what = (1 if tv.fmt == "idx" else 3), tv.name
        size = size or {"idx": 28, "stl10": 96}.get(tv.fmt, 32)
        n_classes = 100 if tv.fmt == "cifar100" else 10
    elif kind == "folder":
        folder = Path(spec["path"])
        if not folder.is_dir():
            raise ConfigError(f"{key}.path: image folder {folder} does not exist or is not a folder")
        channels, what = 3, f"image folder {folder} (class sub-folders)"
        have = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        n_classes = len(have)
    else:  # a few images on their own, unlabelled
        channels, n_classes, what = 3, 0, f"kind {kind!r}"
        if kind == "images":
            missing = [p for p in spec["paths"] if not Path(p).is_file()]
            if missing:
                raise ConfigError(f"{key}.paths: image {missing[0]} does not exist")
            n_images = len(spec["paths"])
        else:
            size, n_images = size or 512, 1
    if spec.get("bit_depth", "auto") != "auto" and kind not in ("folder", "images"):
        raise ConfigError(f"{key}.bit_depth: only image files (kinds folder and images) have a "
                          f"depth to set; {what}'s images are 8-bit")
    if spec.get("masks"):
        if kind != "folder":
            raise ConfigError(f"{key}.masks: only an image folder (kind folder) can have masks")
        if not Path(spec["masks"]).is_dir():
            raise ConfigError(f"{key}.masks: mask folder {spec['masks']} does not exist or is "
                              "not a folder")
        # colours given as "#rrggbb" or "0xRRGGBB" (a string on snakemake's command line)
        spec["mask_background"] = _mask_value(spec.get("mask_background", 0))
        spec["mask_ignore"] = [_mask_value(v) for v in spec.get("mask_ignore", [])]
    classes = spec.get("classes")
    if classes is not None:
        if n_classes == 0:
            raise ConfigError(f"{key}.classes: {what} has no labels, so no class subset")
        names = [c for c in classes if isinstance(c, str)]
        if names and kind != "folder":
            raise ConfigError(f"{key}.classes: class names ({names[0]!r}) are for image folders; "
                              f"{what} has classes 0-{n_classes - 1}")
        if kind == "folder":
            unknown = [c for c in names if c not in have]
            if unknown:
                raise ConfigError(f"{key}.classes: no class folder {unknown[0]!r} in {folder}; "
                                  f"have {have}")
            # folders named by numbers: 2 is the index of the third folder in sorted order
            # ("10" of 0, 1, 10, 2), "2" the folder's name; zero-padded names too: YAML reads
            # an unquoted 01 as 1, the index of "02" of 01, 02, 03
            def number(n: str) -> int | None:
                return int(n) if n.isascii() and n.isdigit() else None

            twin = [(c, named) for c in classes if not isinstance(c, str) and c < len(have)
                    and number(have[c]) != c
                    for named in [n for n in have if number(n) == c][:1]]
            if twin:
                c, named = twin[0]
                raise ConfigError(f"{key}.classes: {c} is the index of class folder "
                                  f"{have[c]!r}, not of the folder named {named!r}; write "
                                  f"'{named}' (quoted) for the folder's name")
        bad = sorted(c for c in set(classes) if not isinstance(c, str) and c >= n_classes)
        if bad:
            raise ConfigError(f"{key}.classes: unknown class(es) {bad}; {what} has classes "
                              f"0-{n_classes - 1}")
    if n_images is not None and spec.get("max_samples"):
        n_images = min(n_images, spec["max_samples"])
    return {"channels": channels, "size": size, "images": n_images}


def _check_weights_name(key: str, weights: str, arch: str, num_classes: int | None = None) -> None:
    """``weights`` names torchvision weights, and (for a torchvision ``arch``) its own, with as
    many classes as ``num_classes`` where that is given (the net keeps the weights' head)."""
    import torchvision

    try:
        found = torchvision.models.get_weight(weights)
    except (ValueError, KeyError, AttributeError):
        raise ConfigError(f"{key}.weights: {weights!r} is neither 'train', 'none', an existing "
                          "file, nor a torchvision weights name such as "
                          "'VGG16_Weights.IMAGENET1K_V1'") from None
    try:
        own = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError, AttributeError):  # not a torchvision name: its loader checks
        return
    if not isinstance(found, own):
        raise ConfigError(f"{key}.weights: {weights!r} are weights of another architecture than "
                          f"{arch!r}; its own are " + ", ".join(str(w) for w in own))
    categories = found.meta.get("categories") or []
    if num_classes is not None and categories and num_classes != len(categories):
        raise ConfigError(f"{key}.num_classes: {weights!r} have {len(categories)} classes and "
                          f"the net keeps their head, not {num_classes} (its random-weights "
                          "control took the config's); remove num_classes")


def _check_channels(name: str, spec: dict, facts: dict) -> int:
    """The number of input channels of the net, checked against every data set it sees."""
    key = f"models.{name}"
    if spec["weights"] == "train":
        src = spec["train_on"]
        channels = facts[src]["channels"]
        if spec.get("in_channels", channels) != channels:
            raise ConfigError(f"{key}.in_channels: a net trained in the pipeline takes its training "
                              f"images' channels ({src!r}: {channels}); leave in_channels out")
    else:
        if spec.get("normalize") == "data":
            raise ConfigError(f"{key}.normalize: 'data' is the statistics of the images a net is "
                              f"trained on, and this one is not trained here (weights "
                              f"{spec['weights']!r}); use auto (the weights' own normalisation where they "
                              "carry one, else the default for the channels), imagenet or null")
        from convdp.models import arch_kind, spec_channels
        from convdp.provenance import weights_file

        if spec.get("in_channels", 3) != 3:
            if not weights_file(spec) and spec["weights"] != "none":  # a torchvision weights name
                raise ConfigError(f"{key}.in_channels: the weights {spec['weights']!r} are for "
                                  "3-channel images")
            if arch_kind(spec["arch"]) == "torchvision":
                raise ConfigError(f"{key}.in_channels: {spec['arch']} takes 3-channel images")
        try:
            channels = spec_channels(spec)
        except ValueError as exc:
            raise ConfigError(f"{key}.arch: {exc}") from None
    if spec.get("normalize") == "imagenet" and channels != 3:
        which = (f"{spec['train_on']!r} has {channels}-channel images; use data or null"
                 if spec["weights"] == "train" else f"the net takes {channels}; use auto or null")
        raise ConfigError(f"{key}.normalize: 'imagenet' normalisation is for 3-channel images, "
                          f"but {which}")
    for ds in spec["analyse_on"]:
        if facts[ds]["channels"] != channels:
            hint = ("" if spec["weights"] == "train" or "in_channels" in spec
                    else f" (set {key}.in_channels for a net not trained here)")
            raise ConfigError(f"{key}.analyse_on: data set {ds!r} has {facts[ds]['channels']}-channel "
                              f"images but the net takes {channels}-channel images{hint}")
    return channels


def _check_sizes(config: dict, name: str, net, channels: int, facts: dict) -> None:
    """Each data set's images go through the net's configured layers (and through the whole
    net where it is trained on them) with at least one position left: a forward pass on the
    meta device (shapes only, nothing computed)."""
    import torch

    from convdp.extract import MapLayoutError, feature_extractor
    from convdp.models import layer_names

    spec = config["models"][name]
    layers = list(spec["layers"])
    trained = {spec["train_on"]} if spec["weights"] == "train" else set()
    if config["transfer"]["retrain"]:
        trained |= set(spec["analyse_on"][1:])
    head = layer_names(net)[-1]
    smooth = smoothing(config, name)
    # auto reads σ off the source's maps (rule choose_smoothing) only
    auto_source = config["models"][smoothing_owner(config, name)]["analyse_on"][0]
    for ds in dict.fromkeys([*spec["analyse_on"], *sorted(trained)]):
        size, size_key = facts[ds]["size"], f"datasets.{ds}.size"
        if spec.get("input_size"):
            if size is not None and size != spec["input_size"]:
                # the extraction refuses the mismatch, after the data set and the training
                raise ConfigError(
                    f"models.{name}.input_size is {spec['input_size']} but datasets.{ds} has "
                    f"images of {size} px: set datasets.{ds}.size: {spec['input_size']} (a "
                    "net takes the images at their stored size)")
            size, size_key = spec["input_size"], f"models.{name}.input_size"
        if size is None:  # the files decide; the extraction checks them
            continue
        nodes = layers + [head] if ds in trained else layers
        try:
            device = next(net.parameters(), torch.empty(0, device="meta")).device
            # the extraction's own module: maps a net computes channels-last (a Swin's)
            # come out (N, C, H, W), as every check below reads them
            out = feature_extractor(net, nodes)(
                torch.empty(1, channels, size, size, device=device))
        except MapLayoutError as exc:  # the extraction would refuse it, after training
            raise ConfigError(f"models.{name}.layers: {exc}; choose layers whose output is "
                              "(N, C, H, W), (N, H, W, C) or (N, C)") from exc
        except Exception as exc:  # torch's RuntimeError, a model's own assert, …
            why = f"the forward pass fails: {(str(exc) or type(exc).__name__).splitlines()[0]}"
        else:
            odd = [n for n in layers if not isinstance(out[n], torch.Tensor)
                   or out[n].dim() not in (2, 4)]
            if odd:
                raise ConfigError(
                    f"models.{name}.layers: {odd[0]!r} is not a feature map (its output is "
                    f"{_describe(out[odd[0]])}); choose layers whose output is (N, C, H, W) or "
                    "(N, C)")
            flat = [n for n in smooth if out[n].dim() != 4]
            if flat:  # the extraction (or the choice of an auto σ) would refuse it after training
                raise ConfigError(
                    f"extract.smooth: layer {flat[0]!r} of model {name!r} has no spatial maps "
                    f"(its output is {_describe(out[flat[0]])}); only maps can be smoothed: "
                    "remove it from extract.smooth")
            if ds == auto_source:
                _check_auto_sizes(name, {n: tuple(out[n].shape[2:])
                                         for n, sigma in smooth.items() if sigma == "auto"})
            small = [n for n in layers if out[n].dim() == 4 and min(out[n].shape[2:]) < 1]
            why = f"layer {small[0]} has no positions left" if small else ""
            if not why and ds in trained:  # training runs the training-mode graph (aux heads)
                try:
                    net.train()(torch.empty(2, channels, size, size, device=device))
                except Exception as exc:
                    why = ("training fails: "
                           f"{(str(exc) or type(exc).__name__).splitlines()[0]}")
                finally:
                    net.eval()
        if why:
            raise ConfigError(f"{size_key}: {size}×{size} images are too small for model {name!r} "
                              f"({spec['arch']}): {why}; use larger images or earlier layers")
        if ds in spec["analyse_on"]:
            _check_pca(config, name, ds, facts[ds]["images"],
                       {n: tuple(out[n].shape) for n in layers})


def _describe(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


TORCH_ONLY = ("merge", "max_components", "delete_below", "early_moves", "kmeans_max_iter",
              "effective_samples", "dtype", "device")
"""``dpgmm`` keys that only the torch backend reads (``grow_at`` marks scikit-learn's fits
``saturated`` too)."""


def _check_torch_only(dpgmm: dict, keys: dict) -> None:
    """With ``backend: sklearn``, warn naming the torch-only keys set to other than the
    schema's default (``keys``: the schema's ``dpgmm`` properties): the defaults are the torch
    fit's, in every config, and a config validated twice has them all set."""
    ignored = [k for k in TORCH_ONLY if dpgmm.get(k) != keys[k].get("default")]
    if dpgmm["backend"] == "sklearn" and ignored:
        log.warning("dpgmm.%s: torch backend only, ignored with dpgmm.backend: sklearn "
                    "(scikit-learn's own fit: no moves, a fixed truncation, its K-means start "
                    "run to convergence, float64 on the CPU)", ", ".join(ignored))


def _check_pca(config: dict, model: str, ds: str, n_images: int | None, shapes: dict) -> None:
    """Warn where ``preprocess.pca`` asks for more components than a layer has samples (image
    mode: one per image, so a few images fall short): PCA can keep at most that many."""
    pca, cap = config["preprocess"]["pca"], config["preprocess"]["max_samples"]
    if pca is None or n_images is None:
        return
    for mode in config["modes"]:
        short = {}
        for layer, shape in shapes.items():
            per_image = shape[2] * shape[3] if mode == "position" and len(shape) == 4 else 1
            n = min(n_images * per_image, cap or n_images * per_image)
            if n < pca < shape[1]:
                short[layer] = n
        if short:
            log.warning("preprocess.pca (%d) is more than the %d samples that data set %r gives "
                        "layer(s) %s of model %r in %s mode; PCA keeps at most that many "
                        "components there (lower preprocess.pca, or leave %s out of modes)",
                        pca, min(short.values()), ds, ", ".join(short), model, mode, mode)


def _check_layer_keys(mapping, where: str, config: dict) -> None:
    """A per-layer mapping (``label_jobs``, ``extract.smooth``) names layers: ``model.layer``
    (that model's layer) or a bare layer name (every model that clusters a layer of that
    name), never a name that reads both ways."""
    if not isinstance(mapping, dict):
        return
    layers = {name: spec["layers"] for name, spec in config["models"].items()}
    bare = {layer for names in layers.values() for layer in names}
    scoped: dict[str, list[tuple[str, str]]] = {}
    for m, names in layers.items():
        for layer in names:
            scoped.setdefault(f"{m}.{layer}", []).append((m, layer))
    for key in mapping:
        if key in bare and key in scoped:
            raise ConfigError(f"{where}.{key}: {key!r} is both a layer name and a "
                              "model.layer; rename the model")
        # model net's layer v1.relu1 and model net.v1's relu1: the key held for both
        if len(scoped.get(key, ())) > 1:
            named = " and ".join(f"layer {layer!r} of model {m!r}" for m, layer in scoped[key])
            raise ConfigError(f"{where}.{key}: {key!r} reads as {named}, and would hold for "
                              "each; rename a model")
        if key not in bare and key not in scoped:
            listing = "; ".join(f"{m}: {', '.join(names)}" for m, names in layers.items())
            raise ConfigError(f"{where}.{key}: {key!r} is not a layer of any model (write a "
                              f"layer name or model.layer); the models' layers are {listing}")


def _per_layer(mapping: dict, model: str, layer: str, default):
    """A per-layer mapping's value for ``model``'s ``layer``: its ``model.layer`` key counts
    before a bare ``layer`` key (which holds for every model with that layer)."""
    return mapping.get(f"{model}.{layer}", mapping.get(layer, default))


def label_jobs(config: dict, model: str, layer: str) -> int:
    """How many jobs label the samples of ``model``'s ``layer`` (config ``label_jobs``; 1 = the
    fit job itself): an int for every layer, or a per-layer mapping (:func:`_per_layer`)."""
    jobs = config.get("label_jobs", 1)
    if not isinstance(jobs, dict):
        return int(jobs)
    return int(_per_layer(jobs, model, layer, 1))


def _check_auto_sizes(model: str, grids: dict[str, tuple[int, int]]) -> None:
    """``extract.smooth: auto`` reads a σ off maps of a range of sizes
    (:class:`convdp.smoothing.SigmaChooser`): a layer's maps ``grids`` outside it are refused
    when the config is read, not after the net is trained and its data stored."""
    from convdp.smoothing import auto_size_problem

    for layer, (h, w) in grids.items():
        if problem := auto_size_problem(h, w):
            raise ConfigError(f"layer {layer!r} of model {model!r} {problem}")


def smoothing(config: dict, model: str) -> dict[str, float | str]:
    """{layer: σ or "auto"} of ``model``'s layers stored smoothed (config ``extract.smooth``,
    a per-layer mapping, :func:`_per_layer`); the layers left as they are are not listed. A
    random-weights control is smoothed as the model it is the control of (an ``auto`` σ:
    the one chosen for that model, :func:`smoothing_owner`)."""
    smooth = (config.get("extract") or {}).get("smooth") or {}
    spec = config["models"][model]
    owner = smoothing_owner(config, model)
    sigmas = {layer: smooth.get(f"{model}.{layer}", _per_layer(smooth, owner, layer, None))
              for layer in spec["layers"]}
    return {layer: s if s == "auto" else float(s) for layer, s in sigmas.items() if s}


def smoothing_owner(config: dict, model: str) -> str:
    """The model whose maps choose ``model``'s ``auto`` σ's: itself, or the model a
    random-weights control is the control of."""
    return config["models"][model].get("control_of") or model


def meta_net(spec: dict, channels: int | None = None):
    """The net a model spec describes, architecture only (no weights in memory, the meta
    device); a factory gets ``num_classes`` only where the config gives it, ``channels``
    None: the architecture's own."""
    from convdp.models import arch_kind, build_on_meta, spec_builder

    default = None if arch_kind(spec["arch"]) == "factory" else 10
    return build_on_meta(spec["arch"], spec.get("num_classes", default), channels,
                         spec_builder(spec))


def layer_index(config: dict, model: str, layer: str) -> int:
    """Where ``layer`` sits in ``model``'s net (graph order, :func:`convdp.layers.layer_positions`),
    not in the config's list: adding a layer to the list moves no other layer's index (and
    reruns none of its fits)."""
    spec = config["models"][model]
    return _layer_positions(spec["arch"], spec.get("num_classes"), tuple(spec["layers"]))[layer]


@functools.cache  # once per model and Snakemake process: every fit job of the model asks
def _layer_positions(arch: str, num_classes: int | None, layers: tuple[str, ...]) -> dict[str, int]:
    from convdp.layers import layer_positions

    spec = {"arch": arch} | ({"num_classes": num_classes} if num_classes is not None else {})
    return layer_positions(meta_net(spec), layers)


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
