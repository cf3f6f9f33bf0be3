"""What a run says at its end (the Snakefile's ``onsuccess``): the warnings its jobs logged,
and the final outputs under ``results/`` that the configuration no longer makes. Kept apart
from the jobs' code (:mod:`convdp.pipeline`), so that an edit here reruns no job
(:mod:`convdp.jobcode`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

_LOGGED_WARNING = re.compile(r"^\S+ \S+ WARNING (convdp[\w.]*): (.*)$")


def job_warnings(log_dir: str | Path, since: float = 0.0) -> list[tuple[str, str]]:
    """convdp's warnings in the job logs under ``log_dir`` (``snakemake_job``'s format)
    written since ``since`` (seconds since the epoch): (log file, message), file by file."""
    found = []
    for path in sorted(Path(log_dir).rglob("*.log")):
        try:
            if path.stat().st_mtime < since:
                continue
            lines = path.read_text(errors="replace").splitlines()
        except OSError:  # removed meanwhile
            continue
        found += [(str(path), m.group(2)) for m in map(_LOGGED_WARNING.match, lines) if m]
    return found


def print_job_warnings(log_dir: str | Path = "logs", since: float = 0.0, limit: int = 10,
                       file=None) -> None:
    """Print the run's job warnings (:func:`job_warnings`) where the user sees them: a job's
    log is read only when it fails, and a skipped image or a fit on too few samples is a
    warning of a job that succeeded. Warnings that differ only in their numbers and quoted
    names (one per layer, say) are one line, with their count and the first of them."""
    found = job_warnings(log_dir, since)
    if not found:
        return
    kinds: dict[str, list[tuple[str, str]]] = {}
    for path, message in found:
        kinds.setdefault(re.sub(r"'[^']*'|\d+(?:\.\d+)?", "#", message), []).append((path, message))
    out = file or sys.stderr
    print(f"convdp: {len(found)} warning(s) in this run's job logs:", file=out)
    for same in list(kinds.values())[:limit]:
        path, message = same[0]
        short = message if len(message) <= 300 else message[:297] + "..."
        print(f"  {f'{len(same)}x like ' if len(same) > 1 else ''}{path}: {short}", file=out)
    if len(kinds) > limit:
        print(f"  ... and {len(kinds) - limit} more kinds (grep WARNING {log_dir})", file=out)


#: The final outputs a user opens, by where they lie (relative to the run's directory).
_FINAL_PATTERNS = ("results/figures/**/*.png", "results/transfer/*/*.csv",
                   "results/transfer/*/*.json", "results/*.csv",
                   "results/transfer_benchmark/*/*.csv", "results/transfer_benchmark/*/*.json")


def stale_outputs(expected, root: str | Path = ".") -> list[str]:
    """Final outputs under ``root`` (figures, verdict tables, CSVs beside the summary) that
    are none of the run's ``expected`` final outputs: left by a data set, model, layer or
    target an earlier configuration had."""
    root = Path(root)
    want = {Path(p).as_posix() for p in expected}
    found = {p.relative_to(root).as_posix() for pattern in _FINAL_PATTERNS
             for p in root.glob(pattern) if p.is_file()}
    return sorted(found - want)


def print_stale_outputs(expected, root: str | Path = ".", limit: int = 5, file=None) -> None:
    """Say which final outputs under ``root`` this configuration does not make (see
    :func:`stale_outputs`): they stay beside the current results, and nothing else says
    they are not part of them."""
    stale = stale_outputs(expected, root)
    if not stale:
        return
    out = file or sys.stderr
    print(f"convdp: {len(stale)} file(s) under results/ come from an earlier configuration "
          "(no output of this one); delete them if they are not wanted:", file=out)
    for path in stale[:limit]:
        print(f"  {path}", file=out)
    if len(stale) > limit:
        print(f"  ... and {len(stale) - limit} more", file=out)
