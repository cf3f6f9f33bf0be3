"""The price of each cut: parameters frozen and retrained, and the training compute saved.

Counted from the net itself: the parameters from ``named_parameters`` that its class scores
depend on (:func:`used_parameters`: an auxiliary head run in training mode only is left
out), frozen at cut n as :func:`convdp.transfer.retrain.frozen_parameters` defines it, the
compute by forward hooks on
every ``Conv2d`` and ``Linear`` module during one forward pass of an image of the real input
size. Conventions (per image):

- forward FLOPs of a Conv2d / Linear = 2 × its multiply-accumulates (``C_in / groups × kh × kw
  × C_out × H_out × W_out``, ``in × out``); biases, activations, pooling and normalisation
  are not counted (they are a small share for convnets and the same at every cut);
- backward: the gradient with respect to a layer's weights costs as many FLOPs as its forward
  pass, and so does the gradient with respect to its input; a layer needs the weight gradient
  when it is trained, and the input gradient when any trained layer runs before it;
- a frozen prefix runs forward only; since the retraining uses no data augmentation, its
  outputs can be computed once and cached, so its forward pass is not paid per epoch either.

``train_flops`` of cut n is what one training epoch costs per image with the first n layers
frozen and cached; ``flops_saved`` = ``train_flops`` of cut 0 (nothing frozen) minus it; the
shares are relative to cut 0. Without caching the frozen prefix's forward FLOPs
(``frozen_forward_flops``) stay in the bill.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def layer_flops(model, input_shape: Sequence[int], *, every_parameter: bool = False
                ) -> list[dict]:
    """Forward FLOPs of every Conv2d / Linear module, in the order they run.

    ``input_shape`` is one image's ``(C, H, W)``; one forward pass of a zero image (in
    ``eval`` mode, no gradients) with hooks on those modules counts them. Returns
    ``[{"module", "params" (names of its parameters), "flops"}]``. ``every_parameter``: also
    every other module without children that holds parameters (a BatchNorm, a LayerNorm), at
    0 FLOPs, in its place: a trained one needs the gradient of every layer above it.
    """
    import torch
    from torch import nn

    records: list[dict] = []

    def hook(name):
        def count(module, args, output):
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = (module.in_channels // module.groups) * kh * kw * output[0].numel()
            elif isinstance(module, nn.Linear):
                # per output element: a Linear may run at every position (ConvNeXt, Swin)
                macs = module.in_features * output[0].numel()
            else:  # a normalisation's parameters: not counted (see the module's docstring)
                macs = 0
            records.append({"module": name, "flops": 2 * int(macs),
                            "params": [f"{name}.{p}" for p, _ in module.named_parameters()]})
        return count

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
               if isinstance(m, nn.Conv2d | nn.Linear)
               or every_parameter and not any(True for _ in m.children())
               and any(True for _ in m.parameters(recurse=False))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return records


def used_parameters(model, input_shape: Sequence[int]) -> set[str]:
    """The names of the parameters the net's class scores depend on: those that get a
    gradient in one evaluation-mode forward pass of a zero image of ``input_shape`` (C, H,
    W). Left out: parameters the forward never reaches, such as GoogLeNet's and Inception
    v3's auxiliary heads (run in training mode only, and never in the loss) or a head of
    your own that the forward does not call; none of them is frozen or trained by a cut."""
    import torch

    from convdp.training import logits

    params = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if not params:
        return set()
    was_training = model.training
    flags = {n: p.requires_grad for n, p in params}
    try:
        model.eval()
        for _, p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            out = logits(model(torch.zeros(1, *input_shape)))
            grads = torch.autograd.grad(out.sum(), [p for _, p in params], allow_unused=True)
    finally:
        for n, p in params:
            p.requires_grad_(flags[n])
        model.train(was_training)
    return {n for (n, _), g in zip(params, grads, strict=True) if g is not None}


def cut_costs(model, layers: Sequence[str], input_shape: Sequence[int]) -> list[dict]:
    """For each cut ``n = 0…L``: parameters frozen / retrained and the training compute.

    Returns one dict per cut with ``cut``, ``params_total``, ``params_frozen``,
    ``params_retrained``, ``params_retrained_share``, ``forward_flops`` (whole net, per
    image), ``frozen_forward_flops``, ``train_flops`` (per image and epoch, frozen prefix
    cached), ``train_flops_share`` (of cut 0's), ``flops_saved`` and ``flops_saved_share``.
    """
    from convdp.transfer.retrain import frozen_parameters

    frozen_sets = [set(names) for names in frozen_parameters(model, layers)]
    # the parameters the forward uses: an auxiliary head's are neither frozen nor trained
    used = used_parameters(model, input_shape)
    sizes = {name: p.numel() for name, p in model.named_parameters() if name in used}
    total = int(sum(sizes.values()))
    # every module with parameters, in the order they run: a trained BatchNorm between the
    # cut and the first trained convolution makes that convolution pass its input gradient
    layers_flops = layer_flops(model, input_shape, every_parameter=True)
    forward = sum(r["flops"] for r in layers_flops)

    def train_flops(frozen: set[str]) -> tuple[int, int]:
        cost, frozen_fwd, below_trained = 0, 0, False
        for r in layers_flops:
            trained = any(p not in frozen for p in r["params"])
            if not trained and not below_trained:
                frozen_fwd += r["flops"]  # the cached prefix
                continue
            cost += r["flops"]  # forward
            cost += r["flops"] if trained else 0  # weight gradient
            cost += r["flops"] if below_trained else 0  # input gradient
            below_trained = below_trained or trained
        return cost, frozen_fwd

    base = train_flops(set())[0]
    out = []
    for cut, frozen in enumerate(frozen_sets):
        n_frozen = int(sum(sizes[n] for n in frozen if n in sizes))
        flops, frozen_fwd = train_flops(frozen)
        out.append({
            "cut": cut, "params_total": total, "params_frozen": n_frozen,
            "params_retrained": total - n_frozen,
            "params_retrained_share": (total - n_frozen) / total if total else float("nan"),
            "forward_flops": int(forward), "frozen_forward_flops": int(frozen_fwd),
            "train_flops": int(flops),
            "train_flops_share": flops / base if base else float("nan"),
            "flops_saved": int(base - flops),
            "flops_saved_share": (base - flops) / base if base else float("nan"),
        })
    return out


def model_cut_costs(arch: str, n_classes: int, in_channels: int, layers: Sequence[str],
                    image_shape: Sequence[int], builder: dict | None = None) -> list[dict]:
    """:func:`cut_costs` of a freshly built ``arch`` (with the model JSON's ``builder``) for
    ``n_classes`` classes on images of ``image_shape`` ``(H, W[, C])`` (the target's, as
    stored)."""
    from convdp.models import build_model

    h, w = int(image_shape[0]), int(image_shape[1])
    return cut_costs(build_model(arch, n_classes, in_channels, builder), layers,
                     (in_channels, h, w))


def price(cost: dict) -> str:
    """The decision's price in words: "retrain Y% of the parameters, Z% of the training
    compute"."""
    return (f"retrain {100 * cost['params_retrained_share']:.1f}% of the parameters, "
            f"{100 * cost['train_flops_share']:.1f}% of the training compute")



def dataset_cut_costs(meta: dict, dataset, layers: Sequence[str]) -> list[dict]:
    """:func:`model_cut_costs` for the target data set's store ``dataset`` (its image size and
    class count; the source net's class count where it has no labels)."""
    from convdp import data as data_mod

    ds = data_mod.read_dataset(dataset)
    n_classes = len(np.unique(ds.labels)) if ds.labels is not None else meta.get("num_classes")
    return model_cut_costs(meta["arch"], n_classes, meta["in_channels"], layers,
                           ds.images.shape[1:3], meta.get("builder"))
