"""Streaming activation extraction: a net's layer outputs, chunk by chunk, to one Zarr group.

Each configured layer becomes one array, stored channels-last (N, H, W, C) so that the
C-dimensional vector of one spatial position is contiguous and position mode is a free
reshape to (N·H·W, C). A layer with a flat output (N, C) is stored as (N, 1, 1, C).
Arrays are chunked along N only, ``chunk_size`` images per chunk, uncompressed by default
(``compression``); uncompressed chunks are written as their files directly, past the page
cache (:mod:`convdp.rawchunks`), compressed ones through Zarr.

The images are read one chunk at a time; each chunk goes through the net in batches; the
finished chunk is handed to a writer thread (so compression and disk I/O overlap the next
chunk's forward passes) and, once every layer's part of it is on disk, its index is added
to the group attribute ``complete_chunks``. Memory is bounded by a few chunks, never a
whole layer. A rerun after a crash keeps the chunks already complete and computes the
rest; the result is bit-for-bit the same as an uninterrupted run, because the batches
always fall at the same chunk boundaries and have the same size (``batch_size`` is in the
fingerprint: a net's output can differ in its last bits between batch sizes, ~1e-7 here,
and the sample store's labelling pass reruns the extraction's batches). A store written for
another model, data set, layer set or batch size (its ``fingerprint`` attribute differs) is
discarded, never reused.
"""

from __future__ import annotations

import copy
import logging
import operator
import queue
import re
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import zarr
from torch import nn

from convdp import rawchunks, sampled
from convdp.allocator import keep_freed_memory
from convdp.io import finish_zarr_writes
from convdp.models import input_channels, to_input

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: every chunk is written (write_empty_chunks), so missing ones show


#: The dtypes of stored activations (``extract.dtype``).
DTYPES = ("float32", "float16")

#: Codecs for activation chunks, by the name used in the config (``extract.compression``).
COMPRESSIONS = ("none", "lz4", "zstd")


def compressor(name: str = "none"):
    """The codec for activation chunks: ``none``, ``lz4`` or ``zstd`` (Blosc, level 1).

    Chosen from ``benchmarks/extract_speed.py --codecs`` (see benchmarks/RESULTS.md):
    activations barely compress (ReLU maps with half their values zero: 1.1–1.5× with LZ4,
    1.6× with zstd), while compressing costs the writer more CPU time than the forward pass
    can hide on a small machine, so the default is ``none``. ``zstd`` is for runs short of
    disk rather than time. A missing or truncated chunk is refused either way; garbled bytes
    in a chunk of the right size are noticed only by a codec (``lz4``, ``zstd``).
    """
    from zarr.codecs import BloscCodec

    if name not in COMPRESSIONS:
        raise ValueError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
    if name == "none":
        return None
    return BloscCodec(cname=name, clevel=1, shuffle="bitshuffle")


def feature_extractor(model: nn.Module, layers: Sequence[str],
                      smooth: Mapping[str, float] | None = None,
                      channels_first: bool = True) -> nn.Module:
    """A module returning ``{layer: output}`` for the graph nodes ``layers`` of ``model``.

    Ops that would overwrite a returned output in place (an ``nn.ReLU(inplace=True)`` right
    after a captured convolution, ``out += identity`` on a captured batch norm, ``x.relu_()``)
    are made to work out of place, or, where the net reads that memory again after the op
    (a skip connection kept before an in-place ReLU), the output is copied where it is
    computed; every other in-place op is left alone, so the forward pass costs what the
    net's own does but for those copies. Maps a net computes channels-last (N, H, W, C) — a
    Swin or ConvNeXt block's — are returned channels-first like every other
    (:class:`ChannelsFirst`; ``channels_first=False``: the bare graph module, outputs as the
    net makes them). ``smooth`` maps some of ``layers`` to a Gaussian's σ in positions: those
    outputs are returned smoothed over the positions no padding reached
    (:mod:`convdp.smoothing`).
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    from convdp.smoothing import SmoothedOutputs

    unknown = sorted(set(smooth or {}) - set(layers))
    if unknown:
        raise ValueError(f"smoothing asked for layer(s) {unknown}, which are not extracted "
                         f"(the layers are {list(layers)})")
    extractor = create_feature_extractor(model.eval(), return_nodes={name: name for name in layers})
    _protect_outputs(extractor)
    if not channels_first:
        return extractor
    extractor = ChannelsFirst(extractor)
    return SmoothedOutputs(extractor, smooth, model) if smooth else extractor


class MapLayoutError(ValueError):
    """A layer's map whose rows and columns are neither axes (2, 3) nor (1, 2) of its output."""


class ChannelsFirst(nn.Module):
    """An extractor's outputs with the maps it returns channels-last (N, H, W, C) turned
    channels-first (N, C, H, W), as every later step reads a map. Where each output's rows
    and columns sit is traced on the first batch of each input size, which that trace
    computes (:func:`convdp.receptive.run_with_axes`: no extra forward pass); an output whose
    map sits elsewhere is refused, naming the layer, and one the tracing cannot follow is
    taken as channels-first, with a warning naming the layer (a channels-last map read so
    would be stored with its axes mixed up: (N, H, W, C) as (N, W, C, H))."""

    def __init__(self, extractor: torch.fx.GraphModule):
        super().__init__()
        self.extractor = extractor
        self._axes: dict[tuple, dict] = {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from convdp.receptive import run_with_axes

        key = tuple(x.shape[1:])
        if key in self._axes:
            out = self.extractor(x)
        else:
            try:
                out, self._axes[key] = run_with_axes(self.extractor, x)
                lost = [name for name, axes in self._axes[key].items() if axes is None
                        and isinstance(out[name], torch.Tensor) and out[name].ndim == 4]
                if lost:
                    log.warning("layer(s) %s: where the rows and columns of their maps sit could "
                                "not be traced (a reshape that splits them, say); they are read "
                                "as (N, C, H, W), which a map the net computes channels-last "
                                "is not", lost)
            except Exception as exc:  # noqa: BLE001 - the tracer's failure is no net's failure
                log.warning("the layout of the maps could not be traced (%s: %s); they are read "
                            "as (N, C, H, W)", type(exc).__name__, exc)
                self._axes[key] = {}
                out = self.extractor(x)
        for name, axes in self._axes[key].items():
            if axes is None or out[name].ndim != 4 or axes == (2, 3):
                continue
            if axes != (1, 2):
                raise MapLayoutError(
                    f"layer {name!r}: its map's rows and columns are axes {axes} of its output "
                    f"{tuple(out[name].shape)}, neither (N, C, H, W) nor (N, H, W, C)")
            out[name] = out[name].permute(0, 3, 1, 2)
        return out


_OUT_OF_PLACE = {operator.iadd: operator.add, operator.isub: operator.sub,
                 operator.imul: operator.mul, operator.itruediv: operator.truediv}


#: Modules whose output may be their input itself or a view of it (a dropout in eval mode
#: returns its input): an in-place op on their output overwrites the node before them.
_ALIAS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                  nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Flatten, nn.Unflatten)
_ALIAS_METHODS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze",
    "transpose", "permute", "t", "contiguous", "expand", "expand_as", "narrow", "select",
    "detach", "__getitem__", "movedim", "swapaxes", "swapdims", "as_strided", "unfold",
})
_ALIAS_FUNCTIONS = frozenset({
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose,
    torch.permute, torch.narrow, torch.select, torch.detach, torch.movedim, operator.getitem,
    nn.functional.dropout, nn.functional.dropout1d, nn.functional.dropout2d,
    nn.functional.dropout3d, nn.functional.alpha_dropout, nn.functional.feature_alpha_dropout,
})


def _aliases(graph_module: torch.fx.GraphModule, node: torch.fx.Node) -> list[torch.fx.Node]:
    """``node`` and the nodes whose output may share its memory (views of it, an
    ``nn.Identity`` or a dropout passing it on, and so on, transitively)."""
    found, todo = [node], [node]
    while todo:
        for user in todo.pop().users:
            if user in found:
                continue
            if _is_alias(graph_module, user):
                found.append(user)
                todo.append(user)
    return found


def _is_alias(graph_module: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    """Whether ``node``'s output may share its (first) input's memory (:func:`_aliases`)."""
    return ((node.op == "call_module"
             and isinstance(graph_module.get_submodule(node.target), _ALIAS_MODULES))
            or (node.op == "call_method" and node.target in _ALIAS_METHODS)
            or (node.op == "call_function" and node.target in _ALIAS_FUNCTIONS))


def _read_after_in_place(graph_module: torch.fx.GraphModule, captured: torch.fx.Node) -> bool:
    """Whether a node reads the memory of ``captured`` (through any alias of the tensor it
    shares memory with) after an op has written it in place. Switching that op out of place
    (:func:`_out_of_place`) would hand such a reader the values before the write, not the
    net's: ``skip = x; x = relu_inplace(x); return conv(x) + skip`` would add the unrectified
    ``x``, so a later layer would differ from the net's own, and only when ``x`` is extracted.
    Readers of the write's own output (and its views: an in-place dropout's) read the written
    values either way and do not count."""
    root = captured
    while _is_alias(graph_module, root) and root.args and isinstance(root.args[0], torch.fx.Node):
        root = root.args[0]
    group = _aliases(graph_module, root)
    order = {node: i for i, node in enumerate(graph_module.graph.nodes)}
    writers = [user for alias in group for user in alias.users
               if _in_place(graph_module, user, alias)]
    if not writers:
        return False
    written = {node for w in writers for node in (w, *_aliases(graph_module, w))}
    first = min(order[w] for w in writers)
    return any(order[reader] > first for alias in group if alias not in written
               for reader in alias.users if reader.op != "output")


def _in_place(graph_module: torch.fx.GraphModule, user: torch.fx.Node,
              source: torch.fx.Node) -> bool:
    """Whether ``user`` would overwrite ``source``, its input (what :func:`_out_of_place`
    switches)."""
    if user.op == "call_module":
        return getattr(graph_module.get_submodule(user.target), "inplace", None) is True
    if user.op == "call_function":
        return (user.kwargs.get("inplace") is True
                or _out_of_place_function(user, source) is not None)
    return (user.op == "call_method" and user.target.endswith("_")
            and not user.target.startswith("_") and user.args[0] is source)


def _out_of_place_function(user: torch.fx.Node, source: torch.fx.Node):
    """The out-of-place twin of ``user``'s function where it writes ``source`` in place
    (``operator.iadd`` on it: ``operator.add``; ``torch.relu_``: ``torch.relu``), else None."""
    if user.target in _OUT_OF_PLACE and user.args[0] is source:
        return _OUT_OF_PLACE[user.target]
    name = getattr(user.target, "__name__", "")
    if name.endswith("_") and not name.startswith("_") and hasattr(torch, name[:-1]):
        return getattr(torch, name[:-1])
    return None


def _protect_outputs(graph_module: torch.fx.GraphModule) -> None:
    """Switch the in-place ops that take a returned node, or a view or pass-through of it
    (:func:`_aliases`), as input to their out-of-place form; where the net reads that memory
    again after such an op (:func:`_read_after_in_place`), return a copy of the node made
    where it is computed instead and leave the net's ops as they are; then
    :func:`_guard_outputs`."""
    output = next(node for node in graph_module.graph.nodes if node.op == "output")
    for captured in list(output.all_input_nodes):
        if _read_after_in_place(graph_module, captured):
            with graph_module.graph.inserting_after(captured):
                copied = graph_module.graph.call_method("clone", (captured,))
            output.args = (torch.fx.node.map_arg(
                output.args[0], lambda node, c=captured, k=copied: k if node is c else node),)
            continue
        for alias in _aliases(graph_module, captured):
            for user in list(alias.users):
                _out_of_place(graph_module, user, alias)
    _guard_outputs(graph_module, output)
    graph_module.recompile()


def _out_of_place(graph_module: torch.fx.GraphModule, user: torch.fx.Node,
                  source: torch.fx.Node) -> None:
    """Make ``user`` work out of place if it would overwrite ``source``, its input
    (:func:`_in_place`)."""
    if not _in_place(graph_module, user, source):
        return
    if user.op == "call_module":  # a copy of the module: the user's net stays as is
        module = copy.copy(graph_module.get_submodule(user.target))
        module.inplace = False
        user.target = user.target.replace(".", "_") + "_out_of_place"
        graph_module.add_submodule(user.target, module)
    elif user.op == "call_function":
        if user.kwargs.get("inplace") is True:
            user.kwargs = {**user.kwargs, "inplace": False}
        user.target = _out_of_place_function(user, source) or user.target
    else:
        user.target = user.target[:-1]


def _version(x):
    """A tensor's version counter (bumped by every in-place op on it or a view of it);
    None for anything else, and for inference-mode tensors, which keep none."""
    return x._version if isinstance(x, torch.Tensor) and not x.is_inference() else None


def _unchanged(outputs: dict, versions: dict) -> dict:
    """``outputs``, after checking that no in-place op changed one since it was computed."""
    for name, version in versions.items():
        if version is not None and _version(outputs[name]) != version:
            raise RuntimeError(
                f"layer {name!r}: an in-place operation later in the net changed its output "
                "before it could be stored, so it would not be the layer's output; make that "
                "operation out of place (e.g. inplace=False) or extract another layer"
            )
    return outputs


def _guard_outputs(graph_module: torch.fx.GraphModule, output: torch.fx.Node) -> None:
    """Record each returned tensor's version counter where it is computed and check it at
    the end (:func:`_unchanged`): an in-place op that :func:`_protect_outputs` did not
    foresee (through a view or module it does not know) is an error, not a wrong layer."""
    returned = output.args[0]
    if not isinstance(returned, dict):
        return
    graph = graph_module.graph
    versions = {}
    for name, node in returned.items():
        with graph.inserting_after(node):
            versions[name] = graph.call_function(_version, (node,))
    with graph.inserting_before(output):
        checked = graph.call_function(_unchanged, (returned, versions))
    output.args = (checked,)


def output_nodes(graph_module: torch.fx.GraphModule) -> dict[str, torch.fx.Node]:
    """``{layer: node}`` of the nodes an extractor (:func:`feature_extractor`, unsmoothed)
    returns, behind the check :func:`_guard_outputs` puts before its output."""
    returned = next(n for n in graph_module.graph.nodes if n.op == "output").args[0]
    if isinstance(returned, torch.fx.Node) and returned.target is _unchanged:
        returned = returned.args[0]
    return returned


def to_channels_last(name: str, out: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, H, W, C); (N, C) → (N, 1, 1, C)."""
    if out.ndim == 4:
        return out.permute(0, 2, 3, 1)
    if out.ndim == 2:
        return out[:, None, None, :]
    raise ValueError(f"layer {name!r} has output shape {tuple(out.shape)}; expected (N,C,H,W) or (N,C)")


def check_finite(name: str, out: torch.Tensor, offset: int) -> None:
    """Raise a ValueError naming the layer and image if ``out`` holds NaN or Inf.

    Called on the activations already in the stored dtype, so a float16 overflow is caught.
    """
    if bool(torch.isfinite(out.sum(dtype=torch.float32))):  # one cheap pass; exact check if not
        return
    bad = ~torch.isfinite(out.reshape(len(out), -1)).all(dim=1)
    if bool(bad.any()):
        idx = (torch.nonzero(bad).flatten() + offset).tolist()
        hint = (" (as float16: values beyond ±65504 overflow; use dtype float32)"
                if out.dtype == torch.float16 else "")
        raise ValueError(
            f"layer {name!r} produced NaN or Inf activations{hint} for image(s) {idx[:10]}"
            f"{' …' if len(idx) > 10 else ''}; check the weights and the input normalisation"
        )


def reusable_store(path: Path, fingerprint: dict) -> zarr.Group | None:
    """The existing store at ``path``, opened for writing, if it was written with
    ``fingerprint``; else None. Nothing is changed or removed (see :func:`ready_store`)."""
    if not path.exists():
        return None
    try:
        group = zarr.open_group(path, mode="r+")
        if group.attrs.get("fingerprint") == fingerprint:
            return group
        log.warning("%s was written with other inputs (model, data set, layers, input "
                    "normalisation or store settings): it will be replaced", path)
    except Exception as exc:  # noqa: BLE001 - any unreadable store is replaced
        log.warning("%s is unreadable (%s): it will be replaced", path, exc)
    return None


def ready_store(path: Path, group: zarr.Group | None) -> zarr.Group | None:
    """Make ``path`` ready for writing after :func:`reusable_store` gave ``group``: a reused
    store loses the temporary files a killed writer may have left of the chunk it was
    writing (Zarr's ``*.partial``); anything else at ``path`` is removed (None: a new store
    is to be created)."""
    if group is not None:
        for partial in path.rglob("*.partial"):
            partial.unlink()
    elif path.exists():
        shutil.rmtree(path)
    return group


def open_store(path: Path, fingerprint: dict) -> zarr.Group | None:
    """The existing store at ``path`` if it was written with ``fingerprint``, ready to resume;
    else None, with anything at ``path`` removed."""
    return ready_store(path, reusable_store(path, fingerprint))


class _ChunkWriter:
    """A writer thread: writes finished chunks while the next one is computed.

    A failed write (a full disk, say) is re-raised in the main thread naming the store,
    layer and chunk; the chunk is then not recorded as complete.
    """

    #: Sets of chunk buffers in circulation: one being filled, one queued, one being written.
    n_buffers = 3

    def __init__(self, group: zarr.Group, write, store_path: Path):
        self.group, self.write, self.store_path = group, write, store_path
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.free: queue.Queue = queue.Queue()  # buffers written out, ready to be filled again
        self.allocated = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            index, start, stop, outputs = item
            where = ["the attribute complete_chunks"]
            try:
                self.write(index, start, stop, outputs, where)  # where[0]: the layer it writes
                self.free.put(outputs)
                where[0] = "the attribute complete_chunks"
                done = sorted({*self.group.attrs.get("complete_chunks", []), index})
                self.group.attrs["complete_chunks"] = done
            except OSError as exc:
                what = where[0]
                finish_zarr_writes()  # nothing of this chunk is written after the error shows
                self.error = OSError(
                    exc.errno, f"could not write {what}, chunk {index} (images {start}-{stop - 1}) "
                    f"to {self.store_path}: {exc.strerror or exc}"
                )
                self.error.__cause__ = exc
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                self.error = exc

    def buffers(self, shapes: dict[str, tuple[int, ...]], dtype: str) -> dict[str, np.ndarray]:
        """One chunk's output buffers: reused once written (fresh pages cost page faults).
        A new set is made only while none is free: asked for after a chunk's first batch,
        as the extraction does, the chunk before it is usually written by then, and one set
        serves the whole run."""
        if self.free.empty() and self.allocated < self.n_buffers:
            self.allocated += 1
            return {name: rawchunks.aligned_empty(shape, dtype) for name, shape in shapes.items()}
        while True:
            self.raise_error()
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError(f"the writer of {self.store_path} stopped") from None

    def put(self, item) -> None:
        self.raise_error()
        self.queue.put(item)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


@torch.no_grad()
def extract_activations(
    model: nn.Module,
    images,
    layers: Sequence[str],
    store_path: str | Path,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    fingerprint: dict,
    batch_size: int = 128,
    chunk_size: int = 256,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    compression: str = "none",
    progress: bool = True,
    sample: dict | None = None,
    smooth: Mapping[str, float] | None = None,
    labels: np.ndarray | None = None,
) -> dict:
    """Run ``model`` over ``images`` and write the outputs of ``layers`` to ``store_path``.

    Parameters
    ----------
    model : the net (its in-place activations are switched off for extraction)
    images : array-like (N, H, W, C) uint8 supporting slicing (a NumPy or Zarr array)
    layers : graph node names (see :func:`convdp.models.layer_names`)
    store_path : the Zarr group to write (created, resumed, or replaced)
    mean, std : per-channel input normalisation on the 0–1 scale
    fingerprint : identifies model and data; with the layers, store settings and ``mean``,
        ``std`` added, a store with another one is discarded
    batch_size, chunk_size : images per forward pass and per stored chunk
    device : a torch device
    dtype : ``float32`` or ``float16`` for the stored arrays
    compression : codec of new stores, see :func:`compressor`
    sample : None for a full store; else the plan of a sample store (see :mod:`convdp.sampled`)
    smooth : {layer: σ}: those layers' maps are stored smoothed (:mod:`convdp.smoothing`)
    labels : the images' classes (N,) or None: a sample store keeps the positions of the
        example images chosen from them (:func:`convdp.sampled.example_images`)

    The process keeps freed memory for reuse from then on (:mod:`convdp.allocator`): each
    batch's outputs reuse the last one's pages.

    Returns
    -------
    dict with, per layer, ``shape`` (N, H, W, C) and the run's statistics.
    """
    store_path = Path(store_path)
    n = images.shape[0]
    if n == 0:
        raise ValueError("no images to extract activations from")
    first = np.asarray(images[0:1])  # any sliceable array-like: its first image, read once
    if first.dtype != np.uint8:  # floats in [0, 1] were divided by 255 once more
        raise ValueError(f"the images are {first.dtype}: extract_activations takes uint8 "
                         "images (N, H, W, C) of 0-255, as a data set store holds them")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
    codec = compressor(compression)
    if dtype not in DTYPES:  # an integer dtype would store the activations truncated
        raise ValueError(f"unknown activation dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    device = torch.device(device)
    keep_freed_memory()  # each batch's outputs in the last one's memory (convdp.allocator)
    smooth = {name: float(sigma) for name, sigma in (smooth or {}).items()}
    extractor = feature_extractor(model, layers, smooth).to(device)
    graph_module = getattr(extractor, "extractor", extractor)  # SmoothedOutputs wraps it
    in_ch = input_channels(graph_module, getattr(graph_module, "graph", None))
    if in_ch is not None and first.shape[-1] != in_ch:
        raise ValueError(
            f"the images have {first.shape[-1]} channel(s) but the model's first convolution "
            f"takes {in_ch}"
        )
    # the input normalisation too: a random-weights control's weights stay the same when
    # its normalisation (the source images' statistics, the config's normalize) changes
    fingerprint = {**fingerprint, "layers": list(layers), "format": FORMAT_VERSION,
                   "chunk_size": chunk_size, "batch_size": batch_size, "dtype": dtype,
                   "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    if sample is not None:
        fingerprint |= {"store": "sample", "sample": sample, "selection": sampled.SELECTION}
    if smooth:  # only when set: stores written before smoothing existed stay valid
        fingerprint["smooth"] = smooth
    if compression != "none":  # likewise: a store of another codec is written anew
        fingerprint["compression"] = compression

    n_chunks = -(-n // chunk_size)
    group = reusable_store(store_path, fingerprint)
    done = set(group.attrs.get("complete_chunks", [])) if group is not None else set()
    todo = [i for i in range(n_chunks) if i not in done]
    # The first batch to compute gives the output shapes (no extra forward pass for them);
    # it runs before the store is touched, so a net that fails leaves the store as it was.
    first_start = todo[0] * chunk_size if todo else 0
    first_stop = min(first_start + (min(batch_size, chunk_size) if todo else 1), n)
    try:
        pending = extractor(
            to_input(np.asarray(images[first_start:first_stop]), mean, std).to(device))
    except RuntimeError as exc:  # torch's words for images smaller than a layer's window
        if not re.search(r"too small|smaller than|can't be greater than|should be less than",
                         str(exc)):
            raise
        h, w = images.shape[1:3]
        raise ValueError(
            f"the net's forward pass to layers {list(layers)} fails on the {h}×{w} images: "
            f"{(str(exc) or type(exc).__name__).splitlines()[0]} (images too small for these "
            "layers? set the data set's size, or choose earlier layers)") from exc
    shapes = {name: (n, *to_channels_last(name, pending[name]).shape[1:]) for name in layers}
    group = ready_store(store_path, group)
    indices = None  # a new sample store's indices, kept for its writer
    if group is None:
        group = zarr.open_group(store_path, mode="w")
        if sample is not None:
            indices = sampled.create(group, shapes, sample, chunk=chunk_size, dtype=dtype,
                                     codec=codec, labels=labels)
        for name, shape in shapes.items() if sample is None else ():
            group.create_array(
                name, shape=shape, chunks=(min(chunk_size, n), *shape[1:]), dtype=dtype,
                compressors=codec, fill_value=0,
                attributes={"layer": name, "layout": "NHWC"},
            )
        group.attrs.update({"fingerprint": fingerprint, "complete_chunks": [], "complete": False})
    if sample is not None:
        write = sampled.writer(group, shapes, chunk_size, indices)
    else:
        # Uncompressed chunks are written as their files directly (see convdp.rawchunks).
        direct = rawchunks.DirectWriter()
        chunks = {name: rawchunks.WholeChunks(group[name], direct) for name in layers}

        def write(index, start, stop, outputs, where):
            for name, data in outputs.items():
                where[0] = f"layer {name!r}"
                chunks[name].write(index, data, stop - start)
    if done:
        log.info("%s: resuming, %d of %d chunks already complete", store_path, len(done), n_chunks)

    from tqdm import tqdm

    start_time = time.perf_counter()
    writer = _ChunkWriter(group, write, store_path)
    buffer_shapes = {name: (min(chunk_size, n), *shapes[name][1:]) for name in layers}
    bar = tqdm(total=sum(min(chunk_size, n - i * chunk_size) for i in todo), unit="img",
               desc=f"extract {store_path.name}", disable=not progress)
    try:
        for index in todo:
            start, stop = index * chunk_size, min((index + 1) * chunk_size, n)
            chunk_images = np.asarray(images[start:stop])
            outputs = None
            for b in range(0, stop - start, batch_size):
                if pending is not None:  # todo[0]'s first batch, computed above for the shapes
                    result, pending = pending, None
                else:
                    result = extractor(to_input(chunk_images[b : b + batch_size], mean, std).to(device))
                if outputs is None:  # asked for now, the last chunk's are likely written by now
                    outputs = writer.buffers(buffer_shapes, dtype)
                count = min(batch_size, stop - start - b)
                for name in layers:
                    out = to_channels_last(name, result[name]).to(getattr(torch, dtype))
                    check_finite(name, out, start + b)
                    # torch's copy runs on every intra-op thread (numpy's on one): 2x here
                    torch.from_numpy(outputs[name][b : b + count]).copy_(out)
                bar.update(count)
            writer.put((index, start, stop, outputs))
    finally:
        bar.close()
        writer.close()
    group.attrs["complete"] = True
    seconds = time.perf_counter() - start_time
    return {
        "layers": {name: {"shape": list(shapes[name]), "dtype": dtype} for name in layers},
        "n_images": n,
        "n_chunks": n_chunks,
        "chunks_resumed": len(done),
        "seconds": seconds,
        "device": str(device),
        "store_kind": "full" if sample is None else "sample",
        "chunk_size": chunk_size,
        "batch_size": batch_size,
        "smooth": smooth,
    }


def open_activations(store_path: str | Path, fingerprint: dict | None = None) -> zarr.Group:
    """Open an activation store for reading; refuse one that is incomplete or not ours.

    ``fingerprint`` (from the extraction manifest) must match the store's, so a store left by
    another model or data set is never silently used.
    """
    from convdp.storage import extract_again

    store_path = Path(store_path)
    if not store_path.exists():
        raise ValueError(f"{store_path} does not exist (an activation store deleted after its "
                         f"extraction?); {extract_again(store_path)}")
    try:
        group = zarr.open_group(store_path, mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{store_path} is not a readable activation store: {exc}") from exc
    # no fingerprint (an extraction writes it last) and none of an extraction's arrays (the
    # sample store's groups, or the full store's channels-last ones): no activation store
    if "fingerprint" not in attrs and not (
            {"index", "positions", "pooled"} & set(group.group_keys())
            or any(a.attrs.get("layout") == "NHWC" for _, a in group.arrays())):
        raise ValueError(f"{store_path} is not an activation store (a data set store, or "
                         "another Zarr group: it holds "
                         f"{', '.join(sorted(group.keys())[:5]) or 'nothing'}); activation "
                         "stores are results/activations/{model}/{dataset}.zarr")
    if not attrs.get("complete"):
        raise ValueError(
            f"{store_path} is incomplete ({len(attrs.get('complete_chunks', []))} chunks written); "
            f"{extract_again(store_path)}"
        )
    if fingerprint is not None and {k: attrs.get("fingerprint", {}).get(k) for k in fingerprint} != fingerprint:
        raise ValueError(
            f"{store_path} was written for another model or data set "
            f"(its fingerprint {attrs.get('fingerprint')} differs from {fingerprint}); "
            f"{extract_again(store_path)}"
        )
    if attrs.get("fingerprint", {}).get("format", 1) >= 2:
        for name, missing, total in missing_chunks(group)[:1]:
            # a sample store's arrays are index/, positions/ and pooled/ {layer}
            part = f" (its {name} array)" if "/" in name else ""
            raise ValueError(
                f"{store_path}: layer {name.rpartition('/')[2]!r} is damaged{part}: {missing} "
                f"of its {total} chunk files are missing; delete the store and "
                f"{extract_again(store_path)}"
            )
    return group


def missing_chunks(group: zarr.Group) -> list[tuple[str, int, int]]:
    """``(path, missing, chunks)`` of each array of ``group``, at any depth, that lacks chunk
    files. A store of format 2 writes every chunk, zeros included, so a missing file is a
    lost one: zarr would read it as the fill value (0 for activations, -1 for labels)."""
    return [(name, node.nchunks - node.nchunks_initialized, node.nchunks)
            for name, node in group.members(max_depth=None)
            if isinstance(node, zarr.Array) and node.nchunks_initialized < node.nchunks]
