"""Receptive fields of a net's layers, traced from the net's own graph (not from a table).

The net is traced with torchvision's feature extraction (the same ``torch.fx`` graph, and the
same node names, that the config's ``layers`` use) and run once on a small input while each
node's receptive field is composed from its inputs'. Per spatial axis a field is three numbers:
position ``i`` of a layer sees the input pixels ``start + i * jump`` to
``start + i * jump + size - 1`` (``start`` is negative where padding reaches outside the image).

* Convolutions and max / average pooling (modules or their functional forms) compose:
  ``jump *= stride``, ``start -= padding * jump``, ``size += (dilated kernel - 1) * jump``.
* An op whose output keeps its 4-D inputs' spatial size (ReLU, batch norm, the residual
  ``add``, ``cat``, dropout, …) takes the union of its inputs' fields; an input of spatial size
  1 × 1 that came from a global pooling (squeeze-and-excitation) makes the field global.
* Adaptive pooling to 1 × 1, ``flatten``, ``mean`` and linear layers make the output global
  (every position sees the whole image) or non-spatial; adaptive pooling to a size that divides
  the input composes as a pooling with kernel = stride = input / output.
* A module that torchvision's feature extraction keeps as one node (``Conv2dNormActivation``,
  ``SqueezeExcitation``, …) is traced through its own graph.
* A flat layer (N, C) has one position, which sees the whole image.
* A permute (to channels-last and back, ConvNeXt's blocks), a reshape that keeps the rows and
  columns as two adjacent axes (a channel shuffle's view to 5-D), and a ``chunk`` or ``split``
  along the channels keep each position's field: the tracer follows which axes hold the rows
  and columns.
* Group and instance norms, and a layer norm or ``F.normalize`` over the rows and columns,
  take their statistics over the whole map: the output is global. Constants of the net (a
  ``(1, C, 1, 1)`` mean buffer, a layer scale) are no input of any field: only values that
  depend on the image are traced.
* Anything else that changes the spatial size or layout (interpolation, pixel shuffle, a
  flip, a permute that swaps rows and columns, a split along them, …) or mixes positions
  (a transposed convolution, a product across positions as attention takes, sorting, a
  Fourier transform, an index by a tensor) leaves the field unknown (None) for it and
  everything downstream; asking for such a layer raises.
* Last, the fields asked for are checked against the gradient of the middle position's
  output with respect to a random input: a field that misses a pixel the output depends on
  (an op no rule above names) raises too.

:func:`widen` grows a field by a smoothing kernel (config ``extract.smooth``), and
:func:`padding_free` marks the positions no padding reached (what the smoothing averages);
:func:`crop_box` turns a layer position into the pixel box of the input it sees, clipped to
the image.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn


@dataclass(frozen=True)
class Field:
    """The receptive field of every position of one layer, per axis (rows, columns).

    ``global_`` marks a field that covers the whole input whatever the position.
    """

    jump: tuple[int, int]
    start: tuple[int, int]
    size: tuple[int, int]
    global_: bool = False

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive, of position (i, j), unclipped."""
        top = self.start[0] + i * self.jump[0]
        left = self.start[1] + j * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]

    def as_dict(self) -> dict:
        return {"jump": list(self.jump), "start": list(self.start), "size": list(self.size),
                "global": self.global_}


IDENTITY = Field((1, 1), (0, 0), (1, 1))


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int | torch.SymInt):
        return int(v), int(v)
    v = list(v)
    return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))


def _compose(f: Field, kernel, stride, padding, dilation=1) -> Field:
    k, s, d = _pair(kernel), _pair(stride if stride else kernel), _pair(dilation)
    if padding == "valid":
        padding = 0
    elif padding == "same":  # torch pads the extra pixel of an even kernel at the end
        padding = tuple(d[a] * (k[a] - 1) // 2 for a in range(2))
    p = _pair(padding)
    if f.global_:
        return f
    return Field(
        jump=tuple(f.jump[a] * s[a] for a in range(2)),
        start=tuple(f.start[a] - p[a] * f.jump[a] for a in range(2)),
        size=tuple(f.size[a] + (d[a] * (k[a] - 1)) * f.jump[a] for a in range(2)),
    )


def _union(fields: Sequence[Field], shape: tuple[int, int]) -> Field | None:
    if any(f.global_ for f in fields):
        return Field((1, 1), (0, 0), shape, True)
    jumps = {f.jump for f in fields}
    if len(jumps) != 1:
        return None  # inputs on different grids: not one field per position
    start = tuple(min(f.start[a] for f in fields) for a in range(2))
    end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in range(2))
    return Field(fields[0].jump, start, tuple(end[a] - start[a] for a in range(2)))


_CONV_FUNCS = {F.conv2d: (1, 3, 4, 5), torch.conv2d: (1, 3, 4, 5)}  # weight, stride, padding, dilation
_POOL_FUNCS = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d}


#: Ops (functions and method names) that keep a map's shape but move its positions: a flip,
#: a roll, a rotation.
_MOVES_POSITIONS = {torch.roll, torch.flip, torch.fliplr, torch.flipud, torch.rot90,
                    "roll", "flip", "fliplr", "flipud", "rot90"}

#: Ops that reorder a tensor's axes: the map's rows and columns may move to other axes (a
#: permute to channels-last and back, as ConvNeXt's blocks do), and each position keeps its
#: field as long as the rows stay before the columns.
_PERMUTES = {torch.permute, torch.transpose, torch.movedim, torch.swapaxes, torch.swapdims,
             torch.t, "permute", "transpose", "movedim", "swapaxes", "swapdims", "t"}

#: Ops that reshape without moving data in their logical order: the rows and columns keep
#: their positions if the axes before them hold the same number of elements (a channel
#: shuffle's view to (N, groups, C / groups, H, W) and back).
_RESHAPES = {torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze, torch.unflatten,
             "view", "reshape", "flatten", "squeeze", "unsqueeze", "unflatten", "view_as",
             "reshape_as"}


def _arg(args: tuple, kwargs: dict, pos: int, name: str, default):
    """An op's argument by position or name, from its evaluated ``args`` / ``kwargs``."""
    if len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


def _is_permute(n: fx.Node, module: nn.Module) -> bool:
    if n.op == "call_function" and n.target is getattr:
        return len(n.args) > 1 and n.args[1] in ("T", "mT", "H", "mH")
    if n.op == "call_module":
        return type(module.get_submodule(n.target)).__name__ == "Permute"  # torchvision.ops
    return n.op in ("call_function", "call_method") and n.target in _PERMUTES


def _reshaped_axes(shape_in, axes, shape_out) -> tuple[int, int] | None:
    """The axes of the rows and columns after a reshape of ``shape_in`` (rows and columns at
    ``axes``) to ``shape_out``, or None where the reshape mixes them with other axes."""
    a, b = axes
    if b != a + 1:
        return None
    before = math.prod(shape_in[:a])
    for c in range(len(shape_out) - 1):
        if (tuple(shape_out[c : c + 2]) == tuple(shape_in[a : a + 2])
                and math.prod(shape_out[:c]) == before):
            return c, c + 1
    return None


_ALONG_DIM = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, torch.cumsum,
              torch.cumprod, "softmax", "log_softmax", "cumsum", "cumprod"}


#: Ops that keep a map's shape but mix its positions in ways no field composes: products
#: across an axis, sorting, Fourier transforms, gathers, sampling at computed positions.
_MIXES_POSITIONS = {torch.matmul, operator.matmul, torch.mm, torch.bmm, torch.einsum,
                    torch.sort, torch.topk, torch.cummax, torch.cummin, torch.argsort,
                    torch.index_select, torch.gather, torch.take, torch.take_along_dim,
                    F.grid_sample, F.conv_transpose2d, F.conv1d, F.conv3d, F.unfold, F.fold,
                    "matmul", "mm", "bmm", "sort", "topk", "cummax", "cummin", "argsort",
                    "index_select", "gather", "take", "take_along_dim", "scatter",
                    "scatter_add", "unfold", "__matmul__"}

#: Normalisations whose statistics are taken over the positions too: every position's
#: output depends on the whole map.
_OVER_POSITIONS = (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _mixes_positions(n: fx.Node, module: nn.Module, args: tuple) -> bool:
    """Whether ``n`` is an op of :data:`_MIXES_POSITIONS` (or a convolution other than the
    2-D ones composed, a deformable one, a Fourier transform, or an index by a tensor)."""
    target = n.target
    if n.op == "call_module":
        m = module.get_submodule(target)
        # a transposed, 1-D or 3-D convolution, or a Conv2d of its own forward (padding
        # computed there: timm's Conv2dSame)
        return isinstance(m, nn.modules.conv._ConvNd) and not (
            isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward)
    if n.op not in ("call_function", "call_method"):
        return False
    if target in _MIXES_POSITIONS or getattr(target, "__module__", "") in ("torch.fft",):
        return True
    if getattr(target, "__name__", "") in ("deform_conv2d",):
        return True
    if target is operator.getitem and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) or isinstance(i, list) for i in index)
    return False


def _layer_norm_axes(n: fx.Node, module: nn.Module, args: tuple, kwargs: dict,
                     ndim: int) -> set[int] | None:
    """The axes a layer norm (``nn.LayerNorm`` or ``F.layer_norm``) normalises over: its
    last ``len(normalized_shape)``; None for any other op."""
    if n.op == "call_module" and isinstance(module.get_submodule(n.target), nn.LayerNorm):
        shape = module.get_submodule(n.target).normalized_shape
    elif n.target is F.layer_norm:
        shape = _arg(args, kwargs, 1, "normalized_shape", ())
    else:
        return None
    last = 1 if isinstance(shape, int) else len(shape)
    return set(range(ndim - last, ndim))


def _normalises_over_positions(n: fx.Node, module: nn.Module, args: tuple, kwargs: dict,
                               axes: tuple[int, int], ndim: int) -> bool:
    """Group or instance norm, a layer norm or ``F.normalize`` over the map's rows and
    columns: statistics of the whole map, so every position sees the whole image."""
    normed = _layer_norm_axes(n, module, args, kwargs, ndim)
    if normed is not None:
        return set(axes) <= normed
    if n.op == "call_module":
        m = module.get_submodule(n.target)
        return isinstance(m, _OVER_POSITIONS) and not (
            isinstance(m, nn.modules.instancenorm._InstanceNorm)
            and m.track_running_stats and not m.training)
    if n.target in (F.group_norm, F.instance_norm):
        return True
    if n.target is F.normalize:
        dim = _arg(args, kwargs, 2, "dim", 1)
        dims = {d % ndim for d in (dim if isinstance(dim, tuple | list) else (dim,))}
        return bool(dims & set(axes))
    return False


def _mixed_axes(n: fx.Node, module: nn.Module, args: tuple, kwargs: dict, ndim: int) -> set[int]:
    """The axes along which a shape-keeping op mixes values (a linear layer or a layer norm
    over the last axes, a softmax or cumulative sum along one): where they are the map's
    rows or columns, a position sees more than the union of its inputs' fields."""
    normed = _layer_norm_axes(n, module, args, kwargs, ndim)
    if normed is not None:
        return normed
    if n.op == "call_module":
        m = module.get_submodule(n.target)
        if isinstance(m, nn.Linear):
            return {ndim - 1}
        if isinstance(m, nn.Softmax | nn.LogSoftmax) and m.dim is not None:
            return {m.dim % ndim}
    elif n.target is F.linear:
        return {ndim - 1}
    elif n.op in ("call_function", "call_method") and n.target in _ALONG_DIM:
        dim = _arg(args, kwargs, 1, "dim", None)
        return {dim % ndim} if isinstance(dim, int) else set(range(ndim))
    return set()


def _tensors(out) -> list[torch.Tensor] | None:
    """The tensors of a node's value: itself, or those of a tuple (``chunk``, ``split``; an
    attention module's ``(output, None)``); None where it holds none."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for t in out if isinstance(t, torch.Tensor)] or None
    return None


class _Tracer(fx.Interpreter):
    """Runs the graph and composes the receptive field of every node beside its value.

    Besides each node's field it keeps where the map's rows and columns are among the
    value's axes (``axes``: (2, 3) for (N, C, H, W), (1, 2) after a permute to (N, H, W, C))
    and their sizes (``spatial``)."""

    def __init__(self, gm: fx.GraphModule, image: tuple[int, int], start: Field = IDENTITY,
                 start_axes: tuple[int, int] = (2, 3)):
        super().__init__(gm)
        self.image = image
        self.start = start  # the field of the graph's input (a module's input, see _inner)
        self.start_axes = start_axes
        self.fields: dict[str, Field | None] = {}
        self.axes: dict[str, tuple[int, int]] = {}
        self.spatial: dict[str, tuple[int, int]] = {}
        self.flat: set[str] = set()  # nodes whose value is an (N, C) tensor
        self.dependent: set[str] = set()  # nodes whose value depends on the image

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        parts = _tensors(out)
        if parts is None or not (n.op == "placeholder" or any(
                a.name in self.dependent for a in n.all_input_nodes)):
            return out  # not the image's: a parameter, a buffer, a shape
        self.dependent.add(n.name)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        axes = self._axes(n, parts, args)
        if axes is not None:
            self.axes[n.name] = axes
            self.spatial[n.name] = (parts[0].shape[axes[0]], parts[0].shape[axes[1]])
            try:
                self.fields[n.name] = self._field(n, parts[0], args, kwargs)
            except Exception:  # noqa: BLE001 - an op whose arguments are not as expected
                self.fields[n.name] = None
        elif parts[0].ndim == 2:
            self.flat.add(n.name)
        return out

    def _inputs(self, n: fx.Node) -> list[fx.Node]:
        """The inputs of ``n`` that hold the image's maps."""
        return [a for a in n.all_input_nodes if a.name in self.spatial]

    def _untracked(self, n: fx.Node) -> bool:
        """Whether an input of ``n`` depends on the image but holds no map whose rows and
        columns are known (a flattened map, a product across positions)."""
        return any(a.name in self.dependent and a.name not in self.spatial
                   for a in n.all_input_nodes)

    def _axes(self, n: fx.Node, parts: list, args: tuple) -> tuple[int, int] | None:
        """Where the rows and columns of the map are among the value's axes (None: no map
        known), for a node that depends on the image."""
        value = parts[0]
        if n.op == "placeholder":
            return self.start_axes if value.ndim == 4 else None
        ins = self._inputs(n)
        if n.op in ("call_function", "call_method") and n.target in _RESHAPES:
            # the data is the first argument; a shape donor (view_as's) is not
            src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
            if src is None or src.name not in self.spatial:
                return None
            shape_in = tuple(_tensors(self.env[src])[0].shape)
            return _reshaped_axes(shape_in, self.axes[src.name], tuple(value.shape))
        if not ins or self._untracked(n):
            return None
        src = ins[0]
        axes, shape_in = self.axes[src.name], tuple(_tensors(self.env[src])[0].shape)
        if _is_permute(n, self.module):
            moved = self._probe(n, src, len(shape_in))
            if moved is None or axes[0] not in moved or axes[1] not in moved:
                return None
            return moved.index(axes[0]), moved.index(axes[1])
        if len(parts) > 1 and any(p.ndim != len(shape_in) or [p.shape[a] for a in axes]
                                  != [shape_in[a] for a in axes] for p in parts):
            return None  # chunks of the rows or columns: each part sits elsewhere
        if value.ndim == len(shape_in):
            return axes
        return (2, 3) if value.ndim == 4 else None

    def _probe(self, n: fx.Node, src: fx.Node, ndim: int) -> list[int] | None:
        """For an op that reorders axes: the input axis each output axis comes from, found
        by running the op on an empty tensor whose sizes name its axes."""
        probe = torch.empty(tuple(range(2, 2 + ndim)), device="meta")

        def swap(a):
            return probe if a is src else self.env[a]

        args = fx.node.map_arg(n.args, swap)
        kwargs = fx.node.map_arg(n.kwargs, swap)
        try:
            if n.op == "call_module":
                moved = self.module.get_submodule(n.target)(*args, **kwargs)
            elif n.op == "call_method":
                moved = getattr(args[0], n.target)(*args[1:], **kwargs)
            else:
                moved = n.target(*args, **kwargs)
        except Exception:  # noqa: BLE001 - an op the probe cannot run: no field
            return None
        if sorted(moved.shape) != list(range(2, 2 + ndim)):
            return None
        return [s - 2 for s in moved.shape]

    def _field(self, n: fx.Node, out: torch.Tensor, args: tuple, kwargs: dict) -> Field | None:
        """The field of a node holding a map (its rows and columns at ``self.axes``), from
        its inputs' and its evaluated ``args`` / ``kwargs``; None where unknown."""
        if n.op == "placeholder":
            return self.start
        shape, axes = self.spatial[n.name], self.axes[n.name]
        ins = self._inputs(n)
        if not ins or self._untracked(n) or _mixes_positions(n, self.module, args):
            return None
        first = self.fields.get(ins[0].name)
        nchw = axes == (2, 3) and self.axes[ins[0].name] == (2, 3)
        whole = Field((1, 1), (0, 0), self.image, True)
        if n.op == "call_module":
            m = self.module.get_submodule(n.target)
            if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d | nn.LPPool2d):
                if first is None or not nchw:
                    return None
                if getattr(m, "padding_mode", "zeros") == "circular" and any(_pair(m.padding)):
                    return None  # a border position sees the far side of the image: no box
                return _compose(first, m.kernel_size, m.stride, getattr(m, "padding", 0),
                                getattr(m, "dilation", 1))
            if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
                return self._adaptive(first, self.spatial[ins[0].name], shape) if nchw else None
            if next(m.children(), None) is not None:  # a module torchvision keeps whole
                return self._inner(n, m, first)
        if n.op == "call_function" and nchw:
            if n.target in _CONV_FUNCS and first is not None:
                w = _arg(args, kwargs, 1, "weight", None)
                kernel = tuple(w.shape[2:]) if isinstance(w, torch.Tensor) else (1, 1)
                return _compose(first, kernel, _arg(args, kwargs, 3, "stride", 1),
                                _arg(args, kwargs, 4, "padding", 0),
                                _arg(args, kwargs, 5, "dilation", 1))
            if n.target in _POOL_FUNCS and first is not None:
                k = _arg(args, kwargs, 1, "kernel_size", 1)
                return _compose(first, k, _arg(args, kwargs, 2, "stride", None) or k,
                                _arg(args, kwargs, 3, "padding", 0),
                                _arg(args, kwargs, 4, "dilation", 1)
                                if n.target is not F.avg_pool2d else 1)
            if n.target is F.lp_pool2d and first is not None:  # (input, norm_type, kernel, stride)
                k = _arg(args, kwargs, 2, "kernel_size", 1)
                return _compose(first, k, _arg(args, kwargs, 3, "stride", None) or k, 0)
            if n.target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
                return self._adaptive(first, self.spatial[ins[0].name], shape)
        if n.op in ("call_function", "call_method") and n.target in _MOVES_POSITIONS:
            # the same shape, but a position's pixels are elsewhere
            return None
        if _is_permute(n, self.module) or (n.op in ("call_function", "call_method")
                                           and n.target in _RESHAPES):
            # the rows and columns moved (see _axes): the data's (the first argument's) field
            return self.fields.get(n.args[0].name) if isinstance(n.args[0], fx.Node) else None
        known = all(self.fields.get(a.name) is not None for a in ins)
        if _normalises_over_positions(n, self.module, args, kwargs, axes, out.ndim):
            return whole if known else None
        if _mixed_axes(n, self.module, args, kwargs, out.ndim) & set(axes):
            return None  # e.g. a linear layer across the columns
        if shape == (1, 1) and any(self.spatial[a.name] != (1, 1) for a in ins):
            return whole if known else None  # a reduction over the rows and columns
        # Shape-keeping ops: the union of the inputs' fields (1×1 maps of the image, from a
        # global pool, too). A permute or reshape that keeps the rows and columns keeps the
        # field; inputs with their rows and columns elsewhere have none to share.
        fields = []
        for a in ins:
            f = self.fields.get(a.name)
            if f is None:
                return None
            if self.spatial[a.name] == (1, 1) and shape != (1, 1):
                fields.append(whole)
                continue
            if self.spatial[a.name] != shape or self.axes[a.name] != axes:
                return None
            fields.append(f)
        return _union(fields, self.image)

    def _inner(self, n: fx.Node, m: nn.Module, first: Field | None) -> Field | None:
        """The field of a module that the feature extraction keeps as one node
        (torchvision's ``Conv2dNormActivation``, ``SqueezeExcitation``, …): its own graph
        traced from its (one) spatial input's field."""
        spatial = [a for a in n.args if isinstance(a, fx.Node) and a.name in self.spatial]
        if first is None or len(spatial) != 1 or n.kwargs:
            return None
        try:
            gm = fx.symbolic_trace(m)
        except Exception:  # not traceable by torch.fx: no field
            return None
        inner = _Tracer(gm, self.image, first, self.axes[spatial[0].name])
        inner.run(*(self.env[a] if isinstance(a, fx.Node) else a for a in n.args))
        output = next(x for x in gm.graph.nodes if x.op == "output")
        result = output.args[0]
        return inner.fields.get(result.name) if isinstance(result, fx.Node) else None

    def _adaptive(self, f: Field | None, size_in, size_out) -> Field | None:
        if f is None:
            return None
        if tuple(size_out) == (1, 1):
            return Field((1, 1), (0, 0), self.image, True)
        if tuple(size_in) == tuple(size_out):
            return f
        if all(size_in[a] % size_out[a] == 0 for a in range(2)):
            k = tuple(size_in[a] // size_out[a] for a in range(2))
            return _compose(f, k, k, 0)
        return None


def run_with_axes(gm: fx.GraphModule, x: torch.Tensor) -> tuple[dict, dict]:
    """The extractor ``gm``'s outputs on ``x`` (unsmoothed, as the net makes them: ``gm(x)``),
    and where the rows and columns of each output's map sit among its axes: (2, 3) for
    (N, C, H, W), (1, 2) for channels-last (N, H, W, C); None for an (N, C) output or one
    whose path the tracer does not follow; outputs that do not depend on the image (a Swin's
    relative position bias: no map) are left out. One forward pass, run node by node."""
    from convdp.extract import output_nodes

    tracer = _Tracer(gm, tuple(x.shape[2:]))
    out = dict(tracer.run(x))  # fx hands back the graph's own (immutable) dict
    return out, {name: tracer.axes.get(node.name) for name, node in output_nodes(gm).items()
                 if node.name in tracer.dependent}


def trace_fields(model: nn.Module, layers: Sequence[str], size: int | tuple[int, int] = 64,
                 in_channels: int | None = None) -> dict[str, Field]:
    """The receptive field of each of ``layers`` (graph node names) of ``model``.

    The net runs in evaluation mode on one zero image of ``size`` (an int or (height,
    width); the fields do not depend on it, except that every layer must keep a spatial
    extent) while the fields are composed, then once more with gradients on a random image
    to check them (:func:`_check_by_gradient`). Raises a ValueError for a layer whose field
    cannot be traced.
    """
    from convdp.extract import feature_extractor, output_nodes
    from convdp.models import input_channels

    hw = _pair(size)
    channels = in_channels or input_channels(model) or 3
    was_training = model.training
    # the extractor's graph: a layer that a later op changes in place is returned as the
    # layer computed it, as it is stored
    gm = feature_extractor(model.eval(), layers, channels_first=False)
    returned = output_nodes(gm)
    tracer = _Tracer(gm, hw)
    try:
        with torch.no_grad():
            like = next(model.parameters(), torch.zeros(()))  # the net's device and dtype
            tracer.run(torch.zeros(1, channels, *hw, device=like.device, dtype=like.dtype))
        out = {}
        for name in layers:
            node = returned[name]
            field = (tracer.fields.get(node.name)
                     if tracer.axes.get(node.name) in ((2, 3), (1, 2)) else None)
            if field is None and node.name in tracer.flat:  # (N, C): its one position sees all
                field = Field((1, 1), (0, 0), hw, True)
            if field is None:
                why = ("an op on its path is one whose field convdp does not compose (a flip or "
                       "roll, a convolution with circular padding, a permute that swaps rows "
                       "and columns, a reshape or split that mixes them with other axes, a "
                       "product across positions, an interpolation, …)"
                       if node.name in tracer.dependent and node.name not in tracer.flat
                       else "its output is not an (N, C, H, W), (N, H, W, C) or (N, C) tensor")
                raise ValueError(f"layer {name!r}: its receptive field cannot be traced: {why}")
            out[name] = field
        channels_last = {name for name in layers
                         if tracer.axes.get(returned[name].name) == (1, 2)}
        _check_by_gradient(gm, like, out, hw, channels, channels_last)
    finally:
        model.train(was_training)
    return out


def _check_by_gradient(gm: fx.GraphModule, like: torch.Tensor, fields: dict[str, Field],
                       hw: tuple[int, int], channels: int,
                       channels_last: set[str] = frozenset()) -> None:
    """Refuse a traced field that misses input pixels its layer depends on: the gradient of
    the middle position's output (a random image, random weights over its channels) with
    respect to the input must be zero outside the field's box. An op the tracing took for
    one that keeps positions apart (a transposed convolution, attention, a product across
    positions) fails here. ``gm``: the net's extractor (in evaluation mode), ``like``: a
    tensor of its device and dtype. Skipped on the meta device, and where the net has no
    gradient."""
    local = {name: f for name, f in fields.items() if not f.global_}
    if not local or like.device.type == "meta" or not like.is_floating_point():
        return
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, *hw, generator=rng, dtype=like.dtype).to(like.device)
    x.requires_grad_(True)
    try:
        with torch.enable_grad():
            outs = gm(x)
    except RuntimeError:  # a net that cannot run with gradients: not checked
        return
    for name, field in local.items():
        y = outs[name].permute(0, 3, 1, 2) if name in channels_last else outs[name]
        i, j = y.shape[2] // 2, y.shape[3] // 2
        w = torch.rand(y.shape[1], generator=rng, dtype=y.dtype).to(y.device) + 0.5
        try:
            (grad,) = torch.autograd.grad((y[0, :, i, j] * w).sum(), x, retain_graph=True,
                                          allow_unused=True)
        except RuntimeError:  # no gradient through this layer's ops: not checked
            continue
        if grad is None:
            continue
        support = grad[0].abs().sum(0) > 0
        top, left, bottom, right = crop_box(field, i, j, hw)
        support[top:bottom, left:right] = False
        if bool(support.any()):
            raise ValueError(
                f"layer {name!r}: its receptive field cannot be traced: the field composed "
                f"from the graph ({field.size[0]}×{field.size[1]} px at position ({i}, {j})) "
                "misses input pixels the layer's output depends on; an op on its path mixes "
                "positions in a way convdp does not compose (a transposed convolution, "
                "attention, a product across positions, …)")


def widen(field: Field, radius: int) -> Field:
    """The field of a position after its layer's maps are averaged over ``radius`` positions
    on every side (a stride-1 kernel of 2·radius + 1, as :mod:`convdp.smoothing` uses)."""
    return _compose(field, 2 * radius + 1, 1, radius) if radius else field


def padding_free(field: Field, grid: tuple[int, int], image: tuple[int, int]) -> torch.Tensor:
    """(h, w) bool: the positions of a layer's ``grid`` whose field lies inside the ``image``
    (height, width), so that no padding reached them; all True for a global field."""
    if field.global_:
        return torch.ones(grid, dtype=torch.bool)
    axes = []
    for a in range(2):
        first = field.start[a] + torch.arange(grid[a]) * field.jump[a]
        axes.append((first >= 0) & (first + field.size[a] <= image[a]))
    return axes[0][:, None] & axes[1][None, :]


def crop_box(field: Field, i: int, j: int, image: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the input pixels position (i, j) sees, clipped to the image
    (height, width); bottom and right exclusive."""
    if field.global_:
        return 0, 0, image[0], image[1]
    top, left, bottom, right = field.box(i, j)
    top, left = min(max(top, 0), image[0]), min(max(left, 0), image[1])
    # a field wholly outside the image (padding wider than the kernel) is an empty box
    return top, left, max(min(bottom, image[0]), top), max(min(right, image[1]), left)


def fields_for_image(fields: dict[str, Field], image: tuple[int, int]) -> dict[str, dict]:
    """JSON-ready fields with the image size they apply to."""
    return {name: f.as_dict() | {"image": list(image)} for name, f in fields.items()}
