"""Training a classifier on stored images: the device, the input tensors and their
normalisation, the seeded stratified hold-out, the training loop and its accuracy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA where available, else CPU; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return dev


def synchronize(device) -> None:
    """Wait for the work queued on ``device``: a GPU runs kernels asynchronously, so a timer
    read without this measures the queueing, not the work."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_input(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """(N, H, W, C) uint8 → normalised (N, C, H, W) float32 tensor."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, on the 0–1 scale."""
    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2))
    std[std == 0] = 1.0
    return mean.tolist(), std.tolist()


def normalisation(spec: dict, images: np.ndarray) -> tuple[list[float], list[float]]:
    """The mean and std a net trained in the pipeline normalises its inputs with (config
    ``normalize``): ``data`` or ``auto`` (the training images' own, :func:`channel_stats`),
    ``imagenet``, or null (none: mean 0, std 1)."""
    fixed = fixed_normalisation(spec, images.shape[-1])
    return fixed if fixed is not None else channel_stats(images)


def fixed_normalisation(spec: dict, in_channels: int) -> tuple[list[float], list[float]] | None:
    """The mean and std the config's ``normalize`` sets whatever the weights and images:
    ImageNet's for ``imagenet``, none (0, 1) for null; None for ``data`` and ``auto``."""
    norm = spec.get("normalize", "auto")
    if norm == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if norm is None:
        return [0.0] * in_channels, [1.0] * in_channels
    return None


def default_normalisation(in_channels: int) -> tuple[list[float], list[float]]:
    """The normalisation of a net whose weights carry none: ImageNet's for 3-channel images,
    mean and std 0.5 otherwise."""
    if in_channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return [0.5] * in_channels, [0.5] * in_channels


def check_classes(labels: np.ndarray, data_name: str) -> None:
    """Refuse training labels with fewer than two classes (a one-class net scores loss 0 and
    accuracy 1 while learning nothing) or a class of one image (no stratified held-out split)."""
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2:
        which = f"one class (label {values[0]})" if len(values) else "no labelled images"
        raise ValueError(
            f"{data_name} has {which}: a classifier needs at least two classes to learn "
            "anything; train on a data set with two or more classes"
        )
    if counts.min() < 2:
        raise ValueError(
            f"{data_name}: class {values[counts.argmin()]} has a single image; each class needs "
            "at least two (one to train on, one to hold out)"
        )


def check_outputs(model: nn.Module, x: torch.Tensor, n_classes: int, data_name: str) -> None:
    """Refuse a net whose output on the images ``x`` (B, C, H, W), B ≥ 2 (a net that ends in
    ``squeeze()`` drops the batch axis of one), is not one score per class of ``n_classes``
    or more (labels 0…n_classes-1): a ``module:factory`` without a ``num_classes`` argument
    builds its own head, and the loss failed mid-training with "Target 6 is out of bounds".
    Run in evaluation mode, without gradients; every module's mode is restored."""
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.no_grad():
            out = logits(model.eval()(x))
    finally:
        for m, training in modes.items():
            m.training = training
    if out.ndim != 2 or out.shape[1] < n_classes:
        raise ValueError(
            f"the net gives outputs of shape {tuple(out.shape[1:])} per image but {data_name} "
            f"has {n_classes} classes: a classifier needs one score per class; a module:factory "
            "gets num_classes when it takes that argument, or give it a head of that many "
            "outputs")


def logits(out) -> torch.Tensor:
    """The class scores of a net's training-mode output: GoogLeNet and Inception v3 return
    them with their auxiliary heads' (``.logits``); the auxiliary heads are not trained."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    raise TypeError(f"the net returned a {type(out).__name__}, not class scores (a tensor)")


def train_classifier(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    mean: list[float],
    std: list[float],
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    trainable: list[str] | None = None,
    progress: bool = True,
    data_name: str = "the training data",
    frozen_modules: Sequence[str] = (),
) -> dict:
    """Train ``model`` on (N, H, W, C) uint8 images with labels 0…K-1; return metrics.

    A seeded, stratified ``val_fraction`` of the images is held out and the accuracy on it is
    returned as ``val_accuracy``. ``trainable`` (parameter names, or module prefixes of
    them) restricts which parameters are updated; the others stay frozen. A BatchNorm whose
    parameters are all frozen, or named in ``frozen_modules`` (one without parameters),
    stays in eval mode: it keeps the running statistics it came with. Labels of fewer than
    two classes, or a class with a single image, are refused with a ValueError naming
    ``data_name``.
    """
    from sklearn.model_selection import train_test_split
    from tqdm import tqdm

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    check_classes(labels, data_name)
    n_classes, n_val = len(np.unique(labels)), math.ceil(val_fraction * len(labels))
    if min(n_val, len(labels) - n_val) < n_classes:
        raise ValueError(
            f"{data_name}: {len(labels)} images of {n_classes} classes; the held-out "
            f"{val_fraction:g} of them ({n_val} images) and the rest must each hold one image "
            "of every class: give the data set more images per class")
    torch.manual_seed(seed)
    dev = resolve_device(device)
    idx_train, idx_val = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=labels
    )
    x = to_input(images, mean, std)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    model = model.to(dev)
    check_outputs(model, x[idx_train[:2]].to(dev), int(np.max(labels)) + 1, data_name)
    params = []
    for name, p in model.named_parameters():
        # a name or a module prefix of it ("fc" for fc.weight), never part of a word: a frozen
        # pos_embed_extra beside a trainable pos_embed was trained
        keep = trainable is None or any(name == t or name.startswith(t + ".") for t in trainable)
        p.requires_grad_(keep)
        if keep:
            params.append(p)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * int(np.ceil(len(idx_train) / batch_size))
    )
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    history = []
    bar = tqdm(range(epochs), desc="train", unit="epoch", disable=not progress)
    def frozen(name: str, m: nn.Module) -> bool:
        params = list(m.parameters())
        return name in frozen_modules or (bool(params) and not any(p.requires_grad
                                                                     for p in params))

    frozen_norms = [m for name, m in model.named_modules()
                    if isinstance(m, nn.modules.batchnorm._BatchNorm) and frozen(name, m)]
    for _epoch in bar:
        model.train()
        for m in frozen_norms:  # a frozen BatchNorm keeps its source statistics too
            m.eval()
        order = torch.from_numpy(idx_train)[torch.randperm(len(idx_train), generator=gen)]
        total = 0.0
        for i in range(0, len(order), batch_size):
            b = order[i : i + batch_size]
            xb, yb = x[b].to(dev), y[b].to(dev)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(logits(model(xb)), yb)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        acc = evaluate(model, x[idx_val], y[idx_val], batch_size=256, device=dev)
        history.append({"loss": total / len(idx_train), "val_accuracy": acc})
        bar.set_postfix(loss=f"{total / len(idx_train):.3f}", val_acc=f"{acc:.3f}")
    return {
        "val_accuracy": history[-1]["val_accuracy"],
        "n_train": len(idx_train),
        "n_val": len(idx_val),
        "epochs": epochs,
        "history": history,
        "seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size=256, device="cpu"):
    """Accuracy of ``model`` on normalised inputs ``x`` (N, C, H, W) and labels ``y`` (N,)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        pred = model(x[i : i + batch_size].to(device)).argmax(1).cpu()
        correct += int((pred == y[i : i + batch_size]).sum())
    return correct / max(len(x), 1)
