"""Shared fixtures: the repository root, a tiny trained-or-not net, planted mixtures, a
loopback HTTP server and a refused URL."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def single_thread():
    """One torch and BLAS thread, no convergence warnings: the mixture problems of the tests
    are small and the machine may be shared (oversubscribed threads make small ops slow)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """tests/config/tiny.yaml run end to end once, for every test that reads its results:
    the workflow folder. Read-only: a test that changes it works on a copy."""
    from tests.test_workflow import TINY, snakemake

    workdir = tmp_path_factory.mktemp("tiny_run")
    out = snakemake(ROOT, workdir, "--cores", "2", "--configfile", str(TINY))
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


@pytest.fixture
def digitnet():
    from convdp.models import DigitNet

    torch.manual_seed(0)
    return DigitNet(num_classes=5, in_channels=1).eval()


@pytest.fixture
def tiny_images():
    """(40, 16, 16, 1) uint8 digits."""
    from convdp.data import load_digits_split

    return load_digits_split([0, 1, 2], size=16).images[:40]


def planted_mixture(n_per: int, centres: np.ndarray, scale: float = 0.3, seed: int = 0):
    """Samples from well-separated isotropic Gaussians; returns (X, labels)."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + scale * rng.standard_normal((n_per, centres.shape[1])) for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per)
    return X, y


# --------------------------------------------------------------------------------------
# Loopback HTTP: a file server on 127.0.0.1 that records requests, a refused URL
# --------------------------------------------------------------------------------------


class Served(NamedTuple):
    """What :func:`http_server` serves: the folder, its base URL, the paths requested."""

    root: Path
    url: str
    requests: list[str]


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files quietly, recording each path asked for; ``/short`` announces more bytes
    than it sends, then hangs up (an interrupted download)."""

    requests: list[str]

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.requests.append(self.path)
        if self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture
def no_proxy(monkeypatch):
    """Requests to 127.0.0.1 must not be sent to a proxy from the environment."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def http_server(tmp_path, no_proxy) -> Served:
    """A file server on 127.0.0.1 for ``tmp_path / "www"``: (folder, base URL, requests)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Served(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def refused_url(no_proxy) -> str:
    """A base URL on 127.0.0.1 that refuses connections (a port bound, not listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
