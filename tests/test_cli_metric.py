"""``codecloss metric A B``: files, folders, JSON, per-pair errors and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from codecloss.cli import main

BASE = ["--weights", "none"]


def _png(path, seed, size=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def test_two_files(tmp_path, capsys):
    a, b = _png(tmp_path / "a.png", 0), _png(tmp_path / "b.png", 1)
    assert main(["metric", str(a), str(a), *BASE]) == 0
    line = capsys.readouterr().out.strip().split("\t")
    assert line[:2] == [str(a), str(a)] and float(line[2]) == 0.0
    assert main(["metric", str(a), str(b), *BASE, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] == 0 and out["weights"] is None and out["heads"] == "uniform"
    assert out["pairs"][0]["distance"] > 0


def test_folders_matched_by_name_with_per_pair_errors(tmp_path, capsys):
    _png(tmp_path / "A" / "same.png", 0)
    _png(tmp_path / "B" / "same.png", 1)
    _png(tmp_path / "A" / "size.png", 2)
    _png(tmp_path / "B" / "size.png", 3, size=(48, 32))
    _png(tmp_path / "A" / "only_a.png", 4)
    (tmp_path / "B" / "broken.png").write_text("not an image")
    _png(tmp_path / "A" / "broken.png", 5)
    code = main(["metric", str(tmp_path / "A"), str(tmp_path / "B"), *BASE, "--json"])
    captured = capsys.readouterr()
    assert code == 1
    pairs = {p["a"].rsplit("/", 1)[-1]: p for p in json.loads(captured.out)["pairs"]}
    assert set(pairs) == {"same.png", "size.png", "only_a.png", "broken.png"}
    assert pairs["same.png"]["distance"] > 0
    assert "resize or crop" in pairs["size.png"]["error"]
    assert "no such image file" in pairs["only_a.png"]["error"]
    assert "cannot read image" in pairs["broken.png"]["error"]
    assert captured.err.count("codecloss metric: error:") == 3


def test_text_output_keeps_scoring_after_a_failure(tmp_path, capsys):
    _png(tmp_path / "A" / "1.png", 0)
    _png(tmp_path / "A" / "2.png", 1)
    _png(tmp_path / "B" / "2.png", 2)
    assert main(["metric", str(tmp_path / "A"), str(tmp_path / "B"), *BASE]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1 and "2.png" in captured.out
    assert "1.png" in captured.err


@pytest.mark.parametrize("extra", [["--backbone", "nope"], ["--layers", "nope"]])
def test_bad_model_options_are_usage_errors(tmp_path, capsys, extra):
    a = _png(tmp_path / "a.png", 0)
    assert main(["metric", str(a), str(a), *BASE, *extra]) == 2
    assert "nope" in capsys.readouterr().err


def test_file_and_folder_mixed_is_usage_error(tmp_path, capsys):
    a = _png(tmp_path / "a.png", 0)
    assert main(["metric", str(a), str(tmp_path), *BASE]) == 2
    assert "two files or two folders" in capsys.readouterr().err


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["metric", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--json", "--device", "--backbone", "--heads", "--weights"):
        assert option in out


@pytest.mark.parametrize(
    "command",
    [
        ["metric", "{a}", "{a}", *BASE],
        ["eval", "sanity", "--root", "{dir}", *BASE],
        ["stylize", "{a}", "{a}", "-o", "{dir}/out.png", *BASE],
        ["train-cpips", "--bapps", "{dir}", "--out", "{dir}/heads", *BASE],
    ],
)
def test_missing_gpu_is_one_line_usage_error(tmp_path, capsys, monkeypatch, command):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    a = _png(tmp_path / "a.png", 0)
    argv = [part.format(a=a, dir=tmp_path) for part in command]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "--device: got 'cuda', but torch.cuda.is_available() is False; expected one of cpu" in err
