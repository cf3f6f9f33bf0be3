"""The ground truth: Yosinski's AnB retraining of the target at every cut."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def frozen_parameters(model, layers: Sequence[str]) -> list[list[str]]:
    """For each cut ``n = 0…L``: the parameter names frozen when the first n layers are kept.

    A parameter is frozen at cut n when its module runs no later than the n-th configured
    layer (graph order of :func:`convdp.layers.layer_names`; a layer given as a module name,
    e.g. a ResNet stage, ends at its last node). Parameters of modules that are not graph
    nodes are never frozen. ``layers`` must go from the input towards the output.
    """
    return _frozen_by_cut(model, layers, [name for name, _ in model.named_parameters()])


def frozen_buffers(model, layers: Sequence[str]) -> list[list[str]]:
    """For each cut: the buffers (a BatchNorm's running statistics) of the modules frozen
    there, placed as :func:`frozen_parameters` places parameters."""
    return _frozen_by_cut(model, layers, [name for name, _ in model.named_buffers()])


def _frozen_by_cut(model, layers: Sequence[str], names: list[str]) -> list[list[str]]:
    """For each cut ``n = 0…L``: those of the state ``names`` whose module runs no later than
    the n-th of ``layers``."""
    from convdp.layers import layer_names, node_positions

    nodes = layer_names(model)
    cut_pos = node_positions(nodes, layers)
    if any(np.isinf(p) for p in cut_pos):
        raise ValueError(f"layers {list(layers)} are not all graph nodes or modules of the net")
    if any(b <= a for a, b in zip(cut_pos, cut_pos[1:], strict=False)):
        raise ValueError(f"layers {list(layers)} must be listed from the input towards the output "
                         "to define cuts")
    modules = [name.rsplit(".", 1)[0] if "." in name else "" for name in names]
    pos = dict(zip(names, node_positions(nodes, modules), strict=True))
    return [[]] + [[n for n in names if pos[n] <= p] for p in cut_pos]


def anb_retrain(
    meta: dict,
    weights: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[str],
    *,
    epochs: int = 5,
    seeds: Sequence[int] = (0, 1),
    train: dict | None = None,
    device: str = "cpu",
    progress: bool = False,
    data_name: str = "the target data",
) -> dict:
    """Yosinski's AnB for every cut: freeze the source's first n layers, retrain the rest.

    For each seed the net is built once per cut with the same seeded initialisation
    (``torch.manual_seed(seed)``), the frozen parameters and buffers (BatchNorm's running
    statistics, which those modules keep using in eval mode) are overwritten with the source's,
    and :func:`convdp.models.train_classifier` trains the others (``trainable``) on the
    target for ``epochs`` epochs; its seeded, stratified held-out split (the same for every
    cut of one seed) gives the accuracy. ``train`` holds ``batch_size``, ``lr``,
    ``weight_decay``, ``val_fraction`` (the model's training settings).

    Returns ``{"cuts": [{"cut", "layer", "accuracies", "mean", "std", ...}], "runs": [...],
    "costs": [...]}`` (``costs``: :func:`convdp.transfer.cost.cut_costs` of every cut).
    """
    import torch

    from convdp.models import build_model, load_state_dict, train_classifier

    train = {k: v for k, v in (train or {}).items()
             if k in ("batch_size", "lr", "weight_decay", "val_fraction")}
    classes = np.unique(labels)
    y = np.searchsorted(classes, labels)
    source = load_state_dict(weights)
    arch, in_ch = meta["arch"], meta["in_channels"]
    builder = meta.get("builder")  # what a weights name's builder set (transform_input, ...)
    template = build_model(arch, len(classes), in_ch, builder)
    frozen = frozen_parameters(template, layers)
    # a frozen BatchNorm normalises with the source's running statistics, not fresh ones
    buffers = frozen_buffers(template, layers)
    runs = []
    for seed in seeds:
        for cut, names in enumerate(frozen):
            torch.manual_seed(seed)
            net = build_model(arch, len(classes), in_ch, builder)
            state = net.state_dict()
            for name in [*names, *buffers[cut]]:
                if source[name].shape != state[name].shape:
                    raise ValueError(f"source parameter {name} has shape {tuple(source[name].shape)}, "
                                     f"the target net's {tuple(state[name].shape)}")
                state[name] = source[name]
            net.load_state_dict(state)
            trainable = [n for n, _ in net.named_parameters() if n not in names]
            if not trainable:
                raise ValueError(f"cut {cut} freezes every parameter; nothing is left to train")
            start = time.perf_counter()
            metrics = train_classifier(net, images, y, mean=meta["mean"], std=meta["std"],
                                       epochs=epochs, seed=seed, device=device,
                                       trainable=trainable, progress=progress,
                                       frozen_modules=sorted({b.rsplit(".", 1)[0]
                                                              for b in buffers[cut]}),
                                       data_name=data_name, **train)
            runs.append({
                "seed": seed, "cut": cut, "layer": layers[cut - 1] if cut else None,
                "accuracy": metrics["val_accuracy"], "n_val": metrics["n_val"],
                "n_frozen": len(names), "n_trainable": len(trainable),
                "seconds": time.perf_counter() - start,
            })
            log.info("AnB cut %d (%s), seed %d: held-out accuracy %.4f (%.1f s)", cut,
                     runs[-1]["layer"] or "nothing frozen", seed, runs[-1]["accuracy"],
                     runs[-1]["seconds"])
    cuts = []
    for cut in range(len(frozen)):
        acc = np.array([r["accuracy"] for r in runs if r["cut"] == cut])
        cuts.append({"cut": cut, "layer": layers[cut - 1] if cut else None,
                     "accuracies": acc.tolist(), "mean": float(acc.mean()),
                     "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0})
    from convdp.transfer.cost import model_cut_costs

    return {"cuts": cuts, "runs": runs, "epochs": epochs, "seeds": list(seeds),
            "classes": classes.tolist(), "n_images": len(labels),
            "costs": model_cut_costs(arch, len(classes), in_ch, layers, images.shape[1:3],
                                     builder)}
