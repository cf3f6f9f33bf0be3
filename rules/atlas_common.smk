# Target lists and params of rules/atlas.smk (the cluster atlas and the mask agreement).

from convdp import provenance as _provenance


def masked_datasets():
    return [d for d, spec in DATASETS.items() if spec.get("masks")]


def control_of(model):
    """The model whose random-weights control ``model`` is: the config expansion's
    ``control_of`` (control: random), or NAME for a model NAME_random with weights none.
    """
    spec = MODELS[model]
    if spec.get("control_of"):
        return spec["control_of"]
    base = model.removesuffix("_random")
    if base != model and base in MODELS and spec.get("weights") == "none":
        return base
    return None


def _position_fits(datasets=None):
    """(model, data set, layer) of every position-mode DPGMM fit (on ``datasets``)."""
    if "position" not in MODES:
        return []
    return [
        (m, d, layer)
        for m, spec in MODELS.items()
        for d in spec["analyse_on"]
        if datasets is None or d in datasets
        for layer in spec["layers"]
    ]


def mask_records():
    return [
        f"results/masks/{m}/{d}/{layer}.json"
        for m, d, layer in _position_fits(masked_datasets())
    ]


def atlas_outputs():
    """The atlas figures and, with masked data sets, the mask-agreement table and figure."""
    out = []
    if config["atlas"]["enabled"]:
        out += [
            f"results/figures/atlas/{m}/{d}/{layer}.png"
            for m, d, layer in _position_fits()
        ]
    if mask_records():
        out += ["results/mask_agreement.csv", "results/figures/mask_agreement.png"]
    return out


def mask_context(wildcards):
    return fit_context(wildcards) | {
        "layer": wildcards.layer,
        "control_of": control_of(wildcards.model),
    }
