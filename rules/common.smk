# Helpers shared by the rules: config validation, wildcard constraints, target lists.

import functools
import logging
import re
from pathlib import Path

from convdp import control, jobcode, provenance
from convdp.cluster import components_cap, label_memory_mb, merge_memory_mb
from convdp.config import (
    label_jobs,
    layer_index,
    read_config_file,
    smoothing,
    smoothing_owner,
    validate_config,
)
from convdp.control import control_name, controls
from convdp.io import read_json
from convdp.labelling import fit_key
from convdp.masks import SPEC_KEYS as MASK_SPEC_KEYS
from convdp.storage import sample_plan, store_kinds, warn_stores_gone

# Files the config names are known by their content; the digests are kept here, so that a
# file is read again only where its times moved (convdp/provenance.py).
provenance.CACHE_DIR = "results/.cache/digests"

# Snakemake read the config files keeping the last of a key given twice: refuse that first
for path in workflow.configfiles:
    read_config_file(path)
# Validates against convdp/schema.yaml with snakemake.utils.validate (defaults filled in),
# then checks data set references and layer names; errors name the key, before any job runs.
# Its warnings are said once: a job's own process, on a cluster, parses this file too.
if not workflow.is_main_process:
    logging.getLogger("convdp.config").setLevel(logging.ERROR)
validate_config(config)

MODELS = config["models"]
# random-weights controls (control: random on a model): NAME_random -> NAME
CONTROLS = controls(MODELS)
DATASETS = config["datasets"]
MODES = config["modes"]
# extract.store: "full" or "sample" for every (model, data set); auto is decided here, from the
# full store's size projected on the meta device (convdp/storage.py)
STORES = store_kinds(config)
# an activation store deleted after its extraction: said before any job runs (once: a job's
# own process, on a cluster, parses this file too)
if workflow.is_main_process:
    warn_stores_gone(STORES)
FIGURES = {
    "clusters": "results/figures/clusters_per_layer.png",
    "nmi": "results/figures/nmi_per_layer.png",
    "label_maps": "results/figures/label_maps.png",
    "heatmap": "results/figures/cluster_class_heatmap.png",
    "comparison": "results/figures/model_comparison.png",
}


def code_of(script):
    """Param ``code`` of the jobs that run ``scripts/{script}`` -- a digest of the script and
    of the convdp code it can run (convdp/jobcode.py), so that an edit of that code reruns
    those jobs, and no others. A function, so that a job's process digests its own script's
    code only.
    """
    path = Path(workflow.basedir) / "scripts" / script
    return lambda wildcards: jobcode.code_label(path)


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    model=_alternatives(MODELS),
    dataset=_alternatives(DATASETS),
    mode="position|image",
    layer="[^/]+",


def source_of(model):
    """The source: the first data set in ``analyse_on`` (the training data, or held-out
    images of the same distribution); the others are targets."""
    return MODELS[model]["analyse_on"][0]


def role_of(model, dataset):
    return "source" if dataset == source_of(model) else "target"


def fitted_with(model, method):
    """Whether ``model``'s layers get fits of ``method`` (:func:`convdp.control.fitted_with`)."""
    return control.fitted_with(config, model, method)


def fits(method, ext="json"):
    """One fit output per model × data set × layer × mode (models :func:`fitted_with`
    ``method``)."""
    root = "dpgmm" if method == "dpgmm" else "baseline"
    return [
        f"results/{root}/{m}/{d}/{layer}/{mode}.{ext}"
        for m, spec in MODELS.items()
        if fitted_with(m, method)
        for d in spec["analyse_on"]
        for layer in spec["layers"]
        for mode in MODES
    ]


def fit_params(method):
    """The config a fit of ``method`` reads: the preprocessing and its own section only (so
    editing one method's settings does not rerun the other's fits)."""
    return {"preprocess": config["preprocess"], method: config[method]}


def fit_mem_mb(wildcards, attempt):
    """Memory for one fit, sized from what it holds: the fitting samples (at most
    ``preprocess.max_samples``) with their responsibilities over the components, one chunk of
    the layer being labelled, and the interpreter; doubled on each retry."""
    n = config["preprocess"]["max_samples"] or 200_000
    return int((1000 + n * (components_cap(config) + 512) * 8 * 3 / 1e6) * attempt)


# Split fits (config label_jobs > 1 for a model's layer): a *_model job fits, label_* jobs
# label one range of images each, a merge_* job writes the same {mode}.npz/.json as an unsplit
# fit job. Which rule writes a fit is decided by the model wildcard's constraint, which looks
# ahead in the path ({model}/{dataset}/{layer}/...) to the layer.


def models_labelled(split):
    """Pattern of the model wildcard for the fits whose samples are labelled in separate jobs
    (``split``) or by the fit job itself: each model, followed by one of its layers of that
    kind (``net(?=/[^/]+/(?:relu2|relu3)/)``); one that matches nothing when there are none.
    """
    branches = []
    for model, spec in MODELS.items():
        names = [
            layer
            for layer in spec["layers"]
            if (label_jobs(config, model, layer) > 1) == split
        ]
        if names:
            branches.append(f"{re.escape(model)}(?=/[^/]+/(?:{_alternatives(names)})/)")
    return "|".join(branches) or "(?!)"


def label_parts(method):
    """Input function of merge_{method}: the label parts of the layer, part 1 to n."""

    def parts(wildcards):
        n = label_jobs(config, wildcards.model, wildcards.layer)
        stem = "results/{}/{}/{}/{}/{}".format(
            method, wildcards.model, wildcards.dataset, wildcards.layer, wildcards.mode
        )
        return [f"{stem}.part{i}of{n}.npz" for i in range(1, n + 1)]

    return parts


def label_mem_mb(wildcards, input, attempt):
    """Memory for one label job, sized from one stored chunk of the layer (its shape from the
    extraction manifest) and its range's labels, not from the fitting samples; doubled on each
    retry. Before the extraction has run (a dry run) Snakemake shows it as <TBD>."""
    shape = read_json(input.manifest)["layers"][wildcards.layer]["shape"]
    k = components_cap(config)
    chunk = config["extract"]["chunk_size"]
    parts = int(wildcards.parts)
    return label_memory_mb(shape, chunk, wildcards.mode, k, parts) * attempt


def merge_mem_mb(wildcards, input, attempt):
    """Memory for merging a layer's labels: every sample's label and class (from the fitted
    model's record); <TBD> in a dry run before the fit."""
    return merge_memory_mb(read_json(input.model_json)["n_samples"]) * attempt


def uses_gpu():
    """Whether extraction will run on a GPU (device cuda*, or auto where CUDA is present)."""
    device = config["extract"]["device"]
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def fit_context(wildcards):
    """Fields every fit record carries, for the summary table (``layer_index``: the layer's
    position in the net, so that adding a layer to the config reruns no other fit)."""
    return {
        "model": wildcards.model,
        "dataset": wildcards.dataset,
        "role": role_of(wildcards.model, wildcards.dataset),
        "layer_index": layer_index(config, wildcards.model, wildcards.layer),
    }


def train_input(wildcards):
    """The training data set, when the net is trained in the pipeline; the weights file,
    when it is loaded from one (so that replacing the file reruns the model's jobs)."""
    spec = MODELS[wildcards.model]
    if spec["weights"] == "train":
        return {"train_data": f"results/data/{spec['train_on']}.zarr"}
    return {"weights_file": provenance.model_inputs(spec)}


# Provenance (convdp/provenance.py). A job that fails has its outputs deleted, and Snakemake
# does not remake a missing intermediate file whose consumers look up to date: so every job
# that reads a model, a data set store or an activation store also carries, as a param, what
# that file is made from, and a change reruns it (and the jobs it needs) whether or not the
# file still exists.


def image_spec(dataset):
    """A data set's config less its part masks' keys (``convdp.masks.SPEC_KEYS``), which
    prepare_masks alone reads: a new mask folder, background or ignored value re-scores the
    label maps and stores, trains and fits nothing again."""
    return {k: v for k, v in DATASETS[dataset].items() if k not in MASK_SPEC_KEYS}


@functools.cache  # the config is fixed for the process; every job reading the data set asks
def dataset_sources(dataset):
    """What a data set's store is made from (by prepare_dataset): its config (its ``paths:``
    by the files' fingerprint only: a param is kept whole in every output's record and shown
    whole in a rerun's reason), the fingerprint of its files (None for data sets that ship
    with a package or are verified downloads) and the seed of its draws."""
    spec = image_spec(dataset)
    return {
        "spec": {k: v for k, v in spec.items() if k != "paths"},
        "files": provenance.dataset_fingerprint(spec),
        "seed": config["seed"],
    }


@functools.cache
def model_sources(model):
    """What a model's weights are made from: the keys training reads, the weights file's
    content digest, the sources of the training data."""
    spec = MODELS[model]
    return provenance.model_params(spec) | {
        "train_on": (
            dataset_sources(spec["train_on"]) if spec["weights"] == "train" else None
        )
    }


def _upstream(model, dataset):
    return {"model": model_sources(model), "dataset": dataset_sources(dataset)}


def upstream(wildcards):
    """Param of the jobs that read {model}'s files and {dataset}'s store: their sources."""
    return _upstream(wildcards.model, wildcards.dataset)


def activation_upstream(wildcards):
    """:func:`upstream` of a job that also reads {model}'s activation store of {dataset}: the
    extraction's settings too, and where a σ is chosen ``auto``, the sources of the data set
    it is chosen on (by choose_smoothing)."""
    return _activation_upstream(wildcards.model, wildcards.dataset)


def _activation_upstream(m, d):
    owner = smoothing_owner(config, m)
    chosen_on = (
        dataset_sources(source_of(owner))
        if "auto" in smoothing(config, m).values()
        else None
    )
    return _upstream(m, d) | {
        "extraction": _extract_settings(m, d) | {"smoothing_chosen_on": chosen_on}
    }


def source_upstream(wildcards):
    """:func:`upstream` of a job that reads {model}'s files and its source's store."""
    return _upstream(wildcards.model, source_of(wildcards.model))


def download_input(wildcards):
    """Data sets fetched from the network go through the (local) download rule first."""
    if DATASETS[wildcards.dataset]["kind"] == "torchvision":
        return f"results/downloads/{wildcards.dataset}.json"
    return []


# Transfer verdict (rules/transfer.smk): one per model × analysed data set other than its source.


def transfer_targets():
    """(model, target data set) pairs: every analysed data set but the model's source. A
    random-weights control has no verdict of its own: its scores and retraining go into its
    model's table (transfer_verdict_input)."""
    return [
        (m, d)
        for m, spec in MODELS.items()
        for d in spec["analyse_on"]
        if d != source_of(m) and m not in CONTROLS
    ]


def transfer_verdict_input(wildcards):
    """The pair's scores, label maps and retraining; those of the model's control too."""
    out = {
        name: f"results/transfer/{wildcards.model}/{wildcards.dataset}/{file}"
        for name, file in (
            ("scores", "scores.json"),
            ("maps", "label_maps.npz"),
            ("retrain", "retrain.json"),
        )
    }
    cname = control_name(wildcards.model)
    if CONTROLS.get(cname) == wildcards.model:
        stem = f"results/transfer/{cname}/{wildcards.dataset}"
        out |= {
            "control_scores": f"{stem}/scores.json",
            "control_retrain": f"{stem}/retrain.json",
        }
    return out


def transfer_outputs():
    """The verdict table, its JSON and the two figures of every (model, target) pair."""
    return [
        path
        for m, d in transfer_targets()
        for path in (
            f"results/transfer/{m}/{d}.csv",
            f"results/transfer/{m}/{d}.json",
            f"results/figures/transfer_{m}_{d}.png",
            f"results/figures/transfer_label_maps_{m}_{d}.png",
        )
    ] + benchmark_outputs()


def benchmark_models():
    """Models whose transfer benchmark is written (transfer.benchmark, two or more targets)."""
    if not config["transfer"]["benchmark"]:
        return []
    return [m for m in MODELS if sum(mm == m for mm, _ in transfer_targets()) >= 2]


def benchmark_outputs():
    return [
        f"results/transfer_benchmark/{m}/{name}"
        for m in benchmark_models()
        for name in ("pairs.csv", "correlations.csv", "recommended.csv", "summary.json")
    ] + [f"results/figures/transfer_benchmark_{m}.png" for m in benchmark_models()]


def benchmark_input(wildcards):
    """Every target's verdict (its table and summary) of the model."""
    targets = [d for m, d in transfer_targets() if m == wildcards.model]
    return {
        "tables": [f"results/transfer/{wildcards.model}/{d}.csv" for d in targets],
        "summaries": [f"results/transfer/{wildcards.model}/{d}.json" for d in targets],
    }


def transfer_scores_input(wildcards):
    """Both data sets' activations and DPGMM fits (transfer mode; image mode for its NMI)."""
    m, d = wildcards.model, wildcards.dataset
    src, mode = source_of(m), config["transfer"]["mode"]
    layers = MODELS[m]["layers"]
    out = {
        "source_manifest": f"results/activations/{m}/{src}.json",
        "target_manifest": f"results/activations/{m}/{d}.json",
        "dataset": f"results/data/{d}.zarr",
        "source_fits": [
            f"results/dpgmm/{m}/{src}/{layer}/{mode}.npz" for layer in layers
        ],
        "target_fits": [
            f"results/dpgmm/{m}/{d}/{layer}/{mode}.npz" for layer in layers
        ],
    }
    if "image" in MODES and mode != "image":
        out["image_fits"] = [
            f"results/dpgmm/{m}/{d}/{layer}/image.npz" for layer in layers
        ]
    return out


def transfer_seeds():
    return [config["seed"] + r for r in range(config["transfer"]["repeats"])]


def transfer_train(wildcards):
    """The model's training settings, with the transfer section's lr and batch size."""
    return _transfer_train(wildcards.model)


def _transfer_train(model):
    t = config["transfer"]
    return MODELS[model].get("train", {}) | {
        "lr": t["lr"],
        "batch_size": t["batch_size"],
    }


def transfer_score_settings():
    """The transfer section's keys transfer_scores reads."""
    t = config["transfer"]
    return {k: t[k] for k in ("mode", "max_samples", "probe_folds", "n_examples")}


def verdict_sources(wildcards):
    """Param of transfer_verdict: what its scores and retraining, and its control's, are made
    from (the params of transfer_scores and transfer_retrain). One of those jobs that fails or
    is killed loses its output (its record keeps the new params), and the verdict, its only
    reader, must name them for it to run again (else "Nothing to be done", the verdict of the
    old scores or retraining kept)."""
    t, d = config["transfer"], wildcards.dataset
    pair = [wildcards.model]
    cname = control_name(wildcards.model)
    if CONTROLS.get(cname) == wildcards.model:
        pair.append(cname)
    return {
        "scores": transfer_score_settings()
        | {
            "weight_threshold": config["dpgmm"]["weight_threshold"],
            "seed": config["seed"],
        },
        "retrain": {
            "retrain": t["retrain"],
            "epochs": t["epochs"],
            "seeds": transfer_seeds(),
        },
        "models": {
            m: {
                "layers": MODELS[m]["layers"],
                "source": source_of(m),
                "train": _transfer_train(m),
                "upstream": _activation_upstream(m, d),
            }
            for m in pair
        },
    }


# Sample stores (extract.store: sample; convdp/sampled.py, convdp/labelling.py): the fits
# are fit_*_model jobs on the stored samples, one label_activations job per model x data set
# runs the net again and labels every fit, and fit_* / merge_* write each fit's outputs from
# those labels (the same files as with a full store).


def extract_settings(wildcards):
    """The extraction's config (without the store choice), the model's smoothed layers and,
    for a sample store, its plan."""
    return _extract_settings(wildcards.model, wildcards.dataset)


def _extract_settings(model, dataset):
    settings = {
        k: v
        for k, v in config["extract"].items()
        if k not in ("store", "auto_threshold_gb", "smooth")
    }
    settings["smooth"] = smoothing(config, model)
    if STORES[(model, dataset)] == "sample":
        settings["sample"] = sample_plan(config, model, dataset)
    return settings


def auto_smoothed(model):
    """The layers whose σ ``model``'s smoothing choice picks (extract.smooth ``auto``): its
    own and those of its random-weights controls, in the model's order."""
    auto = {
        layer
        for m in MODELS
        if smoothing_owner(config, m) == model
        for layer, sigma in smoothing(config, m).items()
        if sigma == "auto"
    }
    return [layer for layer in MODELS[model]["layers"] if layer in auto]


def smoothing_choice(wildcards):
    """The smoothing choice an extraction of ``wildcards.model`` reads its ``auto`` σ's from
    (its own, or the model a control is the control of), or none."""
    if "auto" not in smoothing(config, wildcards.model).values():
        return []
    return f"results/smoothing/{smoothing_owner(config, wildcards.model)}.json"


def fit_input(method, split):
    """Inputs of the job writing a fit's {mode}.npz/.json: the activations (full store, one
    job), the model and its labelled parts (label_jobs > 1), or the model and the labelling
    pass (sample store)."""
    root = "dpgmm" if method == "dpgmm" else "baseline"

    def inputs(wildcards):
        m, d = wildcards.model, wildcards.dataset
        stem = f"results/{root}/{m}/{d}/{wildcards.layer}/{wildcards.mode}"
        out = {"dataset": f"results/data/{d}.zarr"}
        if STORES[(m, d)] == "sample":
            return out | {
                "model": f"{stem}.model.npz",
                "model_json": f"{stem}.model.json",
                "labels": f"results/labels/{m}/{d}.json",
            }
        if split:
            return out | {
                "model": f"{stem}.model.npz",
                "model_json": f"{stem}.model.json",
                "parts": label_parts(root)(wildcards),
            }
        return out | {"manifest": f"results/activations/{m}/{d}.json"}

    return inputs


def labelled_fits(model, dataset):
    """The fits the labelling pass labels: {fit_key: its .model.npz}."""
    return {
        fit_key(
            root, layer, mode
        ): f"results/{root}/{model}/{dataset}/{layer}/{mode}.model.npz"
        for root in ("dpgmm", "baseline")
        if fitted_with(model, root)
        for layer in MODELS[model]["layers"]
        for mode in MODES
    }


def fits_use_gpu():
    """Whether the fits and the labelling pass ask for a GPU: dpgmm.device names CUDA (auto
    counts where the submit host has CUDA) and the backend is torch's (scikit-learn's fits
    run on the CPU)."""
    if config["dpgmm"]["backend"] != "torch":
        return False
    device = config["dpgmm"]["device"]
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")
