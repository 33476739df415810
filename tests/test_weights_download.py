"""Downloads from a real HTTP server on 127.0.0.1: verification, atomicity, retries, timeouts,
redirects, the inter-process lock, mirrors, offline mode, import and load-time re-verification."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch
from weights_server import entry, fetch_in_child, small_checkpoint, weights_env, weights_server  # noqa: F401

import codecloss
from codecloss.weights import (
    DownloadError,
    IntegrityError,
    OfflineError,
    get_weights_file,
    import_weights,
    register_weights,
    registered_state_dict,
)

pytestmark = pytest.mark.usefixtures("weights_env")

BACKBONE = "codecloss-small-mse"


def _files(cache: Path) -> list[str]:
    """Every file under the cache's weights folder except lock files."""
    folder = cache / "weights"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.is_dir() else []


def _register(server, name, body, *behaviours, path=None, **fields):
    url = server.serve(path or f"/w/{name}.pth", body, *behaviours)
    spec = entry(name, url, body, **fields)
    register_weights(spec)
    return spec


def test_download_verifies_and_loads_into_loss(weights_server, weights_env, small_checkpoint):
    body, state = small_checkpoint
    _register(weights_server, "test-small", body, backbone=BACKBONE)
    loss = codecloss.CodecPerceptualLoss(backbone=BACKBONE, weights="test-small", layers=["gdn1", "y"])
    convs = [i for i, stage in enumerate(loss.extractor.stages) if isinstance(stage, torch.nn.Conv2d)]
    assert len(convs) == 4
    assert all(torch.equal(loss.extractor.stages[i].weight, state[f"g_a.{i}.weight"]) for i in convs)
    assert _files(weights_env) == ["test-small.pth"]
    assert hashlib.sha256((weights_env / "weights" / "test-small.pth").read_bytes()).hexdigest() == \
        hashlib.sha256(body).hexdigest()
    # a second load uses the cache: no second request
    registered_state_dict("test-small", BACKBONE)
    assert weights_server.counts["/w/test-small.pth"] == 1


def test_default_resolves_flagged_entry(weights_server, small_checkpoint):
    body, state = small_checkpoint
    zoo_backbone = "bmshj2018-factorized-mse-q1"  # its zoo entry is not flagged: the flagged one wins
    _register(weights_server, "test-small-default", body, backbone=zoo_backbone, default=True)
    got = registered_state_dict("default", zoo_backbone)
    assert torch.equal(got["g_a.0.weight"], state["g_a.0.weight"])


def test_entry_of_another_backbone_is_refused(weights_server, small_checkpoint):
    body, _ = small_checkpoint
    _register(weights_server, "test-small", body, backbone=BACKBONE)
    with pytest.raises(ValueError, match="is for backbone 'codecloss-small-mse', not 'bmshj2018-factorized-mse-q1'"):
        codecloss.CodecPerceptualLoss(backbone="bmshj2018-factorized-mse-q1", weights="test-small")
    assert weights_server.counts["/w/test-small.pth"] == 0


def test_wrong_digest_leaves_nothing(weights_server, weights_env):
    body = b"the real file" * 100
    url = weights_server.serve("/w/bad.pth", b"another file" * 100)
    register_weights(entry("bad", url, body))
    with pytest.raises(DownloadError, match=r"sha256 .* expected .*\(not retried\)"):
        get_weights_file("bad", progress=False)
    assert _files(weights_env) == []  # neither the final name nor a *.partial
    assert weights_server.counts["/w/bad.pth"] == 1


@pytest.mark.parametrize("behaviour", ["cut", "stall-body"])
def test_interrupted_transfer_is_retried(weights_server, weights_env, monkeypatch, behaviour):
    monkeypatch.setenv("CODECLOSS_TIMEOUT", "0.3")
    body = os.urandom(200_000)
    _register(weights_server, "flaky", body, behaviour, "ok")
    path = get_weights_file("flaky", progress=False)
    assert path.read_bytes() == body
    assert weights_server.counts["/w/flaky.pth"] == 2
    assert _files(weights_env) == ["flaky.pth"]


def test_transfer_always_cut_fails_then_later_call_succeeds(weights_server, weights_env):
    body = os.urandom(200_000)
    spec = _register(weights_server, "cut", body, "cut")
    with pytest.raises(DownloadError, match="transfer ended after 100000 of 200000 bytes"):
        get_weights_file("cut", progress=False)
    assert weights_server.counts["/w/cut.pth"] == 3  # first attempt + CODECLOSS_RETRIES=2
    assert _files(weights_env) == []
    weights_server.serve("/w/cut.pth", body)  # the network is back
    assert get_weights_file(spec.name, progress=False).read_bytes() == body


def test_404_is_not_retried(weights_server, weights_env):
    register_weights(entry("missing", weights_server.url("/w/missing.pth"), b"x"))
    with pytest.raises(DownloadError, match=r"HTTP 404 .*\(not retried\)"):
        get_weights_file("missing", progress=False)
    assert weights_server.counts["/w/missing.pth"] == 1
    assert _files(weights_env) == []


def test_500_is_retried_with_bounded_attempts(weights_server, weights_env):
    _register(weights_server, "down", b"x" * 10, 500)
    with pytest.raises(DownloadError, match="HTTP 500"):
        get_weights_file("down", progress=False)
    assert weights_server.counts["/w/down.pth"] == 3
    assert _files(weights_env) == []


def test_500_then_ok_succeeds(weights_server):
    _register(weights_server, "recovers", b"y" * 10, 500, 503, "ok")
    assert get_weights_file("recovers", progress=False).read_bytes() == b"y" * 10
    assert weights_server.counts["/w/recovers.pth"] == 3


def test_slow_server_times_out(weights_server, weights_env, monkeypatch):
    monkeypatch.setenv("CODECLOSS_TIMEOUT", "0.2")
    monkeypatch.setenv("CODECLOSS_RETRIES", "0")
    _register(weights_server, "slow", b"z" * 10, "stall-headers")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        get_weights_file("slow", progress=False)
    assert time.monotonic() - start < 5
    assert _files(weights_env) == []


def test_redirect_is_followed(weights_server):
    body = b"redirected" * 50
    weights_server.serve("/new/r.pth", body)
    _register(weights_server, "r", body, "redirect:/new/r.pth", path="/old/r.pth")
    assert get_weights_file("r", progress=False).read_bytes() == body
    assert weights_server.counts["/old/r.pth"] == 1 and weights_server.counts["/new/r.pth"] == 1


def test_entry_mirrors_are_tried_after_url(weights_server):
    body = b"m" * 100
    mirror = weights_server.serve("/mirror/m.pth", body)
    register_weights(entry("m", weights_server.url("/upstream/m.pth"), body, mirrors=(mirror,)))
    assert get_weights_file("m", progress=False).read_bytes() == body
    assert weights_server.counts["/upstream/m.pth"] == 1


@pytest.mark.parametrize("start_method", [
    "fork",  # four processes that already imported codecloss: fast
    # four fresh interpreters as torchrun starts DDP ranks; each imports torch (minutes on a loaded 2-core box)
    pytest.param("spawn", marks=pytest.mark.slow),
])
def test_four_processes_download_once(weights_server, weights_env, tmp_path, monkeypatch, start_method):
    body = os.urandom(300_000)
    url = weights_server.serve("/w/shared.pth", body, delay=0.5)  # slow enough that all four overlap
    spec = entry("shared", url, body)
    user_registry = tmp_path / "registry.json"
    user_registry.write_text(json.dumps([{"name": spec.name, "url": spec.url, "sha256": spec.sha256}]))
    monkeypatch.setenv("CODECLOSS_REGISTRY", str(user_registry))  # children know the entry from this file
    ctx = multiprocessing.get_context(start_method)
    barrier, results = ctx.Barrier(4), ctx.Queue()
    children = [ctx.Process(target=fetch_in_child, args=("shared", barrier, results)) for _ in range(4)]
    for child in children:
        child.start()
    got = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert all(child.exitcode == 0 for child in children)
    expected = (str(weights_env / "weights" / "shared.pth"), hashlib.sha256(body).hexdigest())
    assert got == [expected] * 4
    assert weights_server.counts["/w/shared.pth"] == 1
    assert _files(weights_env) == ["shared.pth"]


def test_offline_uses_cache_and_never_the_network(weights_server, monkeypatch):
    body = b"cached" * 100
    _register(weights_server, "c", body)
    get_weights_file("c", progress=False)
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    assert get_weights_file("c", progress=False).read_bytes() == body
    assert weights_server.counts["/w/c.pth"] == 1


def test_offline_without_cache_names_entry_file_url_and_remedies(weights_server, weights_env, monkeypatch):
    spec = _register(weights_server, "nc", b"n" * 10)
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        get_weights_file("nc", progress=False)
    message = str(info.value)
    for part in ("'nc'", "'nc.pth'", spec.url, "codecloss weights fetch nc", "codecloss weights import nc FILE"):
        assert part in message
    assert weights_server.counts["/w/nc.pth"] == 0
    assert _files(weights_env) == []


def test_offline_default_zoo_weights_fail_without_network(monkeypatch):
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    with pytest.raises(OfflineError, match="bmshj2018-factorized-prior-1-446d5c7f.pth.tar"):
        codecloss.CodecPerceptualLoss(backbone="bmshj2018-factorized-mse-q1")


def test_http_mirror_replaces_the_url_base(weights_server, monkeypatch):
    body = b"mirrored" * 100
    upstream = weights_server.serve("/upstream/models/v1/mm.pth", body, 404)
    weights_server.serve("/company/mirror/mm.pth", body)
    register_weights(entry("mm", upstream, body))
    monkeypatch.setenv("CODECLOSS_MIRROR", weights_server.url("/company/mirror/"))
    assert get_weights_file("mm", progress=False).read_bytes() == body
    assert weights_server.counts["/upstream/models/v1/mm.pth"] == 0
    assert weights_server.counts["/company/mirror/mm.pth"] == 1


def test_file_mirror_works_offline(weights_server, tmp_path, monkeypatch):
    body = b"on a usb stick" * 100
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fm.pth").write_bytes(body)
    _register(weights_server, "fm", body)
    monkeypatch.setenv("CODECLOSS_MIRROR", mirror.as_uri())
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    assert get_weights_file("fm", progress=False).read_bytes() == body
    assert weights_server.counts["/w/fm.pth"] == 0


def test_missing_file_in_file_mirror_is_not_retried(weights_server, tmp_path, monkeypatch):
    _register(weights_server, "fx", b"q")
    monkeypatch.setenv("CODECLOSS_MIRROR", tmp_path.as_uri())
    with pytest.raises(DownloadError, match=r"No such file.*\(not retried\)"):
        get_weights_file("fx", progress=False)


def test_bad_mirror_scheme_is_a_usage_error(weights_server, monkeypatch):
    _register(weights_server, "bm", b"q")
    monkeypatch.setenv("CODECLOSS_MIRROR", "ftp://example.org/w")
    with pytest.raises(ValueError, match="CODECLOSS_MIRROR: expected an http"):
        get_weights_file("bm", progress=False)


def test_import_good_and_bad_file(weights_server, weights_env, tmp_path, monkeypatch):
    body = b"air-gapped" * 100
    spec = _register(weights_server, "imp", body)
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(body[:-1] + b"!")
    with pytest.raises(IntegrityError, match="does not match the registry"):
        import_weights("imp", bad)
    assert _files(weights_env) == []
    good = tmp_path / "good.pth"
    good.write_bytes(body)
    path = import_weights(spec.name, good)
    assert path == weights_env / "weights" / "imp.pth" and path.read_bytes() == body
    assert get_weights_file("imp", progress=False) == path
    assert weights_server.counts["/w/imp.pth"] == 0


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    # The digest memo is keyed on (size, mtime_ns); a same-size rewrite within one filesystem
    # timestamp tick would keep mtime, so make the rewrite visible as any later write would be.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_flipped_byte_is_detected_moved_aside_and_refetched(weights_server, weights_env, small_checkpoint):
    body, _ = small_checkpoint
    _register(weights_server, "rot", body, backbone=BACKBONE)
    path = get_weights_file("rot", progress=False)
    _flip_byte(path)
    state = registered_state_dict("rot", BACKBONE)
    assert state and path.read_bytes() == body
    assert (path.parent / "rot.pth.corrupt").read_bytes() != body
    assert weights_server.counts["/w/rot.pth"] == 2


def test_flipped_byte_offline_is_reported_never_used(weights_server, weights_env, monkeypatch):
    body = b"bits" * 1000
    _register(weights_server, "rot2", body)
    path = get_weights_file("rot2", progress=False)
    _flip_byte(path)
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"failed verification and was moved to .*rot2\.pth\.corrupt"):
        get_weights_file("rot2", progress=False)
    assert _files(weights_env) == ["rot2.pth.corrupt"]


def test_stale_partial_files_are_removed(weights_server, weights_env):
    (weights_env / "weights").mkdir(parents=True)
    (weights_env / "weights" / "p.pth.0123abcd.partial").write_bytes(b"left by a killed process")
    _register(weights_server, "p", b"p" * 10)
    get_weights_file("p", progress=False)
    assert _files(weights_env) == ["p.pth"]


def _closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_names_the_url_and_the_ways_around_it(weights_env):
    url = f"http://127.0.0.1:{_closed_port()}/w/far.pth"
    register_weights(entry("far", url, b"x" * 10))
    with pytest.raises(DownloadError) as info:
        get_weights_file("far", progress=False)
    message = str(info.value)
    assert "\n" not in message and f"{url}: " in message
    for hint in ("CODECLOSS_MIRROR=", "CODECLOSS_OFFLINE=1", "`codecloss weights import far FILE`"):
        assert hint in message


def test_unknown_host_is_not_retried(weights_env, monkeypatch, caplog):
    import socket

    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # what the resolver answers for an unknown name
    register_weights(entry("nowhere", "http://weights.example.invalid/w.pth", b"x" * 10))
    with caplog.at_level("WARNING"), pytest.raises(DownloadError, match=r"Name or service not known \(not retried\)"):
        get_weights_file("nowhere", progress=False)
    assert "retry" not in caplog.text


def test_zoo_backbone_behind_an_unreachable_mirror_fails_in_one_line(weights_env, monkeypatch, capsys):
    from codecloss.cli import main

    base = f"http://127.0.0.1:{_closed_port()}/zoo"
    monkeypatch.setenv("CODECLOSS_MIRROR", base)
    monkeypatch.setenv("CODECLOSS_RETRIES", "0")
    assert main(["weights", "fetch", "bmshj2018-factorized-mse-q1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{base}/bmshj2018-factorized-prior-1-446d5c7f.pth.tar: " in err
    assert "codecloss weights import bmshj2018-factorized-mse-q1 FILE" in err
