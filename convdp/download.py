"""Verified, atomic downloads: kept as an import path; the code lives in
:mod:`convdp.datasets.fetch`."""

from convdp.datasets.fetch import (
    ChecksumMismatchError,
    DownloadError,
    download,
    file_hash,
    verify_file,
)

__all__ = [
    "ChecksumMismatchError",
    "DownloadError",
    "download",
    "file_hash",
    "verify_file",
]
