"""``codecloss weights``: list / fetch / verify / path / import / pin output and exit codes (0 ok, 1 failed, 2 usage)."""

from __future__ import annotations

import hashlib
import json

import pytest
from weights_server import entry, weights_env, weights_server  # noqa: F401

from codecloss import DEFAULT_BACKBONE
from codecloss.cli import main
from codecloss.weights import register_weights

pytestmark = pytest.mark.usefixtures("weights_env")

BODY = b"cli weights" * 200


@pytest.fixture
def served(weights_server):
    """Entry "cli-w" (full digest) served at /w/cli-w.pth, and "cli-404" whose URL answers 404."""
    register_weights(entry("cli-w", weights_server.serve("/w/cli-w.pth", BODY), BODY))
    register_weights(entry("cli-404", weights_server.url("/w/cli-404.pth"), b"never"))
    return weights_server


def test_list_json_and_table(served, capsys):
    assert main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) >= 90
    assert rows["cli-w"]["cached"] is False and rows["cli-w"]["verified"] is None
    assert rows["bmshj2018-factorized-mse-q1"]["check"] == "prefix"
    assert main(["weights", "fetch", "cli-w", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["weights", "list", "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}["cli-w"]
    assert (row["cached"], row["verified"], row["check"], row["size"]) == (True, True, "sha256", len(BODY))
    assert main(["weights", "list", "--backbone", "mbt2018-mse-q1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "BACKBONE", "SIZE", "CACHED", "VERIFIED"]
    assert [line.split()[0] for line in lines[1:]] == ["mbt2018-mse-q1"]


def test_fetch_exit_codes(served, capsys):
    assert main(["weights", "fetch", "cli-w", "--no-progress"]) == 0
    assert "cli-w.pth" in capsys.readouterr().out
    assert main(["weights", "fetch", "cli-w", "cli-404", "--no-progress"]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["weights", "fetch", "no-such-entry"]) == 2
    assert "unknown registry name" in capsys.readouterr().err
    assert main(["weights", "fetch"]) == 2
    assert main(["weights", "fetch", "cli-w", "--all"]) == 2
    assert served.counts["/w/cli-w.pth"] == 1


def test_verify_and_path(served, weights_env, capsys):
    assert main(["weights", "verify"]) == 0  # an empty cache: only the shipped default is checked
    out = capsys.readouterr().out
    assert f"{DEFAULT_BACKBONE}: ok (sha256)" in out and "cli-w" not in out
    assert main(["weights", "verify", "cli-w"]) == 1  # named but not cached
    assert main(["weights", "path", "cli-w"]) == 1
    main(["weights", "fetch", "cli-w", "--no-progress"])
    capsys.readouterr()
    assert main(["weights", "verify"]) == 0
    assert "cli-w: ok (sha256)" in capsys.readouterr().out
    assert main(["weights", "path", "cli-w"]) == 0
    path = weights_env / "weights" / "cli-w.pth"
    assert capsys.readouterr().out.strip() == str(path)
    path.write_bytes(BODY + b"?")  # a new size: the change is visible whatever the mtime resolution
    assert main(["weights", "verify", "cli-w"]) == 1
    assert "does not match the registry" in capsys.readouterr().err
    assert main(["weights", "path", "cli-w"]) == 1
    assert main(["weights", "path", "nope"]) == 2


def test_import_good_and_bad(served, tmp_path, capsys):
    bad, good = tmp_path / "bad.pth", tmp_path / "good.pth"
    bad.write_bytes(b"not it")
    good.write_bytes(BODY)
    assert main(["weights", "import", "cli-w", str(bad)]) == 1
    assert "nothing was written to the cache" in capsys.readouterr().err
    assert main(["weights", "import", "cli-w", str(tmp_path / "missing.pth")]) == 2
    assert main(["weights", "import", "cli-w", str(good)]) == 0
    assert main(["weights", "verify", "cli-w"]) == 0
    assert served.counts["/w/cli-w.pth"] == 0


def test_pin_prefix_only_files(weights_server, weights_env, tmp_path, capsys):
    digest = hashlib.sha256(BODY).hexdigest()
    register_weights(entry("cli-prefix", weights_server.serve(f"/w/cli-prefix-{digest[:8]}.pth", BODY), BODY,
                           prefix_only=True))
    assert main(["weights", "pin"]) == 0
    assert "nothing to pin" in capsys.readouterr().out
    main(["weights", "fetch", "cli-prefix", "--no-progress"])
    lock = tmp_path / "project-pins.json"
    assert main(["weights", "pin", "--lock", str(lock)]) == 0
    assert f"cli-prefix: pinned sha256 {digest}" in capsys.readouterr().out
    assert json.loads(lock.read_text())["sha256"] == {"cli-prefix": digest}
    assert main(["weights", "pin"]) == 0
    assert json.loads((weights_env / "pins.json").read_text())["sha256"] == {"cli-prefix": digest}
    assert main(["weights", "verify", "cli-prefix"]) == 0
    assert "cli-prefix: ok (pinned)" in capsys.readouterr().out


def test_weights_without_action_is_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["weights"])
    assert info.value.code == 2
