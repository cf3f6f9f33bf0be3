"""Smoothed layer outputs (config ``extract.smooth``): each channel of a layer's maps averaged
over a Gaussian neighbourhood of positions before it is stored and clustered.

A first layer sees a few pixels: on textured regions its vectors describe strokes, not the
pattern they repeat in, and the clusters split each texture into its edges. Averaging the
rectified responses over a neighbourhood is the step texture segmentation adds after a filter
bank (the "energy" of each filter), and it lets the clusters follow textured regions (see the
README, "Regions the generator does not make").

Only the stored output is smoothed: the layers after it compute from the net's own output. The
kernel is a separable Gaussian of standard deviation ``sigma`` positions cut at
:func:`radius` (3 σ); at the border it averages over the positions inside the map (the
weights renormalised), so a constant map stays constant and the map keeps its size. A smoothed
position sees the input under its own receptive field widened by ``radius`` positions on every
side (:func:`convdp.receptive.widen`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


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


def smooth_maps(maps: torch.Tensor, sigma: float, name: str = "layer") -> torch.Tensor:
    """``maps`` (N, C, H, W), each channel of each image convolved with the Gaussian of
    ``sigma`` positions, renormalised at the border; same shape and dtype."""
    if maps.ndim != 4:
        raise ValueError(f"layer {name!r} has output shape {tuple(maps.shape)}: only spatial "
                         "maps (N, C, H, W) can be smoothed; remove it from extract.smooth")
    n, c, h, w = maps.shape
    g = _kernel(sigma, maps.dtype, maps.device)
    r = (len(g) - 1) // 2

    def blur(x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, H, W)
        x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, r))
        return F.conv2d(x, g.view(1, 1, -1, 1), padding=(r, 0))

    weight = blur(torch.ones(1, 1, h, w, dtype=maps.dtype, device=maps.device))
    return (blur(maps.reshape(n * c, 1, h, w)) / weight).reshape(n, c, h, w)


class SmoothedOutputs(nn.Module):
    """``extractor``'s outputs (a ``{layer: tensor}`` dict) with the layers of ``sigmas``
    smoothed (:func:`smooth_maps`); the others as they are."""

    def __init__(self, extractor: nn.Module, sigmas: Mapping[str, float]):
        super().__init__()
        self.extractor, self.sigmas = extractor, dict(sigmas)
        for sigma in self.sigmas.values():
            radius(sigma)  # a bad sigma fails here, before any image is read

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.extractor(x)
        for name, sigma in self.sigmas.items():
            out[name] = smooth_maps(out[name], sigma, name)
        return out
