"""Uncompressed chunks written as files (O_DIRECT) are the files Zarr itself writes."""

import errno
import os

import numpy as np
import pytest
import zarr

from convdp import rawchunks
from convdp.extract import extract_activations, open_activations

MEAN, STD = [0.5], [0.25]


def run(model, images, path, **kw):
    return extract_activations(
        model, images, ["relu1", "relu3"], path, mean=MEAN, std=STD,
        fingerprint={"model": "m", "data": "d"}, batch_size=8, chunk_size=16,
        progress=False, **kw,
    )


def chunk_bytes(store):
    """{relative path: bytes} of every chunk file of a store (not its metadata)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*")) if p.is_file() and "/c/" in str(p.relative_to(store))
    }


def test_chunk_files_equal_zarrs_own_byte_for_byte(digitnet, tiny_images, tmp_path, monkeypatch):
    # 40 images in chunks of 16: the last chunk is an edge chunk (8 of its 16 rows are past
    # the end); relu1's chunk (16 x 16 x 16 x 16 float32) is a multiple of 4096 bytes,
    # relu3's (16 x 4 x 4 x 64) is too, so a third layer shape is checked below.
    run(digitnet, tiny_images, tmp_path / "direct.zarr")
    monkeypatch.setattr(rawchunks, "chunk_files", lambda array: None)  # Zarr writes them
    run(digitnet, tiny_images, tmp_path / "zarr.zarr")
    mine, theirs = chunk_bytes(tmp_path / "direct.zarr"), chunk_bytes(tmp_path / "zarr.zarr")
    assert sorted(mine) == sorted(theirs) and len(mine) == 2 * 3
    for key in theirs:
        assert mine[key] == theirs[key], key
    a, b = open_activations(tmp_path / "direct.zarr"), open_activations(tmp_path / "zarr.zarr")
    np.testing.assert_array_equal(a["relu3"][:], b["relu3"][:])


def test_a_chunk_not_a_multiple_of_the_block_reads_back(tmp_path):
    group = zarr.open_group(tmp_path / "s.zarr", mode="w")
    arr = group.create_array("x", shape=(5, 3, 7, 11), chunks=(2, 3, 7, 11), dtype="float32",
                             compressors=None, fill_value=0)
    root = rawchunks.chunk_files(arr)
    assert root == tmp_path / "s.zarr" / "x"
    data = np.random.default_rng(0).normal(size=(6, 3, 7, 11)).astype(np.float32)
    data[5] = 0  # the edge chunk's row past the end
    writer = rawchunks.DirectWriter()
    for i in range(3):
        buf = rawchunks.aligned_empty((2, 3, 7, 11), np.float32)
        buf[:] = data[2 * i : 2 * i + 2]
        assert buf.ctypes.data % rawchunks.ALIGN == 0
        writer.write(rawchunks.chunk_path(arr, root, i), buf)
    assert (root / "c/2/0/0/0").stat().st_size == 2 * 3 * 7 * 11 * 4  # 1848: not aligned
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "s.zarr/x")[:], data[:5])


def test_compressed_arrays_are_left_to_zarr(tmp_path):
    from convdp.extract import compressor

    group = zarr.open_group(tmp_path / "s.zarr", mode="w")
    packed = group.create_array("p", shape=(4, 8), chunks=(2, 8), dtype="float32",
                                compressors=compressor("lz4"))
    plain = group.create_array("q", shape=(4, 8), chunks=(2, 8), dtype="float32",
                               compressors=None)
    assert rawchunks.chunk_files(packed) is None
    assert rawchunks.chunk_files(plain) == tmp_path / "s.zarr" / "q"
    memory = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    assert rawchunks.chunk_files(memory.create_array("m", shape=(2,), dtype="float32",
                                                     compressors=None)) is None


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")
def test_a_file_system_without_o_direct_gets_buffered_writes(digitnet, tiny_images, tmp_path,
                                                              monkeypatch):
    real_open = os.open
    direct_opens = []

    def refusing_open(path, flags, *args, **kwargs):  # os.open, as a file system without it
        if flags & os.O_DIRECT:
            direct_opens.append(path)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    run(digitnet, tiny_images, tmp_path / "ref.zarr")
    monkeypatch.setattr(rawchunks.os, "open", refusing_open)
    run(digitnet, tiny_images, tmp_path / "buffered.zarr")
    assert len(direct_opens) == 1  # tried once, then buffered for the rest of the run
    assert chunk_bytes(tmp_path / "buffered.zarr") == chunk_bytes(tmp_path / "ref.zarr")


def test_other_write_errors_are_not_swallowed(tmp_path, monkeypatch):
    def full_disk(path, flags, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rawchunks.os, "open", full_disk)
    buf = rawchunks.aligned_empty((1024,), np.float32)
    with pytest.raises(OSError) as err:
        rawchunks.DirectWriter().write(tmp_path / "c/0", buf)
    assert err.value.errno == errno.ENOSPC
