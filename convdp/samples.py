"""From a layer's activations (N, H, W, C) to the samples that are clustered.

- ``position`` mode (the paper's): every spatial position's C-dimensional channel vector is a
  sample, (N, H, W, C) → (N·H·W, C), a free reshape of the channels-last layout. Sample
  ``i`` is image ``i // (H·W)``, row ``(i // W) % H``, column ``i % W``.
- ``image`` mode: one vector per image, the spatial mean, (N, C).

The activations are read one stored chunk at a time, so a layer larger than memory can be
subsampled for fitting and then labelled in chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

MODES = ("position", "image")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def n_samples(shape: tuple[int, ...], mode: str) -> int:
    """How many samples a layer of ``shape`` (N, H, W, C) gives in ``mode``."""
    n, h, w, _ = shape
    return n * h * w if check_mode(mode) == "position" else n


def chunk_size(array) -> int:
    """Images per stored chunk of ``array`` (N, H, W, C); the whole array for a NumPy array."""
    n = array.shape[0]
    return int(array.chunks[0]) if hasattr(array, "chunks") else max(n, 1)


def chunk_bounds(n: int, step: int, start: int = 0, stop: int | None = None) -> list[int]:
    """Block boundaries over images ``[start, stop)`` that never cross a multiple of ``step``.

    ``chunk_bounds(120, 50)`` is ``[0, 50, 100, 120]``; ``chunk_bounds(120, 50, 30, 110)`` is
    ``[30, 50, 100, 110]``: every block lies inside one stored chunk of ``step`` images.
    """
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise ValueError(f"image range [{start}, {stop}) is not within the {n} images")
    if start == stop:
        return [start]
    inner = range((start // step + 1) * step, stop, step)
    return [start, *inner, stop]


def image_chunks(
    array, step: int | None = None, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, block)`` over the images of ``array`` (N, H, W, C), one chunk each.

    ``start``/``stop`` restrict it to images ``[start, stop)``; blocks still end at the
    multiples of ``step`` (the stored chunks), so a range aligned to the chunks reads each
    of its chunks whole, once.
    """
    n = array.shape[0]
    step = step or chunk_size(array)
    bounds = chunk_bounds(n, step, start, stop)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        try:
            block = np.asarray(array[start:stop])
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged chunk: name the store and layer
            if not hasattr(array, "store_path"):
                raise
            raise ValueError(
                f"cannot read images {start}-{stop - 1} of layer {array.basename!r} from "
                f"{array.store_path}: a stored chunk is damaged or truncated "
                f"({type(exc).__name__}: {exc}); delete the store and rerun extract_activations"
            ) from exc
        yield start, stop, block


POOL_BUFSIZE = 1 << 18
"""Elements of NumPy's cast buffer while :func:`to_samples` pools (its default: 8,192)."""


def to_samples(block: np.ndarray, mode: str) -> np.ndarray:
    """(n, H, W, C) activations → samples: (n·H·W, C) for ``position``, (n, C) for ``image``."""
    if check_mode(mode) == "position":
        return block.reshape(-1, block.shape[-1])
    # A float64 sum position by position, whatever the buffer NumPy casts through (the same
    # bits from both stores); a buffer 32x NumPy's default: ResNet-18's relu, 16 images of
    # 112 x 112 x 64, 10.1 -> 7.7 ms, the five block outputs 15 -> 11 ms (per thread setting)
    old = np.setbufsize(POOL_BUFSIZE)
    try:
        return block.mean(axis=(1, 2), dtype=np.float64).astype(block.dtype)
    finally:
        np.setbufsize(old)


def iter_samples(
    array, mode: str, step: int | None = None, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """All samples of a layer (of images ``[start, stop)``) in order, one stored chunk of
    images at a time."""
    if hasattr(array, "iter_samples"):  # a sample store (convdp.sampled): image mode only
        yield from array.iter_samples(mode, step, start, stop)
        return
    for _, _, block in image_chunks(array, step, start, stop):
        yield to_samples(block, mode)


def subsample(index: np.ndarray | int, max_samples: int | None, seed: int) -> np.ndarray:
    """A seeded random subset (sorted) of at most ``max_samples`` of ``index``.

    ``index`` may be a count ``n``: the same draw as over ``np.arange(n)`` (NumPy draws the
    positions, then takes them from the array), without holding that array.
    """
    if np.ndim(index) == 0:
        n = int(index)
        if max_samples is None or n <= max_samples:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(n, size=max_samples, replace=False)).astype(np.int64)
    index = np.asarray(index, np.int64)
    if max_samples is None or len(index) <= max_samples:
        return index
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(index, size=max_samples, replace=False))


def read_samples(array, mode: str, index: np.ndarray) -> np.ndarray:
    """The samples at the sorted indices ``index`` of a layer (N, H, W, C), chunk by chunk."""
    index = np.asarray(index, np.int64)
    if hasattr(array, "read_samples"):  # a sample store (convdp.sampled)
        return array.read_samples(mode, index)
    per_image = n_samples(array.shape, mode) // array.shape[0]
    parts = []
    for start, stop, block in image_chunks(array):
        lo, hi = np.searchsorted(index, [start * per_image, stop * per_image])
        if hi > lo:
            parts.append(to_samples(block, mode)[index[lo:hi] - start * per_image])
    if not parts:
        return np.empty((0, array.shape[-1]), np.float32)
    return np.concatenate(parts)


def fit_subset(array, mode: str, max_samples: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subset of at most ``max_samples`` samples, read chunk by chunk.

    Returns ``(X, index)``: X (n_fit, C) and the sorted sample indices it holds.
    """
    index = subsample(n_samples(array.shape, mode), max_samples, seed)
    return read_samples(array, mode, index), index
