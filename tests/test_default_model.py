"""The embedded default model: shipped file, offline use, real bitstreams, the model card's numbers, the wheel."""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import codecloss
from codecloss.weights import get_weight_spec, get_weights_file

ROOT = Path(__file__).resolve().parents[1]
MODEL_CARD = ROOT / "docs" / "model_card.md"
ASSET = f"codecloss/assets/{codecloss.DEFAULT_BACKBONE}.pth"


@pytest.fixture()
def offline_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CODECLOSS_OFFLINE=1, an empty CODECLOSS_HOME, and any network call fails the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    monkeypatch.setenv("CODECLOSS_HOME", str(home))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return home


def _smooth_image(size: int = 128) -> torch.Tensor:
    """A smooth synthetic colour image (gradients and a disc), (1, 3, size, size) in [0, 1]."""
    ramp = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")
    disc = ((xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.06).float()
    return torch.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy * (1 - disc) + 0.3 * disc, 0.8 - 0.5 * xx * yy])[None]


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / torch.mean((x - y) ** 2).item())


def test_shipped_file_matches_its_full_digest_and_size() -> None:
    spec = get_weight_spec("default", codecloss.DEFAULT_BACKBONE)
    assert spec.asset and spec.sha256 and len(spec.sha256) == 64
    path = get_weights_file("default", codecloss.DEFAULT_BACKBONE)
    body = path.read_bytes()
    assert hashlib.sha256(body).hexdigest() == spec.sha256
    assert len(body) == spec.size
    state = torch.load(path, map_location="cpu", weights_only=True)
    g_a_bytes = sum(v.numel() * v.element_size() for k, v in state.items() if k.startswith("g_a."))
    assert 0 < g_a_bytes <= 2_000_000  # the size budget for the shipped analysis transform
    assert all(v.dtype == torch.float32 for k, v in state.items() if k.startswith("g_a."))


def test_metric_and_loss_work_offline_with_an_empty_cache(offline_empty_cache: Path) -> None:
    x = _smooth_image(64)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    d = codecloss.metric(x, y)
    assert d.shape == (1,) and d.item() > 0
    assert codecloss.metric(x, x).item() == 0
    loss_fn = codecloss.CodecPerceptualLoss()
    y.requires_grad_(True)
    loss = loss_fn(y, x)
    loss.backward()
    assert loss.item() > 0 and y.grad.abs().sum() > 0
    shipped = torch.load(get_weights_file("default", codecloss.DEFAULT_BACKBONE), weights_only=True)
    assert torch.equal(loss_fn.extractor.stages[0].weight, shipped["g_a.0.weight"])  # trained, not random
    assert not offline_empty_cache.exists()  # nothing was written to the cache


def test_cli_metric_runs_offline_in_a_fresh_process(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    image = (_smooth_image(64)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(image).save(a)
    Image.fromarray(255 - image).save(b)
    env = {**os.environ, "CODECLOSS_OFFLINE": "1", "CODECLOSS_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "codecloss.cli", "metric", str(a), str(b)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) > 0
    assert not (tmp_path / "home").exists()


def test_codec_round_trips_a_real_bitstream() -> None:
    codec = codecloss.load_codec()
    x = _smooth_image(128)
    with torch.no_grad():
        out = codec.compress(x)
        x_hat = codec.decompress(out["strings"], out["shape"])["x_hat"].clamp(0, 1)
    nbytes = sum(len(s) for strings in out["strings"] for s in strings)
    bpp = 8 * nbytes / (128 * 128)
    assert 0.005 < bpp < 2.0, bpp
    assert 25.0 < _psnr(x, x_hat) < 60.0


def _card_rows() -> dict[str, tuple[float, float]]:
    """``{image: (bpp, psnr)}`` from the model card's per-image Kodak table."""
    rows = re.findall(r"^\|\s*(kodim\d\d\.png)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", MODEL_CARD.read_text(), re.M)
    return {name: (float(bpp), float(psnr)) for name, bpp, psnr in rows}


def test_kodak_image_matches_the_model_card(shared_data: Path) -> None:
    image_path = shared_data / "eval" / "kodak" / "kodim23.png"
    if not image_path.is_file():
        pytest.skip(f"{image_path} not found")
    card_bpp, card_psnr = _card_rows()["kodim23.png"]
    image = np.array(Image.open(image_path).convert("RGB"))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    codec = codecloss.load_codec()
    with torch.no_grad():
        out = codec.compress(x)
        x_hat = codec.decompress(out["strings"], out["shape"])["x_hat"].clamp(0, 1)
    bpp = 8 * sum(len(s) for strings in out["strings"] for s in strings) / (x.shape[-2] * x.shape[-1])
    assert bpp == pytest.approx(card_bpp, rel=0.10)
    assert _psnr(x, (x_hat * 255).round() / 255) == pytest.approx(card_psnr, rel=0.10)


def test_wheel_contains_the_shipped_file_and_an_installed_build_finds_it(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("codecloss-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert ASSET in archive.namelist()
        archive.extractall(target)  # what installing a pure-Python wheel puts in site-packages
    probe = ("import codecloss, codecloss.weights as w; "
             "print(w.get_weights_file('default', codecloss.DEFAULT_BACKBONE))")
    env = {**os.environ, "PYTHONPATH": str(target), "CODECLOSS_OFFLINE": "1", "CODECLOSS_HOME": str(tmp_path / "h")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == target / ASSET
