"""Fixtures for the fault tests: a size-limited folder (a disk that fills up)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted at ``tmp_path/disk``; skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip() or out.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)



@dataclass
class Assets:
    """A saved net, a data set store and an extraction of it (read-only: copy to change)."""

    root: Path
    weights: Path
    meta: Path
    data: Path
    manifest: Path
    layers: tuple[str, ...] = ("relu1", "relu2", "relu3", "relu4")

    def copy(self, dest: Path) -> Assets:
        shutil.copytree(self.root, dest)
        return Assets(dest, *(dest / p.relative_to(self.root)
                              for p in (self.weights, self.meta, self.data, self.manifest)))


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Assets:
    from convdp import pipeline

    from .helpers import make_digits, make_model

    root = tmp_path_factory.mktemp("assets")
    weights, meta = make_model(root)
    data = make_digits(root / "data.zarr", n=120)
    manifest = root / "acts" / "net" / "digits.json"
    pipeline.extract(weights, meta, data, list(Assets.layers), manifest, device="cpu",
                     batch_size=20, chunk_size=40, model_name="net", progress=False)
    return Assets(root, weights, meta, data, manifest)
