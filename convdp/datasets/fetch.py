"""Fetching files: verified, atomic downloads (with mirrors tried in turn) and archives
unpacked once.

Only the standard library (``urllib``) is used, so the same code serves ``http(s)://`` and
``file://`` URLs (handy for a local mirror).  A file is never left half-written at its
destination: it is streamed to a temporary file in the same directory and atomically renamed
(``os.replace``) once its checksum has been verified.  An archive is unpacked into a temporary
folder and renamed into place with a marker holding its md5, so an interrupted unpack is never
taken for a finished one.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from convdp.datasets.base import DatasetError
from convdp.io import new_file

__all__ = [
    "ChecksumMismatchError",
    "DownloadError",
    "download",
    "download_any",
    "ensure_extracted",
    "is_extracted",
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
    tmp = new_file(dest, ".part")
    try:
        with open(tmp, "wb") as out:
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


def download_any(urls: Sequence[str], dest: Path, md5: str) -> None:
    """Download from the first URL that works (trying the others in turn)."""
    errors: list[DownloadError] = []
    for url in urls:
        try:
            download(url, dest, md5=md5)
            return
        except DownloadError as e:
            if len(urls) == 1:
                raise
            log.warning("%s", e.reason)
            errors.append(e)
    details = "\n".join(f"  {e.reason}" for e in errors)
    raise DownloadError(
        f"could not download {dest.name} from any mirror:\n{details}\n"
        f"To work offline, download it by other means and put it at {dest} "
        f"(md5 {md5}).",
        url=urls[-1],
        dest=dest,
        reason=f"could not download {dest.name} from any of {', '.join(urls)}",
    )


MARKER = ".convdp-extracted"


def is_extracted(folder: Path, md5: str) -> bool:
    """Whether ``folder`` is a finished unpack of the archive with md5 ``md5`` (its marker)."""
    marker = folder / MARKER
    return marker.is_file() and marker.read_text().strip() == md5


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():  # pragma: no cover - older Pythons only
        p = PurePosixPath(member.name)
        if p.is_absolute() or ".." in p.parts or not (member.isfile() or member.isdir()):
            raise DatasetError(f"refusing to extract suspicious archive member {member.name!r}")
    tar.extractall(dest)  # noqa: S202 - members checked above


def ensure_extracted(archive: Path, md5: str, folder: str) -> Path:
    """Unpack ``archive`` (verified, md5 ``md5``) so that ``archive.parent / folder`` exists.

    Unpacks into a temporary folder and renames it into place with a marker file holding the
    archive's md5, so an interrupted unpack is never taken for a finished one, and a second
    process doing the same concurrently is harmless.
    """
    final = archive.parent / folder
    if is_extracted(final, md5):
        return final
    log.info("unpacking %s", archive)
    tmpdir = Path(tempfile.mkdtemp(dir=archive.parent, prefix=f".{folder}.", suffix=".unpack"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            _safe_extract(tar, tmpdir)
        src = tmpdir / folder
        if not src.is_dir():
            raise DatasetError(f"{archive} does not contain the folder {folder}/")
        (src / MARKER).write_text(md5 + "\n")
        if final.exists():
            if is_extracted(final, md5):
                return final  # unpacked meanwhile by another process
            log.warning("replacing the incomplete or outdated folder %s", final)
            shutil.rmtree(final)
        try:
            os.replace(src, final)
        except OSError:
            if not is_extracted(final, md5):
                raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return final

