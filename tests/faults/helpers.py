"""Shared helpers for the fault tests: tiny assets, child processes to kill, file snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MEAN, STD = [0.5], [0.25]

# Fit parameters as the config gives them (tiny.yaml-sized), for fits called directly.
PARAMS = {
    "preprocess": {"max_samples": 1500, "pca": 8, "scale_max": None},
    "dpgmm": {"n_components": 6, "concentration": 1.0, "covariance_type": "full", "max_iter": 30,
              "tol": 1e-3, "weight_threshold": 0.01},
    "baseline": {"method": "gmm", "covariance_type": "full", "k_min": 2, "k_max": 4,
                 "max_iter": 30},
}


def make_model(folder: Path, name: str = "net", seed: int = 0, num_classes: int = 5,
               poison: dict | None = None) -> tuple[Path, Path]:
    """An untrained DigitNet saved the way the workflow saves one: ``{name}.pt`` + ``{name}.json``.

    ``poison`` maps parameter names to a value (nan, inf, 0) written into that whole tensor.
    """
    import torch

    from convdp.io import write_json
    from convdp.models import DigitNet, layer_names, save_state_dict

    torch.manual_seed(seed)
    net = DigitNet(num_classes=num_classes, in_channels=1).eval()
    with torch.no_grad():
        for pname, value in (poison or {}).items():
            dict(net.named_parameters())[pname].fill_(value)
    weights, meta = folder / f"{name}.pt", folder / f"{name}.json"
    save_state_dict(net, weights)
    write_json(meta, {"arch": "digitnet", "weights": "train", "input_size": None,
                      "num_classes": num_classes, "in_channels": 1, "mean": MEAN, "std": STD,
                      "layer_names": layer_names(net), "seed": seed})
    return weights, meta


def make_digits(path: Path, n: int = 120, classes=(0, 1, 2, 3, 4), size: int = 16) -> Path:
    """A digits data set store of ``n`` images (seeded, class-stratified)."""
    from convdp.data import load_digits_split, write_dataset

    write_dataset(path, load_digits_split(list(classes), size=size, max_samples=n, seed=0))
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """relative path → sha256 of every file under ``folder`` (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*")) if p.is_file()
    }


def store_attrs(store: Path) -> dict:
    """The group attributes of a Zarr v3 store, read straight from its ``zarr.json``."""
    try:
        return json.loads((store / "zarr.json").read_text()).get("attributes", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def assert_stores_equal(a: Path, b: Path, layers=None) -> None:
    """Every array of store ``a`` equals (np.array_equal) the one of the same name in ``b``."""
    import zarr

    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    names = sorted(layers or [n for n, _ in ga.arrays()])
    assert names == sorted(n for n, _ in gb.arrays()) or layers, (a, b)
    for name in names:
        x, y = ga[name][:], gb[name][:]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y), f"layer {name!r} differs between {a} and {b}"


def tmp_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob(".tmp-*"))


def child(code: str | list[str], log: Path, *, env: dict | None = None) -> subprocess.Popen:
    """Start ``code`` in a fresh Python process (its own session, so it can be killed alone).

    ``code`` may be a list of blocks, each dedented on its own, run one after the other.
    """
    if not isinstance(code, str):
        code = "\n".join(textwrap.dedent(block) for block in code)
    fh = open(log, "w")  # noqa: SIM115 - closed by the kernel when the child ends
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=fh,
                            stderr=subprocess.STDOUT, start_new_session=True, env=full_env)


def wait_for(predicate, proc: subprocess.Popen | None = None, timeout: float = 300,
             interval: float = 0.005, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = predicate()
            if value:
                return value
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group of ``proc`` and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def stop_group(proc: subprocess.Popen) -> None:
    """Freeze the whole process group at once (so its state can be read, then killed)."""
    try:
        os.killpg(proc.pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass


def grow(mnt: Path, size: str = "256m") -> None:
    """Give a tmpfs more room (as if the disk had been cleaned up)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


def fill(mnt: Path, leave: int) -> None:
    """Fill the file system of ``mnt`` with a filler file, leaving about ``leave`` bytes free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "ab") as fh:
        fh.write(b"\0" * max(free - leave, 0))


def disk_usage(folder: Path, block: int = 4096) -> int:
    """Bytes the files under ``folder`` take on a file system with ``block``-byte pages."""
    return sum(-(-p.stat().st_size // block) * block for p in Path(folder).rglob("*") if p.is_file())
