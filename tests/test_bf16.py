"""bfloat16 feature path: accuracy against float32, ``dtype=`` against autocast, float32 islands, bad dtypes.

The bounds hold with margin over what the default backbone (shipped weights) measured here, bf16
against fp32 on 4 Kodak 256-px crops (docs/benchmarks.md): loss relative error <= 0.0072, input-gradient
cosine >= 0.9990 and relative norm error <= 0.045, CPIPS relative error <= 0.0086.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import codecloss
from codecloss import CPIPS, CodecPerceptualLoss
from codecloss._dtype import check_dtype, fast_bf16_available
from codecloss.cpips import clear_metric_cache
from codecloss.losses import content_loss, gram_matrix

LOSS_REL, GRAD_COS, GRAD_REL, CPIPS_REL = 0.02, 0.995, 0.1, 0.03


@pytest.fixture(scope="module")
def loss32() -> CodecPerceptualLoss:
    return CodecPerceptualLoss()


def _value_and_grad(loss: CodecPerceptualLoss, x: torch.Tensor, y: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    value = loss(x, y, **kwargs)
    return value.detach(), torch.autograd.grad(value, x)[0]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors (F.cosine_similarity clamps tiny norms, as Gram gradients have, at 1e-8)."""
    return float(a.flatten() @ b.flatten() / (a.norm() * b.norm()))


def _assert_close_to_fp32(loss32: CodecPerceptualLoss, x: torch.Tensor, y: torch.Tensor, **options) -> None:
    style_target = options.pop("style_target", None)
    kwargs = {} if style_target is None else {"style_target": style_target}
    losses = [CodecPerceptualLoss(loss32.extractor, dtype=dtype, **options) for dtype in (torch.float32, torch.bfloat16)]
    (v32, g32), (v16, g16) = (_value_and_grad(loss, x, y, **kwargs) for loss in losses)
    assert v16.dtype == torch.float32 and g16.dtype == torch.float32
    assert float((v16 - v32).abs() / v32) <= LOSS_REL
    assert _cosine(g16, g32) >= GRAD_COS
    assert float((g16 - g32).norm() / g32.norm()) <= GRAD_REL


def _assert_cpips_close(loss32: CodecPerceptualLoss, x: torch.Tensor, y: torch.Tensor) -> None:
    d32 = CPIPS(loss32.extractor)(x, y)
    d16 = CPIPS(loss32.extractor, dtype=torch.bfloat16)(x, y)
    assert d16.dtype == torch.float32
    assert float(((d16 - d32).abs() / d32).max()) <= CPIPS_REL


def _smooth_images(batch: int, size: int) -> torch.Tensor:
    """Smooth synthetic images: a few random low-frequency sinusoids per channel, in [0, 1]."""
    grid = torch.linspace(0, 2 * math.pi, size)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    freqs, phases = torch.randint(1, 5, (batch, 3, 3, 2)).float(), torch.rand(batch, 3, 3) * 2 * math.pi
    waves = torch.sin(freqs[..., 0, None, None] * xx + freqs[..., 1, None, None] * yy + phases[..., None, None])
    return 0.5 + 0.15 * waves.sum(dim=2)


def _crop(path: Path, size: int = 256) -> torch.Tensor:
    image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    height, width = image.shape[1:]
    top, left = (height - size) // 2, (width - size) // 2
    return image[:, top:top + size, left:left + size]


def test_bf16_matches_fp32_on_smooth_images(loss32: CodecPerceptualLoss) -> None:
    y = _smooth_images(2, 128)
    x = (y + 0.05 * torch.randn_like(y)).clamp(0, 1)
    _assert_close_to_fp32(loss32, x, y)
    _assert_close_to_fp32(loss32, x, y, style_weight=1.0)
    _assert_cpips_close(loss32, x, y)


@pytest.mark.data
def test_bf16_matches_fp32_on_kodak_crops(loss32: CodecPerceptualLoss, shared_data: Path) -> None:
    y = torch.stack([_crop(shared_data / "eval" / "kodak" / f"kodim{i:02d}.png") for i in (1, 23)])
    noisy = (y + 0.05 * torch.randn_like(y)).clamp(0, 1)
    blurred = F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    for x in (noisy, blurred):
        _assert_close_to_fp32(loss32, x, y)
        _assert_cpips_close(loss32, x, y)


@pytest.mark.data
def test_bf16_gram_style_matches_fp32_on_artworks(loss32: CodecPerceptualLoss, shared_data: Path) -> None:
    content = _crop(shared_data / "eval" / "kodak" / "kodim01.png")[None]
    style = _crop(sorted((shared_data / "style" / "style").glob("*"))[0])[None]
    _assert_close_to_fp32(loss32, content, content, layers=[], style_layers=["gdn1", "gdn2", "gdn3"],
                          style_weight=1e3, style_target=style)


def test_dtype_option_equals_autocast(loss32: CodecPerceptualLoss) -> None:
    y = _smooth_images(2, 64)
    x = (y + 0.05 * torch.randn_like(y)).clamp(0, 1)
    bf16 = CodecPerceptualLoss(loss32.extractor, style_weight=1.0, dtype=torch.bfloat16)
    plain = CodecPerceptualLoss(loss32.extractor, style_weight=1.0)
    value, grad = _value_and_grad(bf16, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto_value, auto_grad = _value_and_grad(plain, x, y)
        forced = _value_and_grad(CodecPerceptualLoss(loss32.extractor, style_weight=1.0, dtype=torch.float32), x, y)
    assert torch.equal(value, auto_value) and torch.equal(grad, auto_grad)
    assert not torch.equal(value, forced[0])
    assert torch.equal(forced[0], _value_and_grad(plain, x, y)[0])  # dtype=float32 switches autocast off
    cpips = CPIPS(loss32.extractor, dtype=torch.bfloat16)(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(cpips, CPIPS(loss32.extractor)(x, y))
    clear_metric_cache()
    assert torch.equal(codecloss.metric(x, y, dtype=torch.bfloat16), cpips)


def test_features_are_bf16_and_gram_and_reductions_float32(loss32: CodecPerceptualLoss) -> None:
    x = _smooth_images(1, 64)
    features = CodecPerceptualLoss(loss32.extractor, dtype=torch.bfloat16).features(x)
    assert {f.dtype for f in features.values()} == {torch.bfloat16}
    f = features["gdn1"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gram_matrix(f).dtype == torch.float32
        for kind in ("l2", "l1", "normalized_l2"):
            assert content_loss(f, f.flip(-1), kind).dtype == torch.float32
    # squares are rounded to bf16 (unbiased, 2^-9 each) but summed in float32: measured 1.7e-4 off; a bfloat16
    # running sum of these terms is 74 % off
    expected = (f.float() - f.flip(-1).float()).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(content_loss(f, f.flip(-1)), expected, rtol=1e-3, atol=0)


def test_gdn_stays_bf16_within_a_few_ulps_of_float32(loss32: CodecPerceptualLoss) -> None:
    gdn = loss32.extractor.stages[1]
    x = torch.rand(2, gdn.beta.numel(), 8, 8, dtype=torch.bfloat16, requires_grad=True)
    out = gdn(x)
    assert out.dtype == torch.bfloat16
    assert out.grad_fn.saved_tensors[1].dtype == torch.bfloat16  # r = rsqrt(beta + gamma x^2), no float32 copy
    x32 = x.detach().float().requires_grad_(True)
    out32 = gdn(x32)
    # the norm is a sum of positive terms (no cancellation): the output is a few bf16 roundings off
    ulp = 2.0 ** -8
    assert ((out.float() - out32.detach()).abs() / out32.detach().abs().clamp_min(1e-6)).max() <= 4 * ulp
    (grad,) = torch.autograd.grad(out.float().square().sum(), x)
    (grad32,) = torch.autograd.grad(out32.square().sum(), x32)
    assert grad.dtype == torch.bfloat16
    assert _cosine(grad.float(), grad32) >= 0.999


@pytest.mark.parametrize("dtype", [torch.int8, torch.float64, "bfloat16", 16])
def test_bad_dtype_is_a_one_line_error(loss32: CodecPerceptualLoss, dtype: object) -> None:
    for build in (lambda: CodecPerceptualLoss(loss32.extractor, dtype=dtype), lambda: CPIPS(loss32.extractor, dtype=dtype),
                  lambda: codecloss.metric(torch.rand(3, 32, 32), torch.rand(3, 32, 32), dtype=dtype)):
        with pytest.raises(TypeError, match=r"^dtype: expected None or one of .*got") as error:
            build()
        assert "\n" not in str(error.value)


def test_float16_is_refused_on_cpu(loss32: CodecPerceptualLoss) -> None:
    loss = CodecPerceptualLoss(loss32.extractor, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"^dtype: torch.float16 is not supported on cpu"):
        loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert check_dtype(None) is None and check_dtype(torch.bfloat16) is torch.bfloat16


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, False), (True, False, True), (False, True, True)])
def test_fast_bf16_available_follows_the_cpu_capability(monkeypatch, avx512_bf16, amx, expected) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert fast_bf16_available("cpu") is expected
    assert fast_bf16_available(torch.device("meta")) is False


def test_fast_bf16_available_on_cuda_needs_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert fast_bf16_available("cuda") is False



@pytest.mark.parametrize("fast", [False, True])
def test_explicit_bfloat16_warns_where_it_is_slow(monkeypatch, caplog, fast) -> None:
    from codecloss._dtype import resolve_task_dtype

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: fast)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with caplog.at_level("WARNING", logger="codecloss._dtype"):
        assert resolve_task_dtype("bfloat16") is torch.bfloat16
        assert resolve_task_dtype("auto") is (torch.bfloat16 if fast else torch.float32)
    assert ("no fast bfloat16 units" in caplog.text) is not fast and len(caplog.records) == (0 if fast else 1)
