"""``codecloss metric`` tiles images above ``--max-pixels`` (exactly), and rejects bad ``--tile`` values."""

from __future__ import annotations

import json

import pytest

import codecloss.cpips
from codecloss.cli import main
from test_cli_metric import _png


@pytest.fixture()
def plans(monkeypatch):
    """The tile plan of every CPIPS call (``None``: untiled)."""
    seen = []
    original = codecloss.cpips.map_tiles

    def spy(fn, images, plan):
        seen.append(None if plan is None else plan.grid(*images[0].shape[-2:]))
        return original(fn, images, plan)

    monkeypatch.setattr(codecloss.cpips, "map_tiles", spy)
    return seen


def test_images_above_the_pixel_budget_are_tiled_exactly(tmp_path, capsys, plans):
    _png(tmp_path / "A" / "big.png", 0, size=(45, 70))
    _png(tmp_path / "B" / "big.png", 1, size=(45, 70))
    _png(tmp_path / "A" / "small.png", 2, size=(20, 24))
    _png(tmp_path / "B" / "small.png", 3, size=(20, 24))
    folders = [str(tmp_path / "A"), str(tmp_path / "B"), "--json"]
    assert main(["metric", *folders]) == 0  # default budget: nothing tiled
    untiled = {p["a"]: p["distance"] for p in json.loads(capsys.readouterr().out)["pairs"]}
    assert plans == [None, None]
    assert main(["metric", *folders, "--max-pixels", "1000", "--tile", "16"]) == 0  # 45*70 > 1000 >= 20*24
    tiled = {p["a"]: p["distance"] for p in json.loads(capsys.readouterr().out)["pairs"]}
    assert plans[2:] == [(3, 5), None]  # big.png in 3 x 5 tiles of 16 px, small.png whole
    assert tiled.keys() == untiled.keys()
    for name, distance in untiled.items():
        assert tiled[name] == pytest.approx(distance, rel=1e-5, abs=1e-8)


def test_bad_tile_values_are_clear_usage_errors(tmp_path, capsys):
    a = _png(tmp_path / "a.png", 0)
    assert main(["metric", str(a), str(a), "--tile", "8"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "codecloss metric: error: tile: expected an int >= 16 (the stride of tap 'y'), got 8"
    for bad in (["--tile", "abc"], ["--tile", "12.5"], ["--max-pixels", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["metric", str(a), str(a), *bad])
        assert exit_info.value.code == 2
        assert "invalid int value" in capsys.readouterr().err or bad[0] == "--max-pixels"
