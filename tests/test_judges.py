"""Independent judges of style and texture: known answers."""

from __future__ import annotations

import pytest
import torch

from codecloss.tasks.judges import (
    colour_distance,
    content_ssim,
    dists_distance,
    judge_style,
    lpips_distance,
    random_vgg_gram_distance,
    texture_distance,
)


def _texture(seed: int, size: int = 128) -> torch.Tensor:
    """Oriented stripes with noise: one texture, different samples per seed."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    phase = torch.rand(1, generator=g) * 6.28
    stripes = (torch.sin((xx + 0.5 * yy) / 2.0 + phase) > 0).float()
    rgb = torch.stack([0.8 * stripes + 0.1, 0.3 * stripes + 0.2, 0.1 + 0.0 * stripes])
    return (rgb + 0.05 * torch.randn(3, size, size, generator=g)).clamp(0, 1)[None]


@pytest.mark.parametrize("judge", [texture_distance, random_vgg_gram_distance, colour_distance])
def test_identical_images_score_zero(judge) -> None:
    t = _texture(0)
    assert float(judge(t, t)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("judge", [texture_distance, random_vgg_gram_distance, colour_distance])
def test_a_texture_is_closer_to_itself_than_to_noise(judge) -> None:
    a, b = _texture(1), _texture(2)
    noise = torch.rand_like(a)
    assert float(judge(a, b)) < 0.5 * float(judge(noise, b))


def test_content_ssim_and_judge_style_keys() -> None:
    a = _texture(3)
    assert float(content_ssim(a, a)) == pytest.approx(1.0, abs=1e-5)
    scores = judge_style(a, _texture(4), content=a)
    assert set(scores) == {"texture_ps", "gram_random_vgg", "colour_swd", "content_ssim"}
    assert "content_ssim" not in judge_style(a, _texture(4))


def test_judges_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="128"):
        texture_distance(torch.rand(1, 3, 100, 100), torch.rand(1, 3, 100, 100))
    with pytest.raises(ValueError, match="batch"):
        random_vgg_gram_distance(torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 64))
    with pytest.raises(TypeError, match="x"):
        colour_distance(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.rand(1, 3, 32, 32))


def test_reference_judges_need_the_trunk_files(tmp_path) -> None:
    a = _texture(3)
    with pytest.raises(FileNotFoundError, match="^trunks: no alexnet_features.pth found"):
        lpips_distance(a, a)
    with pytest.raises(FileNotFoundError, match="^trunks: no vgg16_features.pth found"):
        dists_distance(a, a, trunks=tmp_path)


@pytest.mark.data
def test_reference_judges_with_real_trunks(shared_data) -> None:
    folder = shared_data / "reference" / "imagenet_features"
    a, b = _texture(1), _texture(2)
    noise = torch.rand_like(a)
    assert float(lpips_distance(a, a, folder)) == pytest.approx(0.0, abs=1e-6)
    assert float(dists_distance(a, a, folder)) == pytest.approx(0.0, abs=1e-5)
    assert float(dists_distance(a, b, folder)) < float(dists_distance(noise, b, folder))  # DISTS tolerates resampling
    blurred = torch.nn.functional.avg_pool2d(a, 3, stride=1, padding=1)
    assert float(lpips_distance(blurred, a, folder)) < float(lpips_distance(noise, a, folder))
    scores = judge_style(a, b, content=a, trunks=folder)
    assert set(scores) == {"texture_ps", "gram_random_vgg", "colour_swd", "content_ssim", "dists_style", "dists_content",
                           "lpips_alex_content"}
    assert scores["lpips_alex_content"] == pytest.approx(0.0, abs=1e-6)
    assert "lpips_alex_content" not in judge_style(a, b, trunks=folder)
