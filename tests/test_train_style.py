"""`codecloss train-style` and `codecloss stylize --model`: the feed-forward stylizer, its training and model file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import codecloss
from codecloss.cli import main
from codecloss.tasks.stylizer_net import Stylizer, load_stylizer, save_stylizer
from codecloss.tasks.train_style import StyleTrainConfig, train_stylizer

SMALL = "codecloss-small-mse"


@pytest.fixture()
def folders(tmp_path):
    """A tiny folder of smooth 'photos' and a striped style image."""
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    yy, xx = np.mgrid[0:72, 0:80]
    for i in range(3):
        base = np.stack([np.sin(xx / (5 + i)), np.cos(yy / (7 - i)), np.sin((xx + yy) / 9)], -1) * 90 + 128
        Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)).save(photos / f"{i}.png")
    stripes = ((np.sin(np.mgrid[0:64, 0:64][1] / 1.5) > 0)[..., None] * np.array([220, 80, 20])).astype(np.uint8)
    style = tmp_path / "style.png"
    Image.fromarray(stripes).save(style)
    return photos, style


def _config(folders, tmp_path, **overrides) -> StyleTrainConfig:
    photos, style = folders
    settings = dict(style=str(style), out_dir=str(tmp_path / "run"), data_dirs=[str(photos)], backbone=SMALL,
                    size=32, batch=2, steps=3, width=4, blocks=1, checkpoint_every=1)
    settings.update(overrides)
    return StyleTrainConfig(**settings)


def test_stylizer_keeps_any_size_and_range() -> None:
    net = Stylizer(width=4, blocks=1).eval()
    for shape in ((1, 3, 33, 47), (2, 3, 16, 16)):
        with torch.no_grad():
            out = net(torch.rand(shape))
        assert out.shape == shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_same_seed_same_weights_and_exact_resume(folders, tmp_path, one_thread) -> None:
    first = train_stylizer(_config(folders, tmp_path, out_dir=str(tmp_path / "a"), steps=4))
    second = train_stylizer(_config(folders, tmp_path, out_dir=str(tmp_path / "b"), steps=2))
    second = train_stylizer(_config(folders, tmp_path, out_dir=str(tmp_path / "b"), steps=4), resume=True)
    a, b = load_stylizer(first["model"]), load_stylizer(second["model"])
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert first["terms"] == second["terms"] and second["steps"] == 4


def test_loss_decreases(folders, tmp_path, one_thread) -> None:
    summary = train_stylizer(_config(folders, tmp_path, steps=20, lr=5e-3, style_weight=10.0))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["total"] for r in log[:3]]), np.mean([r["total"] for r in log[-3:]])
    assert last < 0.8 * first, (first, last)
    assert summary["seconds_per_step"] > 0 and summary["parameters"] > 0


def test_bfloat16_loss_network_matches_float32_and_is_recorded(folders, tmp_path, one_thread) -> None:
    runs = {dtype: train_stylizer(_config(folders, tmp_path, out_dir=str(tmp_path / dtype), steps=1, dtype=dtype))
            for dtype in ("float32", "bfloat16")}
    assert runs["bfloat16"]["settings"]["dtype"] == "bfloat16" and runs["float32"]["settings"]["dtype"] == "float32"
    for term in ("content", "style", "total"):  # same network, same crops: only the loss network's precision differs
        assert runs["bfloat16"]["terms"][term] == pytest.approx(runs["float32"]["terms"][term], rel=0.01), term
    with pytest.raises(ValueError, match="dtype"):  # a run is resumed in the dtype it was trained in
        train_stylizer(_config(folders, tmp_path, out_dir=str(tmp_path / "float32"), steps=2, dtype="bfloat16"), resume=True)


def test_resume_refuses_other_settings_and_existing_run(folders, tmp_path, one_thread) -> None:
    train_stylizer(_config(folders, tmp_path, steps=1))
    with pytest.raises(ValueError, match="--resume"):
        train_stylizer(_config(folders, tmp_path, steps=2))
    with pytest.raises(ValueError, match="style_weight"):
        train_stylizer(_config(folders, tmp_path, steps=2, style_weight=3.0), resume=True)


def test_the_default_backbone_is_resolved_so_a_changed_default_cannot_resume(folders, tmp_path, monkeypatch) -> None:
    config = _config(folders, tmp_path, backbone=None)
    assert config.backbone == codecloss.DEFAULT_BACKBONE
    assert _config(folders, tmp_path, backbone=None, loss="vgg16").backbone is None  # VGG16 has no codec backbone
    monkeypatch.setattr(codecloss, "DEFAULT_BACKBONE", SMALL)
    train_stylizer(_config(folders, tmp_path, backbone=None, steps=1))
    monkeypatch.setattr(codecloss, "DEFAULT_BACKBONE", "codecloss-wide-mse")
    with pytest.raises(ValueError, match="backbone"):
        train_stylizer(_config(folders, tmp_path, backbone=None, steps=2), resume=True)


def test_model_file_round_trip(tmp_path) -> None:
    net = Stylizer(width=4, blocks=2)
    path = save_stylizer(net, tmp_path / "m.pth", {"style": "x"})
    loaded = load_stylizer(path)
    assert loaded.config() == {"width": 4, "blocks": 2} and loaded.meta == {"style": "x"}
    x = torch.rand(1, 3, 20, 28)
    assert torch.allclose(loaded(x), net.half().float().eval()(x), atol=1e-6)


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_load_refuses_files_that_are_not_stylizers(tmp_path, content) -> None:
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save({"weights": torch.zeros(1)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="model: .* not a"):
        load_stylizer(path)


@pytest.mark.parametrize("overrides, message", [
    ({"size": 16}, "size: expected crops of at least 32"),
    ({"loss": "vgg19"}, "loss: got 'vgg19'"),
    ({"style_weight": -1.0}, "style_weight: expected a finite number"),
    ({"steps": 0}, "steps: expected an integer >= 1"),
    ({"dtype": "int8"}, "dtype: expected one of auto, float32, bfloat16"),
])
def test_bad_settings_name_the_argument(folders, tmp_path, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        _config(folders, tmp_path, **overrides)


def test_cli_trains_then_stylizes_any_size(folders, tmp_path, capsys, one_thread) -> None:
    photos, style = folders
    out = tmp_path / "run"
    argv = ["train-style", str(style), "--out", str(out), "--data", str(photos), "--backbone", SMALL, "--size", "32",
            "--batch", "2", "--steps", "2", "--width", "4", "--blocks", "1", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["settings"]["loss"] == "codec"
    content = tmp_path / "content.png"
    Image.fromarray(np.full((37, 45, 3), 120, np.uint8)).save(content)
    result = tmp_path / "out.png"
    assert main(["stylize", str(content), "--model", str(out / "stylizer.pth"), "-o", str(result)]) == 0
    assert Image.open(result).size == (45, 37)
    capsys.readouterr()
    fast = tmp_path / "out-bf16.png"
    assert main(["stylize", str(content), "--model", str(out / "stylizer.pth"), "-o", str(fast), "--dtype", "bfloat16",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "bfloat16"
    exact, rounded = (np.asarray(Image.open(path), np.float64) for path in (result, fast))
    assert np.abs(exact - rounded).max() <= 8  # bfloat16's 8-bit mantissa: a few 8-bit levels at most


@pytest.mark.parametrize("case", ["missing_style", "unreadable_style", "small_crop", "not_a_model", "model_and_style"])
def test_cli_bad_input_is_one_line(folders, tmp_path, capsys, case) -> None:
    photos, style = folders
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"no image")
    content = tmp_path / "content.png"
    Image.fromarray(np.full((40, 40, 3), 99, np.uint8)).save(content)
    train = ["train-style", "--out", str(tmp_path / "r"), "--data", str(photos), "--backbone", SMALL, "--steps", "1",
             "--size", "32", "--width", "4", "--blocks", "1"]
    argv, word = {
        "missing_style": (train[:1] + [str(tmp_path / "none.jpg")] + train[1:], "style"),
        "unreadable_style": (train[:1] + [str(garbage)] + train[1:], "style"),
        "small_crop": (train[:1] + [str(style)] + train[1:] + ["--size", "8"], "size"),
        "not_a_model": (["stylize", str(content), "--model", str(garbage), "-o", str(tmp_path / "o.png")], "model"),
        "model_and_style": (["stylize", str(content), str(style), "--model", str(garbage), "-o", str(tmp_path / "o.png")],
                            "--model"),
    }[case]
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert word in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.png").exists()
