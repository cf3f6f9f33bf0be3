"""The random-weights control: a model's architecture with seeded random weights, analysed
beside the model on the same data and layers.

``control: random`` on a model entry ``NAME`` adds the model ``NAME_random`` to the
configuration (:func:`expand_controls`, called by the validation): a model of its own in the
DAG, with its own weights file, activations, fits, summary rows, label maps and comparison
line, whose weights are the seeded initialisation of the architecture (for a net trained in
the pipeline: exactly the weights its training starts from), never trained. It keeps the
model's inputs: the same data sets, layers, input size, number of classes and input
normalisation. A model that already has random weights (``weights: none``) gets no control.
"""

from __future__ import annotations

import copy
import logging

log = logging.getLogger(__name__)

SUFFIX = "_random"
"""``NAME`` + this is the control's model name (valid in paths and in the {model} wildcard)."""

KEYS = ("arch", "weights", "train_on", "analyse_on", "layers", "num_classes", "in_channels",
        "input_size", "normalize", "train")
"""What the control takes from its model's entry (``train``: only its retraining settings,
for the transfer's AnB runs; the control itself is never trained)."""


def control_name(model: str) -> str:
    return f"{model}{SUFFIX}"


def controls(models: dict) -> dict[str, str]:
    """control model name -> the model it is the control of."""
    return {name: spec["control_of"] for name, spec in models.items() if spec.get("control_of")}


def control_spec(model: str, spec: dict) -> dict:
    """The control's model entry: ``spec``'s inputs (:data:`KEYS`) and ``control_of``."""
    return {k: copy.deepcopy(spec[k]) for k in KEYS if k in spec} | {"control_of": model}


def fitted_with(config: dict, model: str, method: str) -> bool:
    """Whether ``model``'s layers get fits of ``method`` (``dpgmm`` or ``baseline``): the
    DPGMM always; the BIC baseline skips the random-weights controls unless
    ``baseline.controls`` (a control is then read against its model's fits)."""
    return (method == "dpgmm" or not config["models"][model].get("control_of")
            or bool(config["baseline"]["controls"]))


def expand_controls(config: dict) -> dict:
    """Add ``NAME_random`` for every model with ``control: random`` (in place; idempotent).

    Raises ``ValueError`` (with the key) where a configured model already has the control's
    name, or where ``control_of`` is set on a model that is not ``NAME_random`` of a model
    ``NAME`` with ``control: random``.
    """
    models = config["models"]
    for name, spec in list(models.items()):
        if spec.get("control") != "random" or spec.get("control_of"):
            continue
        if spec.get("weights") == "none":
            log.warning("models.%s.control: its weights are random already (weights: none); "
                        "no control added", name)
            continue
        cname = control_name(name)
        if cname in models and models[cname].get("control_of") != name:
            raise ValueError(f"models.{name}.control: its control is named {cname!r}, and a "
                             "configured model already has that name; rename that model")
        models[cname] = control_spec(name, spec)
    for name, spec in models.items():
        of = spec.get("control_of")
        if of is None:
            continue
        parent = models.get(of, {})
        if name != control_name(of) or parent.get("control") != "random":
            raise ValueError(f"models.{name}.control_of: set by `control: random` on a model "
                             f"(its control is NAME{SUFFIX}); not a key to set by hand")
    return config


def build_control(spec: dict, seed: int, n_classes: int | None = None,
                  in_channels: int | None = None):
    """The control's net: the architecture of ``spec`` with the weights
    ``torch.manual_seed(seed)`` gives it (a net trained in the pipeline is built the same way
    before its training, with ``n_classes`` and ``in_channels`` of its training data).

    Returns ``(net, extra)``: ``extra`` as :func:`convdp.models.load_pretrained`'s (classes,
    channels, and for a torchvision weights name its normalisation, so that the control sees
    the inputs the model sees).
    """
    import torch

    from convdp import models
    from convdp.provenance import weights_file

    if spec["weights"] == "train":
        torch.manual_seed(seed)
        net = models.build_model(spec["arch"], n_classes, in_channels)
        return net.eval(), {"num_classes": n_classes, "in_channels": in_channels}
    # a net from a torchvision weights name: the settings its builder gives it (GoogLeNet's
    # transform_input), so that the control computes as the net does, from random weights
    net, extra = models.load_pretrained(
        spec | {"weights": "none", "builder": models.spec_builder(spec)}, seed=seed)
    if models.arch_kind(spec["arch"]) == "torchvision" and not weights_file(spec):
        import torchvision

        transforms = torchvision.models.get_weight(spec["weights"]).transforms()
        extra |= {"mean": list(getattr(transforms, "mean", [])) or None,
                  "std": list(getattr(transforms, "std", [])) or None}
    return net, extra
