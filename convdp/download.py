"""Verified downloads: stream to a temporary file, check the checksum, rename into place.

Only the standard library (``urllib``) is used, so the same code serves ``http(s)://`` and
``file://`` URLs (handy for a local mirror).  A file is never left half-written at its
destination: it is streamed to a temporary file in the same directory and atomically renamed
(``os.replace``) once its checksum has been verified.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

__all__ = [
    "ChecksumMismatchError",
    "DownloadError",
    "download",
    "file_hash",
    "verify_file",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # 1 MiB
_USER_AGENT = "convdp-downloader/0.1 (+python-urllib)"


class DownloadError(RuntimeError):
    """A file could not be downloaded (connection failure, HTTP error, bad checksum)."""

    def __init__(
        self,
        message: str,
        url: str | None = None,
        dest: str | os.PathLike | None = None,
        reason: str | None = None,
    ):
        super().__init__(message)
        self.url = url
        self.dest = None if dest is None else Path(dest)
        self.reason = reason if reason is not None else message  # short, without the hint


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not have the expected checksum."""

    def __init__(
        self,
        url: str,
        dest: str | os.PathLike,
        algorithm: str,
        expected: str,
        actual: str,
    ):
        message = (
            f"checksum mismatch for {url}: expected {algorithm} {expected}, got {actual}. "
            f"The download was discarded (nothing was written to {dest}). The server may be "
            f"serving a different or corrupted file; try another mirror or place a verified "
            f"copy at {dest} by hand."
        )
        reason = f"checksum mismatch: expected {algorithm} {expected}, got {actual}"
        super().__init__(message, url=url, dest=dest, reason=reason)
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


def _new_hashers(md5: str | None, sha256: str | None) -> dict[str, tuple[object, str]]:
    hashers: dict[str, tuple[object, str]] = {}
    if md5 is not None:
        hashers["md5"] = (hashlib.md5(usedforsecurity=False), md5.lower())
    if sha256 is not None:
        hashers["sha256"] = (hashlib.sha256(), sha256.lower())
    return hashers


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``algorithm`` is any :mod:`hashlib` name, e.g. md5, sha256)."""
    if algorithm == "md5":
        h = hashlib.md5(usedforsecurity=False)
    else:
        h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> bool:
    """True when ``path`` exists and matches every checksum given (at least one is required)."""
    if md5 is None and sha256 is None:
        raise ValueError("verify_file needs an md5 or a sha256 checksum")
    path = Path(path)
    if not path.is_file():
        return False
    if md5 is not None and file_hash(path, "md5") != md5.lower():
        return False
    if sha256 is not None and file_hash(path, "sha256") != sha256.lower():
        return False
    return True


def _failed(url: str, dest: Path, what: str) -> DownloadError:
    """A DownloadError saying what failed, and where to put the file to run offline."""
    return DownloadError(
        f"{what}. To work offline, download {url} by other means and put it at {dest} "
        f"(the file is used as is once its checksum matches).",
        url=url,
        dest=dest,
        reason=what,
    )


def download(
    url: str,
    dest_path: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest_path`` and return the destination path.

    * If ``dest_path`` exists and matches the given checksum(s), nothing is downloaded.
      If it exists and no checksum is given, it is trusted as is (downloads are atomic, so
      an existing file is a complete one).  If it exists with a wrong checksum it is
      downloaded again (and replaced only once the new copy verifies).
    * The body is streamed to a temporary file in the destination directory, hashed on the
      fly, and renamed into place with :func:`os.replace` only if every given checksum
      matches.  On any failure the temporary file is removed.
    * Raises :class:`ChecksumMismatchError` (a :class:`DownloadError`) on a checksum
      mismatch, and :class:`DownloadError` on connection failures (refused, DNS, timeout,
      HTTP errors), with a message naming the URL and where to put the file by hand.
    """
    dest = Path(dest_path)
    if dest.exists():
        if md5 is None and sha256 is None:
            log.debug("%s exists and no checksum was given; not downloading %s", dest, url)
            return dest
        if verify_file(dest, md5=md5, sha256=sha256):
            log.debug("%s exists with the right checksum; not downloading %s", dest, url)
            return dest
        log.warning("%s exists but its checksum does not match; downloading %s again", dest, url)

    dest.parent.mkdir(parents=True, exist_ok=True)
    hashers = _new_hashers(md5, sha256)
    # Not tempfile.mkstemp: that creates the file with mode 0600, whereas the final file
    # should get the usual permissions (0666 minus the umask).
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            try:
                response = urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as e:
                e.close()  # it holds the connection
                raise _failed(
                    url, dest, f"download of {url} failed: HTTP {e.code} {e.reason}"
                ) from e
            except (urllib.error.URLError, OSError) as e:  # refused, DNS, timeout
                reason = getattr(e, "reason", e)
                raise _failed(url, dest, f"could not connect to {url} ({reason})") from e
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                progress = tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    file=sys.stderr,
                    disable=not sys.stderr.isatty(),
                    leave=False,
                )
                received = 0
                try:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (OSError, http.client.HTTPException) as e:  # incl. timeouts
                            what = f"download of {url} was interrupted ({e!r})"
                            raise _failed(url, dest, what) from e
                        if not chunk:
                            break
                        out.write(chunk)
                        received += len(chunk)
                        for h, _ in hashers.values():
                            h.update(chunk)  # type: ignore[attr-defined]
                        progress.update(len(chunk))
                finally:
                    progress.close()
                if total is not None and received != total:
                    what = f"download of {url} was incomplete: got {received} of {total} bytes"
                    raise _failed(url, dest, what)
        for algorithm, (h, expected) in hashers.items():
            actual = h.hexdigest()  # type: ignore[attr-defined]
            if actual != expected:
                raise ChecksumMismatchError(url, dest, algorithm, expected, actual)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("downloaded %s to %s", url, dest)
    return dest
