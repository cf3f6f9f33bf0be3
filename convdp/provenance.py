"""What a job reads beyond its declared inputs, in a form Snakemake's rerun triggers see.

Snakemake reruns a job when an input is newer than its output (``mtime``), when its inputs
are other files (``input``) or when its params changed (``params``). Files named in the
config (a ``weights:`` state_dict, the ``paths:`` of an ``images`` data set) are declared
inputs, and their content digests are params too, so that a file replaced by an older one
(``mv``, ``cp -p``) also reruns the job. An image folder is not a file: its fingerprint (every
image's name and content digest) is a param. The code of a net of your own
(``module:factory``) is a param too, by its digest.

Files are known by their content, not their modification time: a file replaced by another
of the same size with the old time put back (``touch -r``, an archive's fixed dates, a data
set re-released with every file the same size) still differs. A file is read again only
where its size, modification time or status-change time moved since it was last read
(:data:`CACHE_DIR`, where the workflow keeps the digests): a copy of the project reads its
images once more and reruns nothing, and a plain ``touch`` reruns nothing either.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from pathlib import Path

# The keys of a model spec that training or loading the net reads (convdp.pipeline.prepare_model).
_MODEL_KEYS = {"train": ("arch", "weights", "input_size", "normalize", "train"),
               "other": ("arch", "weights", "input_size", "num_classes", "in_channels",
                         "normalize")}


#: Where the digests of files read for their content are kept between Snakemake processes
#: (the workflow sets ``results/.cache/digests``); None: in this process only.
CACHE_DIR: Path | None = None

#: Above this many bytes to read, the reading is announced (on stderr).
_ANNOUNCE_BYTES = 1 << 30


def content_digest(path: str | os.PathLike) -> str:
    """sha256 of one file (``missing`` where there is none), read again only where its
    size, modification or status-change time moved (see :func:`content_digests`)."""
    return path_digests([path])[0]


def path_digests(paths: list[str | os.PathLike]) -> list[str]:
    """sha256 of each of ``paths`` (``missing`` where there is no file), with one
    :func:`content_digests` per folder (per path, each call compared and rebuilt the folder's
    kept digests: 0.7 s a fingerprint of 3,000 images in one folder)."""
    out = ["missing"] * len(paths)
    folders: dict[Path, list[tuple[int, str]]] = {}
    for i, p in enumerate(paths):
        path = Path(p)
        if path.is_file():
            folders.setdefault(path.parent, []).append((i, path.name))
    for folder, items in folders.items():
        digests = content_digests(folder, list(dict.fromkeys(name for _, name in items)))
        for i, name in items:
            out[i] = digests[name]
    return out


def content_digests(root: str | os.PathLike, names: list[str],
                    walked: bool = False) -> dict[str, str]:
    """``{name: sha256}`` of the files ``names`` (relative to ``root``), each read only where
    its (size, modification time, status-change time) differs from the one its kept digest
    was read at (:data:`CACHE_DIR`; in this process's memory too). The kept digests of
    other files under ``root`` stay, but where ``names`` are all of its files (``walked``) those
    of files that are gone are dropped."""
    root = Path(root)
    key = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:20]
    kept = _load_digests(key)
    fresh, todo, out = {}, [], {}
    for name in names:
        try:
            st = os.stat(root / name)
        except OSError:  # a broken link: the data set's reader skips it, or says so
            out[name] = "missing"
            continue
        if not stat.S_ISREG(st.st_mode):
            out[name] = "not a file"
            continue
        mark = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        entry = kept.get(name)
        if entry is not None and entry[:3] == mark:
            fresh[name] = entry
        else:
            todo.append((name, mark))
    size = sum(m[0] for _, m in todo)
    if size > _ANNOUNCE_BYTES:
        import sys

        print(f"convdp: reading {len(todo)} files under {root} ({size / 2**30:.1f} GiB) to know "
              "them by their content (once; again only for files whose times change)",
              file=sys.stderr, flush=True)
    from convdp.datasets.fetch import file_hash

    unsure = set()
    for name, mark in todo:
        try:
            fresh[name] = mark + [file_hash(root / name)]
            after = os.stat(root / name)
        except OSError:  # unreadable: the data set's reader says so
            out[name] = "unreadable"
            continue
        if [after.st_size, after.st_mtime_ns, after.st_ctime_ns] != mark:
            unsure.add(name)  # written while it was read: its digest is not kept
    others = {n: e for n, e in kept.items() if n not in fresh
              and not (walked and not (root / n).exists())}
    kept_now = others | {n: e for n, e in fresh.items() if n not in unsure}
    if kept_now != kept:
        _store_digests(key, kept_now)
    return {name: out[name] if name in out else fresh[name][3] for name in names}


_MEMORY: dict[str, dict] = {}


def _cache_file(key: str) -> Path | None:
    return None if CACHE_DIR is None else Path(CACHE_DIR) / f"{key}.json"


def _load_digests(key: str) -> dict:
    """The kept digests of root ``key``: from this process's memory, else from their file
    (kept in memory then: an ``images`` data set asks once per file, and reading the file
    each time made a fingerprint of 3,000 paths take 6 s)."""
    if key in _MEMORY:
        return _MEMORY[key]
    path = _cache_file(key)
    if path is None:
        return {}
    try:
        import json

        _MEMORY[key] = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: read the files
        return {}
    return _MEMORY[key]


def _store_digests(key: str, digests: dict) -> None:
    _MEMORY[key] = digests
    path = _cache_file(key)
    if path is None:
        return
    import json
    import tempfile

    try:  # written whole, then renamed: a job reading it meanwhile sees the old or the new
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.")
        with os.fdopen(fd, "w") as f:
            json.dump(digests, f)
        os.replace(tmp, path)
    except OSError:  # a read-only results folder: known in this process only
        pass


@functools.cache  # once per Snakemake process: every job of the model asks
def code_digest(arch: str) -> str | None:
    """For a net of your own (``arch: "module:factory"``): a digest of its code — the module's
    file, or every ``.py`` file of the package it is in — found without importing it, so that
    an edit retrains or rebuilds the net. None for other architectures, or where the module
    is not found (the config check says so)."""
    import importlib.machinery
    import importlib.util

    if ":" not in arch or arch.startswith("timm:"):
        return None
    top = arch.partition(":")[0].split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:  # beside the config, as the jobs import it (convdp.models._import_factory)
        for candidate in (Path(f"{top}.py"), Path(top) / "__init__.py"):
            if candidate.is_file():
                spec = importlib.util.spec_from_file_location(top, candidate)
                break
        else:
            if Path(top).is_dir():  # a namespace package (a folder without __init__.py)
                spec = importlib.machinery.ModuleSpec(top, None, is_package=True)
                spec.submodule_search_locations = [top]
    if spec is None:
        return None
    if spec.submodule_search_locations is not None:
        # a package, or a namespace package (no __init__.py: no origin, its code is in its
        # folders all the same)
        files = sorted(f for d in spec.submodule_search_locations for f in Path(d).rglob("*.py"))
    elif spec.origin and Path(spec.origin).is_file():
        files = [Path(spec.origin)]
    else:
        return None
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\t".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def weights_file(spec: dict) -> str | None:
    """The state_dict file a model spec loads, or None (``train``, ``none``, a torchvision name)."""
    w = spec.get("weights", "train")
    if w in ("train", "none"):
        return None
    return w if Path(w).suffix in (".pt", ".pth", ".bin") or Path(w).exists() else None


def model_inputs(spec: dict) -> list[str]:
    """The files a model spec names (its weights file), as inputs of ``train_model``."""
    w = weights_file(spec)
    return [w] if w else []


def model_params(spec: dict) -> dict:
    """The model spec as ``train_model`` reads it: only the keys it uses, and the weights
    file's stamp. Adding a layer or a data set to analyse does not retrain the net."""
    keys = _MODEL_KEYS["train" if spec.get("weights", "train") == "train" else "other"]
    if spec.get("control_of"):  # a random-weights control: built, never trained
        keys = tuple(k for k in keys if k != "train") + ("control_of",)
    out = {k: spec[k] for k in keys if k in spec}
    w = weights_file(spec)
    code = code_digest(spec.get("arch", ""))
    return out | ({"weights_sha256": content_digest(w)} if w else {}) | ({"code": code} if code else {})


def dataset_inputs(spec: dict) -> list[str]:
    """The files a data set spec names (``paths:`` of kind ``images``), as inputs."""
    return list(spec.get("paths", [])) if spec["kind"] == "images" else []


def dataset_fingerprint(spec: dict) -> str | None:
    """What the data set's source files look like now: the stamp of each ``paths:`` file, or an
    image folder's fingerprint; None for data sets that ship with a package or are verified
    downloads."""
    if spec["kind"] == "images":
        paths = spec["paths"]
        return _digest(f"{p}\t{d}" for p, d in zip(paths, path_digests(paths), strict=True))
    if spec["kind"] == "folder":
        return folder_fingerprint(spec["path"])
    return None


@functools.cache  # once per Snakemake process: every job reading the data set asks
def folder_fingerprint(folder: str | os.PathLike, every_file: bool = False) -> str:
    """Count and digest of every image under ``folder`` (every file with ``every_file``: a
    mask folder, whose masks may have other extensions than images); relative name and
    content digest (:func:`content_digests`); links are followed, each real folder once,
    hidden files and folders skipped."""
    from convdp.datasets import IMAGE_EXTENSIONS

    root = Path(folder)
    names, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back up the tree
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and (every_file or Path(f).suffix.lower() in IMAGE_EXTENSIONS):
                names.append((Path(dirpath) / f).relative_to(root).as_posix())
    lines = [f"{n}\t{d}" for n, d in content_digests(root, sorted(names), walked=True).items()]
    return f"{len(lines)} {'files' if every_file else 'images'}, {_digest(lines)}"


def _digest(lines) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode() + b"\n")
    return "sha256:" + h.hexdigest()[:16]
