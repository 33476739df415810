"""``codecloss upscale`` and :func:`codecloss.tasks.load_upscaler`: round trip, exact tiling, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codecloss.cli import main
from codecloss.tasks.sr_net import SRNet
from codecloss.tasks.sr_upscaler import MAX_MODEL_BYTES, save_upscaler, upscale_image


def _trained_like(channels: int = 8, blocks: int = 2) -> SRNet:
    """A network whose tail is not zero, so that it differs from bicubic and tiles can disagree."""
    torch.manual_seed(0)
    net = SRNet(channels, blocks)
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    return net.eval()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_upscaler(_trained_like(), tmp_path / "model.pth", {"loss": "l1"})


def _image(path: Path, w: int, h: int) -> Path:
    array = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def test_tiled_equals_untiled() -> None:
    net = _trained_like()
    lr = torch.rand(1, 3, 37, 29)
    whole = upscale_image(net, lr)
    assert whole.shape == (1, 3, 148, 116)
    assert torch.allclose(upscale_image(net, lr, tile=8), whole, atol=1e-5)


def test_upscale_round_trip(model: Path, tmp_path: Path, one_thread: None) -> None:
    from codecloss.evaluate.images import read_image
    from codecloss.tasks import load_upscaler

    source = _image(tmp_path / "in.png", 23, 17)
    assert main(["upscale", str(source), "-o", str(tmp_path / "out.png"), "--model", str(model)]) == 0
    assert main(["upscale", str(source), "-o", str(tmp_path / "tiled.png"), "--model", str(model), "--tile", "6"]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (68, 92, 3)
    tiled = np.asarray(Image.open(tmp_path / "tiled.png"))
    assert np.abs(out.astype(int) - tiled.astype(int)).max() <= 1  # float rounding at a .5 may flip one level
    expected = upscale_image(load_upscaler(model), read_image(source).unsqueeze(0))[0]
    assert np.abs(out.astype(float) - expected.permute(1, 2, 0).numpy() * 255).max() <= 0.5 + 1e-3
    assert not list(tmp_path.glob(".*tmp*"))


def test_model_files_are_small_and_half_when_needed(tmp_path: Path) -> None:
    from codecloss.tasks import load_upscaler

    net = SRNet(48, 8)  # 522k parameters: 2.1 MB in float32
    path = save_upscaler(net, tmp_path / "big.pth")
    assert path.stat().st_size <= MAX_MODEL_BYTES
    assert next(iter(torch.load(path, weights_only=True)["state_dict"].values())).dtype == torch.float16
    loaded = load_upscaler(path)
    assert next(loaded.parameters()).dtype == torch.float32
    assert save_upscaler(SRNet(32, 8), tmp_path / "default.pth").stat().st_size <= MAX_MODEL_BYTES


def _bad(kind: str, model: Path, tmp_path: Path) -> tuple[list[str], str, str]:
    """(args, argument named, message part) of one bad use."""
    source = _image(tmp_path / "in.png", 9, 8)
    args = ["upscale", str(source), "-o", str(tmp_path / "out.png"), "--model", str(model)]
    blob = torch.load(model, weights_only=True)
    if kind == "missing model":
        args[-1] = str(tmp_path / "none.pth")
        return args, "--model", "no such file"
    if kind in ("scale", "arch", "format"):
        change = {"scale": {"scale": 2}, "arch": {"arch": "rrdb"}, "format": {"format": "codecloss-stylizer"}}[kind]
        torch.save(blob | change, tmp_path / "other.pth")
        args[-1] = str(tmp_path / "other.pth")
        return args, "--model", {"scale": "x2", "arch": "rrdb", "format": "not an upscaler"}[kind]
    if kind == "state dict":
        torch.save(SRNet(8, 2).state_dict(), tmp_path / "sd.pth")
        args[-1] = str(tmp_path / "sd.pth")
        return args, "--model", "not an upscaler"
    if kind == "not an image":
        (tmp_path / "notes.png").write_text("not a PNG")
        args[1] = str(tmp_path / "notes.png")
        return args, "input", "cannot read image"
    if kind == "tiny image":
        args[1] = str(_image(tmp_path / "tiny.png", 3, 5))
        return args, "input", "at least 4x4"
    args[1] = str(tmp_path / "missing.png")
    return args, "input", "no such file"


@pytest.mark.parametrize("kind", ["missing model", "scale", "arch", "format", "state dict", "not an image", "tiny image",
                                  "missing input"])
def test_bad_input_is_one_line_exit_2(kind: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args, argument, message = _bad(kind, model, tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert argument in err and message in err, err
    assert not (tmp_path / "out.png").exists()
