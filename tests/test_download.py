"""convdp.datasets.fetch (also importable as convdp.download): verified, atomic downloads,
against the local HTTP server on 127.0.0.1 of tests/conftest.py."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest

from convdp.datasets.fetch import (
    ChecksumMismatchError,
    DownloadError,
    download,
    file_hash,
    verify_file,
)

pytestmark = pytest.mark.usefixtures("no_proxy")  # 127.0.0.1 must not go to a proxy

PAYLOAD = bytes(range(256)) * 1000  # 256 kB


def _served(server, name="blob.bin", data=PAYLOAD):
    (server.root / name).write_bytes(data)
    return f"{server.url}/{name}", hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_with_right_checksums(http_server, tmp_path):
    url, md5, sha = _served(http_server)
    dest = tmp_path / "data" / "sub" / "blob.bin"
    out = download(url, dest, md5=md5, sha256=sha)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["blob.bin"]  # no temporary file left
    assert verify_file(dest, md5=md5) and verify_file(dest, sha256=sha)
    assert file_hash(dest, "md5") == md5


def test_existing_file_with_right_checksum_is_not_downloaded_again(http_server, tmp_path):
    url, md5, _ = _served(http_server)
    dest = tmp_path / "blob.bin"
    download(url, dest, md5=md5)
    requests = http_server.requests
    assert len(requests) == 1
    (http_server.root / "blob.bin").unlink()  # the server no longer has it
    download(url, dest, md5=md5)
    assert len(requests) == 1
    assert dest.read_bytes() == PAYLOAD


def test_existing_file_with_wrong_checksum_is_downloaded_again(http_server, tmp_path):
    url, md5, _ = _served(http_server)
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"stale")
    download(url, dest, md5=md5)
    assert dest.read_bytes() == PAYLOAD
    assert len(http_server.requests) == 1


def test_download_without_checksum(http_server, tmp_path):
    url, _, _ = _served(http_server)
    dest = tmp_path / "blob.bin"
    download(url, dest)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_wrong_checksum_is_rejected_and_nothing_is_left(http_server, tmp_path, algorithm):
    url, md5, sha = _served(http_server)
    wrong = "0" * (32 if algorithm == "md5" else 64)
    folder = tmp_path / "data"
    dest = folder / "blob.bin"
    with pytest.raises(ChecksumMismatchError) as info:
        download(url, dest, **{algorithm: wrong})
    err = info.value
    assert isinstance(err, DownloadError)
    message = str(err)
    assert url in message
    assert wrong in message
    assert (md5 if algorithm == "md5" else sha) in message
    assert err.expected == wrong and err.actual == (md5 if algorithm == "md5" else sha)
    assert not dest.exists()
    assert _leftovers(folder) == []  # no half file, no temporary file


def test_wrong_checksum_keeps_an_existing_file_untouched(http_server, tmp_path):
    url, _, _ = _served(http_server)
    dest = tmp_path / "data" / "blob.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old copy")
    with pytest.raises(ChecksumMismatchError):
        download(url, dest, md5="0" * 32)
    assert dest.read_bytes() == b"old copy"
    assert _leftovers(dest.parent) == ["blob.bin"]


def test_refused_connection_gives_the_offline_message(refused_url, tmp_path):
    url = f"{refused_url}/some/file.tar.gz"
    dest = tmp_path / "data" / "file.tar.gz"
    with pytest.raises(DownloadError) as info:
        download(url, dest, md5="0" * 32, timeout=5)
    message = str(info.value)
    assert url in message
    assert str(dest) in message
    assert "offline" in message
    assert info.value.url == url and info.value.dest == dest
    assert _leftovers(dest.parent) == []


def test_timeout_gives_the_offline_message(tmp_path):
    # A listening socket that never answers: the connection is made, the response never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/slow.bin"
        dest = tmp_path / "slow.bin"
        start = time.monotonic()
        with pytest.raises(DownloadError) as info:
            download(url, dest, timeout=0.5)
        assert time.monotonic() - start < 10
    assert url in str(info.value) and str(dest) in str(info.value)
    assert _leftovers(tmp_path) == []


def test_http_error_names_url_and_destination(http_server, tmp_path):
    url = f"{http_server.url}/missing.bin"
    dest = tmp_path / "data" / "missing.bin"
    with pytest.raises(DownloadError) as info:
        download(url, dest)
    message = str(info.value)
    assert "404" in message and url in message and str(dest) in message
    assert _leftovers(dest.parent) == []


def test_incomplete_body_is_rejected(http_server, tmp_path):
    url = f"{http_server.url}/short"
    dest = tmp_path / "data" / "short.bin"
    with pytest.raises(DownloadError) as info:
        download(url, dest, timeout=5)
    assert url in str(info.value)
    assert _leftovers(dest.parent) == []


def test_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "copy.bin"
    download(src.as_uri(), dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD


def test_verify_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    sha = hashlib.sha256(b"hello").hexdigest()
    assert verify_file(path, md5=md5)
    assert verify_file(path, md5=md5.upper(), sha256=sha)
    assert not verify_file(path, md5="0" * 32)
    assert not verify_file(path, md5=md5, sha256="0" * 64)
    assert not verify_file(tmp_path / "absent", md5=md5)
    with pytest.raises(ValueError):
        verify_file(path)
