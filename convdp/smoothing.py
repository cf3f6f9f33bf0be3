"""Smoothed layer outputs (config ``extract.smooth``): each channel of a layer's maps averaged
over a Gaussian neighbourhood of positions before it is stored and clustered.

A first layer sees a few pixels: on textured regions its vectors describe strokes, not the
pattern they repeat in, and the clusters split each texture into its edges. Averaging the
rectified responses over a neighbourhood is the step texture segmentation adds after a filter
bank (the "energy" of each filter), and it lets the clusters follow textured regions (see
docs/parts_and_textures.md, "Smoothing a first layer for textures", for what it gains and
what it costs).

Only the stored output is smoothed: the layers after it compute from the net's own output. The
kernel is a separable Gaussian of standard deviation ``sigma`` positions cut at
:func:`radius` (3 σ), and the average is a *normalised convolution* over the positions no
padding reached (:func:`convdp.receptive.padding_free`): the responses of the border ring,
where the net's own zero padding makes edges of its own, would otherwise be spread 3 σ into
the image and give clusters of "near the border". Every position, the ring's too, gets the
weighted mean of the padding-free positions within its kernel (the weights renormalised), so a
constant map stays constant and the map keeps its size; where none is within reach (a layer
whose fields all cross the border) the plain average is taken. Near the edge of the
padding-free area the kernel is cut and averages one side only, which leaves a texture's
ripple: positions nearer than ⌈1.5 σ⌉ to it take the value of the nearest position that far
in (:data:`EDGE_MARGIN`, :func:`inner_box`), and the atlas takes no exemplar from them. A
smoothed position sees the input under its own receptive field widened by ``radius``
positions on every side (:func:`convdp.receptive.widen`).

``σ: auto`` is chosen from the layer's own maps (:class:`SigmaChooser`): the smallest σ that
leaves a texture's ripple within regions small against the regions' own differences, both
measured as shares of the maps' variance (what a Gaussian of σ takes away, net of what it
takes from the regions' edges).
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


EDGE_MARGIN = 1.5
"""Positions nearer than ⌈1.5 σ⌉ to the edge of the padding-free area (the map's edge where
padding reached none) take the smoothed value of the nearest position that far in
(:func:`inner_box`): there the edge cuts at most 7 % of the kernel's weight along each
axis. A kernel cut sharply by the edge averages one side only and keeps much more of a
texture's ripple (a cut Gaussian passes high frequencies), so a texture's positions along the
image's border were clusters of their own: at σ 3 on the stripes and checkers, 7 of relu1's 17
clusters were such bands (docs/parts_and_textures.md, "Smoothing a first layer for textures")."""


_WARNED: set[str] = set()  # layers warned of having no inner box, once a process


def inner_box(valid: torch.Tensor | None, grid: tuple[int, int], sigma: float
              ) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` (bottom and right exclusive) of the positions at least
    ⌈:data:`EDGE_MARGIN` σ⌉ inside the bounding box of ``valid`` (h, w) (the whole ``grid``
    when None or when no position is valid), whose smoothed values every position outside
    takes from the nearest of them; None where none is that far in (a map too small for σ)."""
    h, w = grid
    top, bottom, left, right = 0, h, 0, w
    if valid is not None and bool(valid.any()) and not bool(valid.all()):
        rows, cols = torch.nonzero(valid.any(1)).flatten(), torch.nonzero(valid.any(0)).flatten()
        top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    m = math.ceil(EDGE_MARGIN * sigma)
    top, bottom, left, right = top + m, bottom - m, left + m, right - m
    return (top, bottom, left, right) if top < bottom and left < right else None


def smooth_maps(maps: torch.Tensor, sigma: float, name: str = "layer",
                valid: torch.Tensor | None = None, edges: bool = True) -> torch.Tensor:
    """``maps`` (N, C, H, W), each channel of each image convolved with the Gaussian of
    ``sigma`` positions over the positions where ``valid`` (H, W) is True (all when None),
    renormalised; same shape and dtype. With ``edges`` (the stored maps), the positions
    outside :func:`inner_box` then take the value of the nearest position inside it
    (:data:`EDGE_MARGIN`; a map with no such box is left as convolved, with a warning)."""
    out = _average(maps, sigma, name, valid)
    if not edges:
        return out
    n, c, h, w = maps.shape
    box = inner_box(valid, (h, w), sigma)
    if box is None:
        if name not in _WARNED:
            _WARNED.add(name)
            log.warning("layer %s: its %d x %d maps have no position %d in from the edge of "
                        "those no padding reached; its border positions are smoothed over the "
                        "cut kernel (a texture's ripple is left there)", name, h, w,
                        math.ceil(EDGE_MARGIN * sigma))
        return out
    top, bottom, left, right = box
    inner = out[:, :, top:bottom, left:right].reshape(n * c, 1, bottom - top, right - left)
    return F.pad(inner, (left, w - right, top, h - bottom), mode="replicate").reshape(n, c, h, w)


def _average(maps: torch.Tensor, sigma: float, name: str,
             valid: torch.Tensor | None) -> torch.Tensor:
    """:func:`smooth_maps` without its edge rule: the normalised convolution alone."""
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


SIGMA_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0,
              96.0, 128.0, 192.0, 256.0)
"""The σ's (positions) that ``auto`` chooses from."""

RIPPLE_TO_REGIONS = 0.18
"""The ripple's variance a σ chosen by ``auto`` may leave within regions, as a share of the
variance that is not ripple (the regions' differences, which the clusters are to follow): a
ripple of about 0.42 of the regions' spread in amplitude. The larger the ripple against the
regions, the more of it must go: a texture that is most of the variance (stripes and
checkers) loses nearly all of its ripple, a fine texture among regions of their own colour
(the parts generator's scenes) only part; layers whose ripple is already within this share
are left unsmoothed (regions of flat colour, whose borders smoothing would blur into
clusters of their own). docs/parts_and_textures.md, "Choosing σ"."""

AUTO_MIN_SIZE = 16
"""The least height and width (positions) of a layer's maps for ``auto``: its edge term is
read from σ's of 1/16 and 1/8 of the map."""


def auto_size_problem(h: int, w: int) -> str | None:
    """Why ``auto`` cannot choose a σ for maps of h x w positions (it reads the ripple off σ's
    up to 1/8 of the map), or None."""
    if AUTO_MIN_SIZE <= min(h, w) <= 16 * SIGMA_GRID[-1]:
        return None
    return (f"has {h} x {w} positions: extract.smooth auto needs maps of {AUTO_MIN_SIZE} to "
            f"{16 * SIGMA_GRID[-1]:g} positions a side; give its sigma as a number")


class SigmaChooser:
    """Chooses a layer's σ from its maps (config ``extract.smooth: {layer: auto}``).

    For each σ of :data:`SIGMA_GRID` up to an eighth of the map, ``removed(σ)`` is the share
    of the maps' variance (each channel about its mean over every image and position, summed
    over channels) that smoothing at σ takes away, over the positions no padding reached.
    It has two parts. A texture's ripple within regions is taken away at σ's of about a
    third of its period and then is gone: the curve rises and flattens. The regions' edges
    lose a share that grows about linearly with σ (a position's kernel reaches across an
    edge with a probability about proportional to σ). The edge term is the line through
    ``removed`` at the two largest σ's (1/16 and 1/8 of the map), and the ripple's share
    ``R`` that line's value at σ = 0. What smoothing at σ leaves of the ripple is ``R`` less
    ``removed(σ)`` net of the edge term; the choice is the smallest σ that leaves at most
    :data:`RIPPLE_TO_REGIONS` of the variance that is not ripple, ``1 - R`` (the regions'
    differences), and none (0) where ``R`` itself is within that.

    On relu1 of DigitNet (random weights) it chose none on flat colours, 1 on the parts
    generator's scenes and on colours under heavy pixel noise, 1.5 on colours striped in
    brightness, 4 on stripes and checkers, on gratings and on band-passed noise, on two seeds
    of each but the last (docs/parts_and_textures.md, "Choosing σ"; the rule before this one
    left a tenth of the ripple's amplitude whatever its size against the regions', and chose
    one grid step below the best σ on stripes and checkers, gratings and band-passed noise
    and one above it on the parts).

    ``add`` takes the unsmoothed maps (N, C, H, W) batch by batch, ``valid`` (H, W) the
    positions no padding reached (None: all); ``result`` gives the choice and its evidence.
    """

    def __init__(self, name: str, grid: tuple[int, ...], valid: torch.Tensor | None = None):
        if len(grid) != 2:
            raise ValueError(f"layer {name!r} has no spatial maps (its output per image is "
                             f"{tuple(grid) or 'a vector'}): only spatial maps can be smoothed; "
                             "remove it from extract.smooth")
        h, w = grid
        if problem := auto_size_problem(h, w):
            raise ValueError(f"layer {name!r} {problem}")
        self.name, self.grid, self.valid = name, (h, w), valid
        if valid is not None and not bool(valid.any()):
            self.valid = None  # every field crosses the border: all positions, as smooth_maps
        if self.valid is not None and int(self.valid.sum()) < h * w / 4:
            log.warning("layer %s: %d of its %d x %d positions are out of the padding's reach; "
                        "the smoothing sigma is chosen from those alone", name,
                        int(self.valid.sum()), h, w)
        self.sigmas = [s for s in SIGMA_GRID if s <= min(h, w) / 8]
        # two σ's: at 4096 positions a side a sixteenth of the map is the grid's last σ too
        # (the edge term's slope was then 0 / 0)
        self.edge_fit = (max(s for s in self.sigmas[:-1] if s <= min(h, w) / 16),
                         self.sigmas[-1])
        self._sum = self._sq = None
        self._removed = torch.zeros(len(self.sigmas), dtype=torch.float64)
        self._count = 0

    def _positions(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, P) of the valid positions."""
        if self.valid is None:
            return x.flatten(2)
        return x[:, :, self.valid.to(x.device)]

    def add(self, maps: torch.Tensor) -> None:
        if maps.ndim != 4 or tuple(maps.shape[2:]) != self.grid:
            raise ValueError(f"layer {self.name!r} has output shape {tuple(maps.shape)}: only "
                             f"spatial maps (N, C, {self.grid[0]}, {self.grid[1]}) can be "
                             "smoothed")
        if not bool(torch.isfinite(maps).all()):
            raise ValueError(f"layer {self.name!r}: its maps hold NaN or infinite values; no "
                             "smoothing sigma can be chosen from them")
        x = self._positions(maps).double()
        s, q = x.sum((0, 2)), x.square().sum((0, 2))
        self._sum = s if self._sum is None else self._sum + s
        self._sq = q if self._sq is None else self._sq + q
        self._count += x.shape[0] * x.shape[2]
        for i, sigma in enumerate(self.sigmas):
            # the convolution alone: the edge rule would count the copied border positions'
            # differences as ripple
            smoothed = smooth_maps(maps, sigma, self.name, self.valid, edges=False)
            self._removed[i] += float(self._positions(maps - smoothed).double().square().sum())

    def result(self) -> dict:
        """``sigma`` (0.0: not smoothed), ``ripple_share`` R, ``edge_slope`` (per position of
        σ), ``removed`` {σ: share}, ``edge_fit`` (the two σ's of the edge term) and
        ``reason``."""
        if self._count == 0:
            raise ValueError(f"layer {self.name!r}: no maps to choose a smoothing sigma from")
        total = float((self._sq - self._sum.square() / self._count).sum())
        a, b = self.edge_fit
        # maps that do not vary leave rounding in the sums (~1e-16 of the squares), not zero
        varies = total > 1e-9 * float(self._sq.sum())
        removed = (self._removed / total).tolist() if varies else [0.0] * len(self.sigmas)
        share = dict(zip(self.sigmas, (min(max(v, 0.0), 1.0) for v in removed), strict=True))
        slope = (share[b] - share[a]) / (b - a)
        net = {s: share[s] - slope * s for s in self.sigmas}  # taken away beyond the edge term
        ripple = net[a]
        out = {"removed": {f"{s:g}": round(v, 4) for s, v in share.items()},
               "edge_fit": [a, b], "edge_slope": slope, "ripple_share": ripple}
        if not varies:
            return out | {"sigma": 0.0, "reason": "the maps do not vary: not smoothed"}
        # the ripple a σ may leave (the rest's share at least 0: a ripple of all the variance
        # must go, which the edge-fit's smaller σ does by the construction of ``ripple``)
        rest = max(1.0 - ripple, 0.0)
        allowed = RIPPLE_TO_REGIONS * rest
        if ripple <= allowed:
            return out | {"sigma": 0.0, "reason": (
                f"the ripple within regions is {ripple:.3f} of the variance, at most "
                f"{RIPPLE_TO_REGIONS} of the {rest:.3f} that is not ripple: not smoothed")}
        sigma = next(s for s in self.sigmas if net[s] >= ripple - allowed - 1e-12)
        left = max(ripple - net[sigma], 0.0)
        return out | {"sigma": sigma, "reason": (
            f"sigma {sigma:g} leaves {left:.3f} of the variance as ripple within regions (of "
            f"{ripple:.3f}), at most {RIPPLE_TO_REGIONS} of the {rest:.3f} that is not ripple")}


def valid_positions(model: nn.Module, names, x: torch.Tensor, out: Mapping[str, torch.Tensor]
                    ) -> dict[str, torch.Tensor | None]:
    """{layer: (h, w) bool of the positions no padding reached, or None (every position)}
    for ``names`` of ``model``'s outputs ``out`` on the input batch ``x``; each layer traced
    on its own, so one whose field cannot be traced (a warning; None) leaves the others."""
    from convdp.receptive import padding_free, trace_fields

    image = tuple(x.shape[2:])
    fields = {}
    for name in names:  # one by one: a layer that fails leaves the others' rings
        try:
            fields |= trace_fields(model, [name], image, x.shape[1])
        except ValueError as exc:  # a field that cannot be traced: every position
            log.warning("smoothing %s over every position, the border ring too: %s", name, exc)
    return {name: padding_free(fields[name], tuple(out[name].shape[2:]), image).to(x.device)
            if name in fields and out[name].ndim == 4 else None
            for name in names}


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
        key = (tuple(x.shape[2:]), *(tuple(out[name].shape[2:]) for name in self.sigmas))
        if key not in self._valid:
            self._valid[key] = valid_positions(self._model[0], self.sigmas, x, out)
        return self._valid[key]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.extractor(x)
        valid = self._padding_free(x, out)
        for name, sigma in self.sigmas.items():
            out[name] = smooth_maps(out[name], sigma, name, valid[name])
        return out
