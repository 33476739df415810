"""The embedded models: shipped files, offline use, real bitstreams, the model card's numbers, the wheel."""

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
from codecloss.specs import get_backbone_spec
from codecloss.weights import get_weight_spec, get_weights_file

ROOT = Path(__file__).resolve().parents[1]
MODEL_CARD = ROOT / "docs" / "model_card.md"
#: Every codec shipped in the wheel -> the dtype its parameters are stored in (loaded as float32).
SHIPPED = {"codecloss-wide-mse": torch.float16, "codecloss-small-mse": torch.float32, "codecloss-wide-sem": torch.float16}
ASSET = f"codecloss/assets/{codecloss.DEFAULT_BACKBONE}.pth"
HEADS = "cpips-wide-sem-lpips-vgg"  # CPIPS heads distilled from LPIPS-VGG for the default (opt-in)


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


def test_the_default_is_the_semantic_codec_and_all_are_shipped() -> None:
    assert codecloss.DEFAULT_BACKBONE == "codecloss-wide-sem"
    assert set(SHIPPED) == set(codecloss.list_backbones()[:3])
    assert [t.channels for t in codecloss.list_layers()] == [128] * 6 + [192]
    assert list(codecloss.CodecPerceptualLoss().layer_weights) == codecloss.CPIPS().layers == ["gdn1", "gdn2", "gdn3", "y"]


@pytest.mark.parametrize("backbone", list(SHIPPED))
def test_shipped_file_matches_its_full_digest_size_and_dtype(backbone: str) -> None:
    spec = get_weight_spec("default", backbone)
    assert spec.asset and spec.sha256 and len(spec.sha256) == 64
    path = get_weights_file("default", backbone)
    body = path.read_bytes()
    assert hashlib.sha256(body).hexdigest() == spec.sha256
    assert len(body) == spec.size <= 8_000_000  # the size budget of a file in the wheel
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = get_backbone_spec(backbone).build_codec()
    parameters = {name for name, _ in model.named_parameters()}
    assert {state[name].dtype for name in parameters} == {SHIPPED[backbone]}
    assert all(v.dtype == model.state_dict()[k].dtype for k, v in state.items() if k not in parameters)
    extractor = codecloss.load_backbone(backbone)
    assert all(p.dtype == torch.float32 for p in extractor.parameters()) and next(extractor.buffers()).dtype == torch.float32


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
    assert torch.equal(loss_fn.extractor.stages[0].weight, shipped["g_a.0.weight"].float())  # trained, not random
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


def test_shipped_cpips_heads_are_verified_offline_and_calibrated_for_the_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    monkeypatch.setenv("CODECLOSS_HOME", str(tmp_path / "home"))
    spec = get_weight_spec(HEADS)
    path = get_weights_file(HEADS)
    assert spec.asset and hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256 and path.stat().st_size == spec.size
    head = torch.load(path, map_location="cpu", weights_only=True)
    assert head["backbone"] == codecloss.DEFAULT_BACKBONE
    calibrated, uniform = codecloss.CPIPS(heads=HEADS), codecloss.CPIPS()
    x = _smooth_image(64)
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(calibrated(x, x)) == 0.0 and float(calibrated(x, y)) == pytest.approx(float(calibrated(y, x)), rel=1e-5)
    assert float(calibrated(x, y)) != pytest.approx(float(uniform(x, y)), rel=0.01)  # other weights, not uniform ones
    assert all(float(w.min()) >= 0 for w in head["lin"].values())
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("backbone", list(SHIPPED))
def test_codec_round_trips_a_real_bitstream(backbone: str) -> None:
    codec = codecloss.load_codec(backbone)
    x = _smooth_image(128)
    with torch.no_grad():
        out = codec.compress(x)
        x_hat = codec.decompress(out["strings"], out["shape"])["x_hat"].clamp(0, 1)
    nbytes = sum(len(s) for strings in out["strings"] for s in strings)
    bpp = 8 * nbytes / (128 * 128)
    assert 0.005 < bpp < 2.0, bpp
    assert 25.0 < _psnr(x, x_hat) < 60.0


def _card_rows(backbone: str) -> dict[str, tuple[float, float]]:
    """``{image: (bpp, psnr)}`` from the model card's per-image Kodak table of ``backbone``."""
    section = MODEL_CARD.read_text().split(f"<!-- kodak per image: {backbone} -->")[1]
    rows = re.findall(r"^\|\s*(kodim\d\d\.png)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", section.split("\n\n#")[0], re.M)
    return {name: (float(bpp), float(psnr)) for name, bpp, psnr in rows}


@pytest.mark.parametrize("backbone", list(SHIPPED))
def test_kodak_image_matches_the_model_card(shared_data: Path, backbone: str) -> None:
    image_path = shared_data / "eval" / "kodak" / "kodim23.png"
    if not image_path.is_file():
        pytest.skip(f"{image_path} not found")
    rows = _card_rows(backbone)
    assert len(rows) == 24
    card_bpp, card_psnr = rows["kodim23.png"]
    image = np.array(Image.open(image_path).convert("RGB"))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    codec = codecloss.load_codec(backbone)
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
        assert {f"codecloss/assets/{backbone}.pth" for backbone in SHIPPED} | {f"codecloss/assets/{HEADS}.pt"} <= set(
            archive.namelist())
        archive.extractall(target)  # what installing a pure-Python wheel puts in site-packages
    probe = ("import codecloss, codecloss.weights as w; "
             "print(w.get_weights_file('default', codecloss.DEFAULT_BACKBONE))")
    env = {**os.environ, "PYTHONPATH": str(target), "CODECLOSS_OFFLINE": "1", "CODECLOSS_HOME": str(tmp_path / "h")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == target / ASSET
