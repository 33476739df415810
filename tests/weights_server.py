"""Test helpers for the weight registry: a scriptable HTTP server on 127.0.0.1, an isolated
environment, generated checkpoints and entries with their true digests.

Test modules import the fixtures they use: ``from weights_server import weights_env, weights_server``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from compressai.models import FactorizedPrior

from codecloss.weights import WeightSpec, registry

class WeightsServer:
    """A ThreadingHTTPServer whose answer per path and per request is scripted; counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, tuple[Any, ...], float]] = {}
        self.counts: Counter[str] = Counter()
        self.release = threading.Event()  # ends stalls at shutdown
        self._lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def serve(self, path: str, body: bytes = b"", *behaviours: Any, delay: float = 0.0) -> str:
        """Script the answers to GET ``path``; returns its URL.

        Args:
            path: URL path, e.g. ``"/w/x.pth"``.
            body: the file served.
            behaviours: one per request, the last repeats (default ``"ok"``): ``"ok"``; ``"cut"`` (announce
                the full length, send half, close); ``"stall-headers"`` / ``"stall-body"`` (hang);
                an HTTP status code (``404``, ``500``); ``"redirect:/other/path"``.
            delay: seconds to wait after the headers, before the body.
        """
        self.routes[path] = (body, behaviours or ("ok",), delay)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                with server._lock:
                    server.counts[self.path] += 1
                    n = server.counts[self.path]
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, behaviours, delay = server.routes[self.path]
                behaviour = behaviours[min(n, len(behaviours)) - 1]
                if isinstance(behaviour, int):
                    self.send_error(behaviour)
                elif behaviour.startswith("redirect:"):
                    self.send_response(302)
                    self.send_header("Location", behaviour.split(":", 1)[1])
                    self.end_headers()
                elif behaviour == "stall-headers":
                    server.release.wait(10)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    server.release.wait(delay)
                    if behaviour == "ok":
                        self.wfile.write(body)
                        return
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if behaviour == "stall-body":
                        server.release.wait(10)
                    self.close_connection = True  # "cut": the rest never comes

        return Handler

    def __enter__(self) -> "WeightsServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def weights_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WeightsServer]:
    """A running :class:`WeightsServer`; proxies are bypassed for 127.0.0.1."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with WeightsServer() as server:
        yield server


@pytest.fixture
def weights_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache in ``tmp_path``, no codecloss environment from outside, fast retries and timeouts,
    and a registry restored after the test. Returns the cache folder."""
    for var in ("CODECLOSS_OFFLINE", "CODECLOSS_MIRROR", "CODECLOSS_REGISTRY", "CODECLOSS_PINS", "TORCH_HOME"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CODECLOSS_HOME", str(cache))
    monkeypatch.setenv("CODECLOSS_TIMEOUT", "5")
    monkeypatch.setenv("CODECLOSS_RETRIES", "2")
    monkeypatch.setenv("CODECLOSS_BACKOFF", "0.01")
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    return cache


@pytest.fixture(scope="session")
def small_checkpoint() -> tuple[bytes, dict[str, torch.Tensor]]:
    """A serialised FactorizedPrior(64, 96) state_dict (the ``codecloss-small-mse`` architecture) and the dict."""
    gen = torch.Generator().manual_seed(1)
    model = FactorizedPrior(64, 96)
    with torch.no_grad():
        for p in model.g_a.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 0.1 + 0.01)  # distinguishable from random init
    state = model.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state


def entry(name: str, url: str, body: bytes, *, prefix_only: bool = False, **fields: Any) -> WeightSpec:
    """A test entry with the true digest of ``body`` (full, or an 8-hex prefix)."""
    digest = hashlib.sha256(body).hexdigest()
    if prefix_only:
        return WeightSpec(name=name, url=url, sha256_prefix=digest[:8], **fields)
    return WeightSpec(name=name, url=url, sha256=digest, size=len(body), **fields)


def fetch_in_child(name: str, barrier: Any, results: Any) -> None:
    """Process target: wait for all siblings, fetch ``name``, report (path, sha256 of the file) or the error."""
    import codecloss.weights

    barrier.wait()
    try:
        path = codecloss.weights.get_weights_file(name, progress=False)
        results.put((str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
    except Exception as err:  # reported to the parent test
        results.put(("error", repr(err)))
