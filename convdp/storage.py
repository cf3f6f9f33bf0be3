"""Which activation store each model × data set gets (config ``extract.store``), and the
plan of a sample store (:mod:`convdp.sampled`).

``full`` keeps every layer's whole output; ``sample`` only what the fits and the transfer
scores read, then labels every position in a second pass of the net (:mod:`convdp.labelling`);
``auto`` projects the size of a full store at parse time, from the layers' shapes (a forward
pass on the meta device: nothing is computed, no weights are built) times the number of
images, and takes ``sample`` above ``extract.auto_threshold_gb``. Where the number of images or
their size cannot be known before the data are read (an image folder without ``size``), the
projection is unknown and ``auto`` takes ``sample``, which gives the same results.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Images per split of the torchvision data sets (their documentation), for the projection.
TORCHVISION_IMAGES = {
    "mnist": {"train": 60000, "test": 10000}, "fashionmnist": {"train": 60000, "test": 10000},
    "kmnist": {"train": 60000, "test": 10000}, "cifar10": {"train": 50000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
    "svhn": {"train": 73257, "test": 26032, "extra": 531131},
    "stl10": {"train": 5000, "test": 8000, "unlabeled": 100000},
}


def _count_images(spec: dict, facts: dict) -> int | None:
    """Images of a data set, where known before it is prepared."""
    n = facts["images"]
    if n is None and spec["kind"] == "torchvision":
        name = "".join(ch for ch in spec["name"].lower() if ch.isalnum())
        n = TORCHVISION_IMAGES.get(name, {}).get(spec["split"])
    elif n is None and spec["kind"] == "folder":
        from convdp.datasets.images import IMAGE_EXTENSIONS

        n = sum(1 for p in Path(spec["path"]).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if n is not None and spec.get("max_samples"):
        n = min(n, spec["max_samples"])
    return n


def per_image_bytes(config: dict, model: str, dataset: str) -> int | None:
    """Bytes one image's activations take in a full store (all configured layers), or None
    where the image size is unknown before the data are read."""
    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    from convdp.config import _check_dataset, meta_net
    from convdp.models import native_channels

    spec = config["models"][model]
    facts = _check_dataset(dataset, config["datasets"][dataset])
    size = spec.get("input_size") or facts["size"]
    if size is None:
        return None
    channels = facts["channels"] if spec["weights"] == "train" else native_channels(spec["arch"])
    net = meta_net(spec, channels)
    device = next(net.parameters(), torch.empty(0, device="meta")).device
    out = create_feature_extractor(net, list(spec["layers"]))(
        torch.empty(1, channels, size, size, device=device))
    itemsize = np.dtype(config["extract"]["dtype"]).itemsize
    return int(sum(t[0].numel() for t in out.values()) * itemsize)


def projected_bytes(config: dict, model: str, dataset: str) -> int | None:
    """Projected size of the full store of ``model`` over ``dataset``, or None if unknown."""
    per_image = per_image_bytes(config, model, dataset)
    n = _count_images(config["datasets"][dataset], _facts(config, dataset))
    return None if per_image is None or n is None else per_image * n


def _facts(config, dataset):
    from convdp.config import _check_dataset

    return _check_dataset(dataset, config["datasets"][dataset])


def store_kinds(config: dict) -> dict[tuple[str, str], str]:
    """``full`` or ``sample`` for every (model, analysed data set) of a validated config."""
    ex = config["extract"]
    out = {}
    for model, spec in config["models"].items():
        for dataset in spec["analyse_on"]:
            kind = ex["store"]
            if kind == "auto":
                size = projected_bytes(config, model, dataset)
                kind = "sample" if size is None or size > ex["auto_threshold_gb"] * 1e9 else "full"
                log.info("%s on %s: a full store would take %s; extract.store auto: %s", model,
                         dataset, "an unknown size" if size is None else f"{size / 1e9:.2f} GB",
                         kind)
            out[(model, dataset)] = kind
    return out


def activation_manifest(store: str | Path) -> Path:
    """The workflow's record of an extraction (rule extract_activations' declared output), the
    ``.json`` beside its store ``results/activations/{model}/{dataset}.zarr`` (the inverse of
    :func:`convdp.pipeline.activation_store`)."""
    return Path(store).with_suffix(".json")


def extract_again(store: str | Path) -> str:
    """How to extract a store again through the workflow: its manifest tells Snakemake the
    extraction is done, whatever became of the store."""
    return (f"run `snakemake --forcerun {activation_manifest(store)}` to extract it again "
            "(and redo what reads it)")


def warn_stores_gone(pairs, root: str | Path = "results/activations") -> list[Path]:
    """Warn about each (model, data set) of ``pairs`` whose extraction manifest is there and
    whose activation store is not (deleted to free the disk, say): the manifest is the
    extraction's declared output, not the store (so that an extraction resumes from its
    chunks), so Snakemake takes the extraction and the jobs that read the store as done, and
    one of them that has to run again fails. Returns the manifests."""
    gone = []
    for model, dataset in pairs:
        store = Path(root) / model / f"{dataset}.zarr"
        if activation_manifest(store).exists() and not store.exists():
            gone.append(activation_manifest(store))
            log.warning("%s is gone but its manifest %s is not: the results made from it stand, "
                        "and a job that has to read it again fails; %s", store,
                        activation_manifest(store), extract_again(store))
    return gone


def sample_plan(config: dict, model: str, dataset: str) -> dict:
    """What a sample store of ``model`` over ``dataset`` keeps (:func:`convdp.sampled.position_index`):
    the fits' draw and, where the model has target data sets, the transfer scores' draws."""
    spec, t = config["models"][model], config["transfer"]
    transfer = None
    if len(spec["analyse_on"]) > 1:
        transfer = {"mode": t["mode"], "max_samples": t["max_samples"],
                    "n_examples": t["n_examples"],
                    "role": "source" if dataset == spec["analyse_on"][0] else "target"}
    return {"modes": list(config["modes"]), "max_samples": config["preprocess"]["max_samples"],
            "seed": config["seed"], "transfer": transfer}
