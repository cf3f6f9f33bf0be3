"""Smoothed layer outputs (config ``extract.smooth``): each channel of a layer's maps averaged
over a Gaussian neighbourhood of positions before it is stored and clustered.

A first layer sees a few pixels: on textured regions its vectors describe strokes, not the
pattern they repeat in, and the clusters split each texture into its edges. Averaging the
rectified responses over a neighbourhood is the step texture segmentation adds after a filter
bank (the "energy" of each filter), and it lets the clusters follow textured regions (see the
README, "Smoothing a first layer for textures", for what it gains and what it costs).

Only the stored output is smoothed: the layers after it compute from the net's own output. The
kernel is a separable Gaussian of standard deviation ``sigma`` positions cut at
:func:`radius` (3 σ), and the average is a *normalised convolution* over the positions no
padding reached (:func:`convdp.receptive.padding_free`): the responses of the border ring,
where the net's own zero padding makes edges of its own, would otherwise be spread 3 σ into
the image and give clusters of "near the border". Every position, the ring's too, gets the
weighted mean of the padding-free positions within its kernel (the weights renormalised), so a
constant map stays constant and the map keeps its size; where none is within reach (a layer
whose fields all cross the border) the plain average is taken. A smoothed position sees the
input under its own receptive field widened by ``radius`` positions on every side
(:func:`convdp.receptive.widen`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def radius(sigma: float) -> int:
    """Positions on each side of the centre that the kernel of ``sigma`` reaches (⌈3 σ⌉)."""
    if not sigma > 0:
        raise ValueError(f"a smoothing sigma must be > 0, got {sigma!r}")
    return math.ceil(3 * sigma)


def _kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = radius(sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def smooth_maps(maps: torch.Tensor, sigma: float, name: str = "layer",
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """``maps`` (N, C, H, W), each channel of each image convolved with the Gaussian of
    ``sigma`` positions over the positions where ``valid`` (H, W) is True (all when None),
    renormalised; same shape and dtype."""
    if maps.ndim != 4:
        raise ValueError(f"layer {name!r} has output shape {tuple(maps.shape)}: only spatial "
                         "maps (N, C, H, W) can be smoothed; remove it from extract.smooth")
    n, c, h, w = maps.shape
    g = _kernel(sigma, maps.dtype, maps.device)
    r = (len(g) - 1) // 2

    def blur(x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, H, W)
        x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, r))
        return F.conv2d(x, g.view(1, 1, -1, 1), padding=(r, 0))

    def plain() -> torch.Tensor:  # the average over every position
        return blur(flat) / blur(torch.ones(1, 1, h, w, dtype=maps.dtype, device=maps.device))

    flat = maps.reshape(n * c, 1, h, w)
    if valid is None or bool(valid.all()) or not bool(valid.any()):
        return plain().reshape(n, c, h, w)
    mask = valid.to(dtype=maps.dtype, device=maps.device).view(1, 1, h, w)
    weight = blur(mask)
    out = blur(flat * mask) / weight.clamp_min(torch.finfo(maps.dtype).tiny)
    reached = weight > 0
    if not bool(reached.all()):  # positions with no padding-free one within the kernel
        out = torch.where(reached, out, plain())
    return out.reshape(n, c, h, w)


class SmoothedOutputs(nn.Module):
    """``extractor``'s outputs (a ``{layer: tensor}`` dict) with the layers of ``sigmas``
    smoothed over their padding-free positions (:func:`smooth_maps`); the others as they are.

    ``model`` is the net ``extractor`` was made from: its receptive fields, traced once per
    input size, say which positions padding reached.
    """

    def __init__(self, extractor: nn.Module, sigmas: Mapping[str, float], model: nn.Module):
        super().__init__()
        self.extractor, self.sigmas = extractor, dict(sigmas)
        for sigma in self.sigmas.values():
            radius(sigma)  # a bad sigma fails here, before any image is read
        self._model = [model]  # a list: not a submodule (the extractor holds its layers)
        self._valid: dict[tuple, dict[str, torch.Tensor | None]] = {}

    def _padding_free(self, x: torch.Tensor, out: dict) -> dict[str, torch.Tensor | None]:
        from convdp.receptive import padding_free, trace_fields

        image = tuple(x.shape[2:])
        key = (image, *(tuple(out[name].shape[2:]) for name in self.sigmas))
        if key not in self._valid:
            fields = {}
            for name in self.sigmas:  # one by one: a layer that fails leaves the others' rings
                try:
                    fields |= trace_fields(self._model[0], [name], image, x.shape[1])
                except ValueError as exc:  # a field that cannot be traced: every position
                    log.warning("smoothing %s over every position, the border ring too: %s",
                                name, exc)
            self._valid[key] = {
                name: padding_free(fields[name], tuple(out[name].shape[2:]), image).to(x.device)
                if name in fields and out[name].ndim == 4 else None
                for name in self.sigmas}
        return self._valid[key]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.extractor(x)
        valid = self._padding_free(x, out)
        for name, sigma in self.sigmas.items():
            out[name] = smooth_maps(out[name], sigma, name, valid[name])
        return out
