"""Uncompressed Zarr chunks written as their raw bytes, past the page cache where possible.

An uncompressed Zarr v3 chunk (the ``bytes`` codec alone, little-endian) of a local store
is a file holding the chunk's C-order bytes, edge chunks at full size. The extraction
writes such chunks itself instead of through Zarr: the same file, byte for byte, without
Zarr's encoding calls, and with ``O_DIRECT``, so that the chunk goes from the buffer the
net's outputs were copied into to the disk without a copy into the page cache. On two
cores that copy, and the kernel's write-back of it later, took a third of ResNet-18's
forward pass (``benchmarks/extract_speed.py``); the direct write costs the CPU almost
nothing, and the writer thread waits for the disk instead.

``O_DIRECT`` needs the buffer's address, the file offset and the length aligned to the
device's logical block: buffers come from :func:`aligned_empty`, the aligned part of a
chunk is written directly and the rest (under 4 KiB) through the page cache. Where the
file system refuses ``O_DIRECT`` (``EINVAL``: tmpfs on older kernels, some network file
systems: ``EOPNOTSUPP``) or the platform has none, chunks go through the page cache.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import numpy as np
import zarr

#: Alignment of buffers, offsets and lengths for O_DIRECT: covers 512-byte and 4 KiB blocks.
ALIGN = 4096

_O_DIRECT = getattr(os, "O_DIRECT", 0)

#: What a file system without O_DIRECT answers (Linux: EINVAL; some network file systems:
#: EOPNOTSUPP).
_REFUSED = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGN` boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN, np.uint8)
    offset = (-raw.ctypes.data) % ALIGN
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def chunk_files(array: zarr.Array) -> Path | None:
    """The directory of ``array`` in its local store if its chunks are raw bytes, else None.

    Raw bytes: one ``bytes`` codec (little-endian or byte-sized) and nothing else — no
    compression, no sharding — on a little-endian machine, in a :class:`zarr.storage.LocalStore`.
    """
    from zarr.codecs import BytesCodec
    from zarr.storage import LocalStore

    meta = array.metadata
    codecs = getattr(meta, "codecs", None)
    if sys.byteorder != "little" or not isinstance(array.store, LocalStore) or codecs is None:
        return None
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if endian not in (None, "little"):
        return None
    return Path(array.store.root) / array.path


def chunk_path(array: zarr.Array, root: Path, index: int) -> Path:
    """The file of the chunk ``index`` along the first axis (the others have one chunk)."""
    key = array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))
    return root / key


class WholeChunks:
    """Whole chunks of a Zarr array along its first axis (one chunk along the others), each
    written as its file directly where the chunks are raw bytes (:func:`chunk_files`), else
    through Zarr. Every chunk gets a file, even an all-zero one, so that a missing chunk file
    means damage."""

    def __init__(self, array: zarr.Array, direct: DirectWriter) -> None:
        self.array = array.with_config({"write_empty_chunks": True})
        self.root = chunk_files(self.array)
        self.direct = direct

    def write(self, index: int, chunk: np.ndarray, rows: int) -> None:
        """Chunk ``index`` from ``chunk`` (the chunk's shape, from :func:`aligned_empty`),
        whose first ``rows`` rows are the array's; the rest, past an edge chunk's end, is
        zeroed where the whole chunk becomes a file."""
        if self.root is None:
            start = index * self.array.chunks[0]
            self.array[start : start + rows] = chunk[:rows]
            return
        chunk[rows:] = 0
        self.direct.write(chunk_path(self.array, self.root, index), chunk)


class DirectWriter:
    """Writes whole chunks to their files, ``O_DIRECT`` while the file system allows it."""

    def __init__(self) -> None:
        self.direct = bool(_O_DIRECT)

    def write(self, path: Path, chunk: np.ndarray) -> None:
        """Write ``chunk`` (the whole chunk, C-contiguous) as the file ``path``."""
        chunk = np.ascontiguousarray(chunk)
        data = memoryview(chunk).cast("B")
        path.parent.mkdir(parents=True, exist_ok=True)
        head = len(data) - len(data) % ALIGN if self.direct else 0
        if head and chunk.ctypes.data % ALIGN == 0:
            try:
                self._write_direct(path, data, head)
                return
            except OSError as exc:
                if exc.errno not in _REFUSED:
                    raise
                self.direct = False  # this file system has no O_DIRECT: buffered from now on
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)

    @staticmethod
    def _write_direct(path: Path, data: memoryview, head: int) -> None:
        """The first ``head`` bytes (a multiple of ALIGN) with O_DIRECT, the rest buffered."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT, 0o666)
        try:
            _write_all(fd, data[:head])
        finally:
            os.close(fd)
        if head < len(data):
            fd = os.open(path, os.O_WRONLY)
            try:
                _write_all(fd, data[head:], offset=head)
            finally:
                os.close(fd)


def _write_all(fd: int, data: memoryview, offset: int = 0) -> None:
    """``pwrite`` until every byte of ``data`` is at ``offset`` onwards in ``fd``."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
