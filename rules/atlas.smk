# What each cluster is (issue 16): the cluster atlas of every position-mode DPGMM fit, and,
# for data sets with part masks (datasets.NAME.masks), the agreement of the label maps with
# the masks. Job functions in convdp/atlas_jobs.py.

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
    return fit_context(wildcards) | {"control_of": control_of(wildcards.model)}


rule prepare_masks:
    input:
        dataset="results/data/{dataset}.zarr",
    output:
        "results/data/{dataset}.masks.npz",
    log:
        "logs/prepare_masks/{dataset}.log",
    conda:
        "../envs/torch.yaml"
    params:
        folder=lambda wc: DATASETS[wc.dataset]["masks"],
        size=lambda wc: DATASETS[wc.dataset].get("size"),
        background=lambda wc: DATASETS[wc.dataset]["mask_background"],
        sources=lambda wc: _provenance.folder_fingerprint(DATASETS[wc.dataset]["masks"]),
    script:
        "../scripts/prepare_masks.py"


rule mask_agreement:
    input:
        fit="results/dpgmm/{model}/{dataset}/{layer}/position.npz",
        masks="results/data/{dataset}.masks.npz",
    output:
        csv="results/masks/{model}/{dataset}/{layer}.csv",
        json="results/masks/{model}/{dataset}/{layer}.json",
    log:
        "logs/mask_agreement/{model}/{dataset}/{layer}.log",
    conda:
        "../envs/cluster.yaml"
    params:
        context=mask_context,
        weight_threshold=config["dpgmm"]["weight_threshold"],
        folder=lambda wc: DATASETS[wc.dataset]["masks"],
    script:
        "../scripts/mask_agreement.py"


rule mask_summary:
    input:
        mask_records(),
    output:
        csv="results/mask_agreement.csv",
        figure=report(
            "results/figures/mask_agreement.png",
            caption="../report/mask_agreement.rst",
            category="Figures",
        ),
    log:
        "logs/mask_summary.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/mask_summary.py"


rule atlas:
    input:
        fit="results/dpgmm/{model}/{dataset}/{layer}/position.npz",
        manifest="results/activations/{model}/{dataset}.json",
        dataset="results/data/{dataset}.zarr",
        meta="results/models/{model}.json",
    output:
        png=report(
            "results/figures/atlas/{model}/{dataset}/{layer}.png",
            caption="../report/atlas.rst",
            category="Cluster atlas",
            subcategory="{model}: {dataset}",
            labels={"layer": "{layer}"},
        ),
        json="results/atlas/{model}/{dataset}/{layer}.json",
    log:
        "logs/atlas/{model}/{dataset}/{layer}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    params:
        atlas=config["atlas"],
        weight_threshold=config["dpgmm"]["weight_threshold"],
    script:
        "../scripts/atlas.py"
