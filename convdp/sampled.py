"""The sample store (config ``extract.store: sample``): only the activations that are read.

A full store keeps every layer's whole output (N, H, W, C). Of a position-mode layer the
fits read only a seeded subset of at most ``preprocess.max_samples`` positions, and the
transfer scores two more seeded subsets and a few example images; image mode reads one
pooled vector per image. A sample store keeps, per layer,

- ``index/{layer}``: the sorted flat position indices kept (:func:`position_index`: the
  union of exactly the draws :func:`convdp.samples.fit_subset`,
  :func:`convdp.transfer.scores.layer_shift` and the ``mmd2`` baseline
  (:func:`convdp.transfer.baselines.baseline_scores`) make, so both stores give the same
  fits and scores);
- ``positions/{layer}``: their channel vectors, (n_chunks, R, C): row block ``k`` holds the
  kept positions of image chunk ``k`` (``counts`` attribute), so each image chunk writes
  exactly one stored chunk and a resumed extraction never rewrites a finished one;
- ``pooled/{layer}``: the spatial mean of every image (N, C), computed from the activations
  in the stored dtype exactly as :func:`convdp.samples.to_samples` does.

:class:`SampledLayer` reads it back with the interface the fits and transfer scores use
(``shape``, ``chunks``, ``read_samples``, image-mode ``iter_samples``,
``get_orthogonal_selection`` of the example images, the atlas's ``position_blocks``); anything
else asks for the full store.
The label maps of every position come from the labelling pass (:mod:`convdp.labelling`).
"""

from __future__ import annotations

import numpy as np

from convdp.draws import mmd2_draw, score_draw
from convdp.samples import check_mode, subsample, to_samples

SELECTION = 2
"""The version of the choice of kept positions, in a sample store's fingerprint: a store made
under another is extracted anew (2: the example images chosen by class, not evenly spaced)."""


def example_images(n_images: int, n_examples: int, labels: np.ndarray | None = None
                   ) -> np.ndarray:
    """The images (sorted indices) whose label maps a figure shows: the transfer figure's
    target images (as transfer_scores picks them) and the label-map figure's.

    ``n_examples`` spread evenly over the data set; where it has ``labels`` (n_images,), the
    first image of each of ``n_examples`` classes spread over its classes (then more, spread,
    where it has fewer classes). Evenly spaced indices alone can show one class only: the
    digits come class by class in turn, so every 300th image of the source was a 0."""
    n = min(n_examples, n_images)
    if labels is None:
        return np.linspace(0, n_images - 1, n).astype(int)
    classes, first = np.unique(labels, return_index=True)
    chosen = first[np.unique(np.linspace(0, len(classes) - 1, min(n, len(classes))).astype(int))]
    if n > len(chosen):
        rest = np.setdiff1d(np.arange(n_images), chosen)
        chosen = np.concatenate([chosen, rest[np.linspace(0, len(rest) - 1,
                                                          n - len(chosen)).astype(int)]])
    return np.sort(chosen).astype(int)


def position_index(shape, plan: dict, labels: np.ndarray | None = None) -> np.ndarray:
    """Sorted flat indices of the positions of a layer of ``shape`` (N, H, W, C) that the fits
    and the transfer scores read, for ``plan``: ``modes``, ``max_samples`` and ``seed`` (the
    fits), ``transfer`` (None, or ``mode``, ``role`` source/target, ``max_samples``,
    ``n_examples``); ``labels``: the data set's classes (N,) or None, for the example images
    (:func:`example_images`)."""
    n, h, w, _ = shape
    total = n * h * w
    fit_index = subsample(total, plan["max_samples"], plan["seed"])
    parts = [fit_index] if "position" in plan["modes"] else []
    t = plan.get("transfer")
    if t and t["mode"] == "position":
        role = t["role"]
        parts.append(score_draw(total, role, plan["seed"], t["max_samples"], fit_index)[0])
        parts.append(mmd2_draw(total, role, plan["seed"]))
        if role == "target":
            pick = example_images(n, t["n_examples"], labels)
            parts.append((pick[:, None] * (h * w) + np.arange(h * w)).ravel())
    if not parts:
        return np.empty(0, np.int64)
    # np.unique's hashing took 4 ms a layer here (69,000 indices); sorting, 1 ms
    index = np.sort(np.concatenate(parts).astype(np.int64))
    return index[np.concatenate(([True], index[1:] != index[:-1]))]


def chunk_rows(index: np.ndarray, per_image: int, n: int, chunk: int) -> np.ndarray:
    """Offsets (n_chunks + 1,) into ``index`` of the kept positions of each image chunk."""
    edges = np.minimum(np.arange(0, n + chunk, chunk), n)[: -(-n // chunk) + 1] * per_image
    return np.searchsorted(index, edges).astype(np.int64)


def create(group, shapes: dict, plan: dict, *, chunk: int, dtype: str, codec,
           labels: np.ndarray | None = None) -> dict:
    """Create the sample store's arrays in ``group`` (layer ``shapes`` (N, H, W, C); ``labels``
    of the images, or None); returns each layer's index (what :func:`writer` reads back from a
    store it did not create)."""
    indices = {}
    for name, shape in shapes.items():
        n, h, w, c = shape
        index = indices[name] = position_index(shape, plan, labels)
        offsets = chunk_rows(index, h * w, n, chunk)
        rows = max(int(np.diff(offsets).max(initial=0)), 1)
        # every chunk written, zeros too: a missing file is a lost one (extract.missing_chunks)
        group.create_array(f"index/{name}", data=index, compressors=None,
                           config={"write_empty_chunks": True})
        group.create_array(f"positions/{name}", shape=(len(offsets) - 1, rows, c),
                           chunks=(1, rows, c), dtype=dtype, compressors=codec, fill_value=0,
                           attributes={"counts": np.diff(offsets).tolist()})
        group.create_array(f"pooled/{name}", shape=(n, c), chunks=(min(chunk, n), c),
                           dtype=dtype, compressors=codec, fill_value=0)
    return indices


def writer(group, shapes: dict, chunk: int, indices: dict | None = None):
    """The chunk writer of a sample store: ``write(index, start, stop, outputs, where)``
    stores chunk ``index``'s kept positions and pooled vectors of every layer (``indices``:
    :func:`create`'s, else read from the store).

    Uncompressed, each is written as its chunk file directly (:mod:`convdp.rawchunks`, as a
    full store's chunks are): through Zarr the writer took 57-106 ms a chunk of 16 images of
    ResNet-18's five layers (``relu``'s 4.5 MB chunk of positions alone 25 ms), beside the forward
    pass; directly 45-61 ms, of which the pooled vectors' means are ~22 ms and most of the
    rest is waiting for the disk."""
    from convdp import rawchunks

    direct = rawchunks.DirectWriter()
    layers = {}
    for name, (n, h, w, _) in shapes.items():
        index = indices[name] if indices is not None else group[f"index/{name}"][:]
        positions = rawchunks.WholeChunks(group[f"positions/{name}"], direct)
        pooled = rawchunks.WholeChunks(group[f"pooled/{name}"], direct)
        # each chunk's buffer, reused (a write is done when it returns)
        buffers = tuple(rawchunks.aligned_empty(c.array.chunks, c.array.dtype)
                        for c in (positions, pooled))
        layers[name] = (index, chunk_rows(index, h * w, n, chunk), h * w, positions, pooled,
                        buffers)

    def write(k: int, start: int, stop: int, outputs: dict, where: list) -> None:
        for name, data in outputs.items():
            where[0] = f"layer {name!r}"
            index, offsets, per_image, positions, pooled, (rows, means) = layers[name]
            block = data[: stop - start]
            kept = index[offsets[k]:offsets[k + 1]] - start * per_image
            # the indices are the chunk's own: "clip" takes them into the buffer directly
            np.take(block.reshape(-1, block.shape[-1]), kept, axis=0, out=rows[0, : len(kept)],
                    mode="clip")
            rows[0, len(kept):] = 0
            means[: stop - start] = to_samples(block, "image")
            positions.write(k, rows, 1)
            pooled.write(k, means, stop - start)

    return write


class SampledLayer:
    """One layer of a sample store, read like the full layer where the stored samples allow."""

    def __init__(self, group, name: str, shape, chunk: int):
        self.basename, self.shape = name, tuple(shape)
        n, h, w, c = self.shape
        self.chunks = (min(chunk, n), h, w, c)
        self.index = group[f"index/{name}"][:]
        self.positions = group[f"positions/{name}"]
        self.pooled = group[f"pooled/{name}"]
        self.dtype = self.pooled.dtype
        self.offsets = chunk_rows(self.index, h * w, n, chunk)

    def read_samples(self, mode: str, index: np.ndarray) -> np.ndarray:
        """The samples at the sorted indices ``index``: pooled vectors, or stored positions."""
        index = np.asarray(index, np.int64)
        if check_mode(mode) == "image":
            return np.asarray(self.pooled[:])[index]
        rows = np.searchsorted(self.index, index)
        ok = rows < len(self.index)
        ok[ok] = self.index[rows[ok]] == index[ok]
        if not ok.all():
            raise ValueError(
                f"layer {self.basename!r}: position {int(index[~ok][0])} is not in the sample "
                "store (extract.store: sample keeps only the positions the fits and transfer "
                "scores draw); use extract.store: full to read others")
        out = np.empty((len(index), self.shape[-1]), self.dtype)
        chunk_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(chunk_of):
            sel = chunk_of == k
            out[sel] = self.positions[int(k)][rows[sel] - self.offsets[k]]
        return out

    def iter_samples(self, mode: str, step=None, start: int = 0, stop: int | None = None):
        if check_mode(mode) != "image":
            raise ValueError(f"layer {self.basename!r}: a sample store holds no full position-"
                             "mode layer; label it with the labelling pass (convdp.labelling)")
        stop = self.shape[0] if stop is None else stop
        step = step or self.chunks[0]
        for lo in range(start, stop, step):
            yield np.asarray(self.pooled[lo:min(lo + step, stop)])

    def position_blocks(self):
        """``(start, stop, rows, x)`` per image chunk: its stored positions' vectors ``x`` and
        their flat indices ``rows`` within the chunk (the atlas's candidates)."""
        n, h, w, _ = self.shape
        step = self.chunks[0]
        for k, start in enumerate(range(0, n, step)):
            lo, hi = self.offsets[k], self.offsets[k + 1]
            x = np.asarray(self.positions[k])[: hi - lo]
            yield start, min(start + step, n), self.index[lo:hi] - start * h * w, x

    def get_orthogonal_selection(self, selection) -> np.ndarray:
        """Whole images (the transfer figure's examples), from their stored positions."""
        (pick,) = selection
        _, h, w, c = self.shape
        flat = (np.asarray(pick)[:, None] * (h * w) + np.arange(h * w)).ravel()
        return self.read_samples("position", flat).reshape(len(pick), h, w, c)
