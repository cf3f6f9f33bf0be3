"""convdp.io: results appear whole, with the permissions any other file of the user's gets."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from convdp.io import atomic_path, write_json, write_npz


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_results_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "summary.json", {"a": 1})
        write_npz(tmp_path / "fit.npz", labels=np.arange(3))
        with atomic_path(tmp_path / "figure.png", ".png") as tmp:
            tmp.write_bytes(b"png")
    finally:
        os.umask(old)
    for name in ("summary.json", "fit.npz", "figure.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "fit.npz", "summary.json"]


def test_a_failed_write_leaves_neither_the_destination_nor_a_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.json", ".json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert list(tmp_path.iterdir()) == []
