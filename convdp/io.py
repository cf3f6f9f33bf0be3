"""Atomic file output: a file either appears whole or not at all.

Every file the workflow writes goes through these helpers: the bytes go to a temporary
name in the destination directory, are flushed to disk, and the temporary file is then
renamed over the destination (``os.replace`` is atomic on POSIX). A job killed half-way
leaves at most a ``.tmp-*`` file, never a destination that a later run would take as
finished. On any error (a full disk included) the temporary file is removed and the
error re-raised with the destination named.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` when the block succeeds.

    The temporary name keeps ``suffix`` (e.g. ``".png"``) so that writers that infer the
    format from the extension still work.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = new_file(dest, suffix)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise OSError(exc.errno, f"could not write {dest}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def new_file(dest: Path, suffix: str = "") -> Path:
    """A new empty file ``.tmp-<name>.<random><suffix>`` beside ``dest``, with the mode a
    plain ``open`` gives (0666 less the umask). Not ``tempfile.mkstemp``: its files are
    0600, and the rename would leave every result readable by its owner alone (a shared
    project directory on a cluster: nobody else could read them). Also the partial file of
    a download (:func:`convdp.datasets.fetch.download_url`)."""
    for _ in range(100):
        tmp = dest.parent / f".tmp-{dest.name}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {dest}")


def write_json(dest: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``dest`` atomically."""
    with atomic_path(dest, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error if it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON (truncated?): {exc}") from exc


def write_npz(dest: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write compressed ``.npz`` atomically."""
    with atomic_path(dest, ".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def finish_zarr_writes() -> None:
    """Wait for Zarr chunk writes still in flight.

    When one chunk write fails (a full disk), Zarr raises at once while the other chunk
    writes of the same call go on in its event loop; they would recreate files that a
    clean-up has just removed. Call this after a failed write, before cleaning up.
    """
    import asyncio

    from zarr.core.sync import sync

    async def _drain() -> None:
        me = asyncio.current_task()
        await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not me),
                             return_exceptions=True)

    sync(_drain())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
