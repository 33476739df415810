"""Verification of cached files: memoised digests, prefix-only entries and trust-on-first-use pins."""

from __future__ import annotations

import hashlib
import json
import types

import pytest
from weights_server import entry, weights_env, weights_server  # noqa: F401

from codecloss.weights import IntegrityError, get_weight_spec, get_weights_file, register_weights
from codecloss.weights import integrity
from codecloss.weights.cache import pins_path

pytestmark = pytest.mark.usefixtures("weights_env")


def test_repeated_loads_hash_once(weights_server, monkeypatch):
    body = b"w" * 5000
    register_weights(entry("memo", weights_server.serve("/w/memo.pth", body), body))
    calls = []
    counting = types.SimpleNamespace(sha256=lambda: calls.append(1) or hashlib.sha256())
    monkeypatch.setattr(integrity, "hashlib", counting)
    integrity._DIGESTS.clear()
    path = get_weights_file("memo", progress=False)
    for _ in range(3):
        assert get_weights_file("memo", progress=False) == path
    assert calls == []  # the download recorded its digest; loads reuse it
    integrity._DIGESTS.clear()  # as in a new process
    get_weights_file("memo", progress=False)
    get_weights_file("memo", progress=False)
    assert calls == [1]


def test_prefix_only_entry_pin_then_enforced(weights_server, weights_env):
    body = b"zoo-like checkpoint" * 300
    digest = hashlib.sha256(body).hexdigest()
    register_weights(entry("zoo-like", weights_server.serve(f"/v1/zoo-like-{digest[:8]}.pth.tar", body), body,
                           prefix_only=True))
    spec = get_weight_spec("zoo-like")
    path = get_weights_file("zoo-like", progress=False)
    assert integrity.digest_kind(spec) == "prefix"
    lock = integrity.write_pins({"zoo-like": integrity.verify_file(path, spec)})
    assert lock == pins_path() == weights_env / "pins.json"
    assert json.loads(lock.read_text())["sha256"] == {"zoo-like": digest}
    assert integrity.digest_kind(spec) == "pinned"
    # A pin differing beyond the published prefix is enforced: the same file now fails.
    other = digest[:8] + ("0" if digest[8] != "0" else "1") + digest[9:]
    integrity.write_pins({"zoo-like": other})
    with pytest.raises(IntegrityError, match=f"expected {other} pinned in"):
        integrity.verify_file(path, spec)


def test_pins_path_env_and_bad_pins_file(tmp_path, monkeypatch):
    custom = tmp_path / "project-pins.json"
    monkeypatch.setenv("CODECLOSS_PINS", str(custom))
    assert pins_path() == custom
    custom.write_text(json.dumps({"sha256": {"x": "not a digest"}}))
    with pytest.raises(ValueError, match="project-pins.json'.*expected"):
        integrity.read_pins()


def test_size_mismatch_is_reported(tmp_path):
    body = b"12345"
    spec = entry("sz", "https://example.org/sz.pth", body)
    path = tmp_path / "sz.pth"
    path.write_bytes(body + b"6")
    with pytest.raises(IntegrityError, match="size 6 bytes, expected 5"):
        integrity.verify_file(path, spec)
