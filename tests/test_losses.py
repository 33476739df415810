"""CodecPerceptualLoss and the functional content/style/Gram terms."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import codecloss
import codecloss._layout
from codecloss import CodecPerceptualLoss, content_loss, gram_matrix, normalize_channels, style_loss
from codecloss.backbones import from_compressai, get_backbone_spec

SMALL = codecloss.DEFAULT_BACKBONE


@pytest.fixture(scope="module")
def extractor() -> codecloss.FeatureExtractor:
    return codecloss.load_backbone(SMALL, weights=None)


def make_loss(extractor, **kwargs) -> CodecPerceptualLoss:
    return CodecPerceptualLoss(backbone=extractor, **kwargs)


@pytest.mark.parametrize("content", ["l2", "l1", "normalized_l2"])
def test_identity_is_zero_and_distinct_is_positive(extractor, content: str) -> None:
    loss = make_loss(extractor, content=content, style_weight=1.0, reduction="none")
    x = torch.rand(3, 3, 40, 40)
    assert torch.equal(loss(x, x), torch.zeros(3))
    assert (loss(x, torch.rand_like(x)) > 0).all()


@pytest.mark.parametrize("content", ["l2", "l1", "normalized_l2"])
def test_content_terms_are_symmetric(extractor, content: str) -> None:
    loss = make_loss(extractor, content=content, reduction="none")
    x, y = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    torch.testing.assert_close(loss(x, y), loss(y, x))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reduction_none_equals_each_sample_alone(extractor, reduction: str) -> None:
    per_sample = make_loss(extractor, reduction="none", style_weight=0.5)
    reduced = make_loss(extractor, reduction=reduction, style_weight=0.5)
    x, y = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    values = per_sample(x, y)
    assert values.shape == (4,)
    alone = torch.stack([per_sample(x[i : i + 1], y[i : i + 1])[0] for i in range(4)])
    torch.testing.assert_close(values, alone, rtol=1e-4, atol=1e-7)
    expected = values.mean() if reduction == "mean" else values.sum()
    torch.testing.assert_close(reduced(x, y), expected)


@pytest.mark.parametrize("content", ["l2", "l1", "normalized_l2"])
@pytest.mark.parametrize("kind", ["random", "constant", "zeros"])
def test_gradients_are_finite(extractor, content: str, kind: str) -> None:
    loss = make_loss(extractor, content=content, style_weight=1.0)
    shape = (2, 3, 32, 32)
    x = {"random": torch.rand(shape), "constant": torch.full(shape, 0.5), "zeros": torch.zeros(shape)}[kind]
    x.requires_grad_(True)
    loss(x, torch.rand(shape)).backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_gradient_flows_to_target_when_asked(extractor) -> None:
    x = torch.rand(1, 3, 32, 32)
    y = torch.rand(1, 3, 32, 32, requires_grad=True)
    make_loss(extractor)(x, y).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_layer_weights_mapping_is_weighted_sum(extractor) -> None:
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    gdn1 = make_loss(extractor, layers=["gdn1"])(x, y)
    latent = make_loss(extractor, layers=["y"])(x, y)
    both = make_loss(extractor, layers={"y": 0.5, "gdn1": 2.0})(x, y)
    torch.testing.assert_close(both, 2.0 * gdn1 + 0.5 * latent)


def test_style_term_uses_style_target_of_any_size(extractor) -> None:
    loss = make_loss(extractor, layers=["gdn2"], style_layers=["gdn1", "gdn2"], style_weight=10.0, reduction="none")
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    style = torch.rand(1, 3, 64, 48)
    fx, fs = loss.features(x), loss.features(style)
    expected_style = style_loss(fx["gdn1"], fs["gdn1"]) + style_loss(fx["gdn2"], fs["gdn2"])
    expected = content_loss(fx["gdn2"], loss.features(y)["gdn2"]) + 10.0 * expected_style
    torch.testing.assert_close(loss(x, y, style_target=style), expected)


def test_default_layers_and_features_order(extractor) -> None:
    loss = make_loss(extractor, style_layers=["conv1"], style_weight=1.0)
    assert list(loss.layer_weights) == ["gdn1", "gdn2", "gdn3", "y"]
    feats = loss.features(torch.rand(1, 3, 32, 32))
    assert list(feats) == ["conv1", "gdn1", "gdn2", "gdn3", "y"]
    assert feats["y"].shape == (1, 192, 2, 2)


def test_input_range_minus_one_one_matches_unit_range(extractor) -> None:
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    unit = make_loss(extractor)(x, y)
    signed = make_loss(extractor, input_range=(-1, 1))(x * 2 - 1, y * 2 - 1)
    torch.testing.assert_close(unit, signed, rtol=1e-5, atol=1e-7)


def test_gram_matrix_normalisation_and_float32_under_autocast() -> None:
    f = torch.rand(2, 4, 5, 6)
    expected = torch.einsum("nchw,ndhw->ncd", f, f) / (4 * 5 * 6)
    torch.testing.assert_close(gram_matrix(f), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(f.bfloat16())
    assert g.dtype == torch.float32


def test_normalize_channels_unit_norm_and_finite_gradient_at_zero() -> None:
    f = torch.randn(2, 5, 3, 3)
    norms = normalize_channels(f).pow(2).sum(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)
    z = torch.zeros(1, 4, 2, 2, requires_grad=True)
    normalize_channels(z).sum().backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("target_layout", ["same", "channels_last", "broadcast"])
def test_l2_content_loss_value_and_gradients_match_autograd(monkeypatch, target_layout: str) -> None:
    """The chunked squared error equals ((fx - fy) ** 2).mean() in value and in both gradients."""
    monkeypatch.setattr(codecloss._layout, "CHUNK_ELEMENTS", 50)  # many chunks, the last one ragged
    fx = torch.randn(3, 5, 7, 6, dtype=torch.float64)
    fy = torch.randn(1 if target_layout == "broadcast" else 3, 5, 7, 6, dtype=torch.float64)
    if target_layout == "channels_last":
        fy = fy.contiguous(memory_format=torch.channels_last)
    ours = [fx.clone().requires_grad_(True), fy.clone().requires_grad_(True)]
    reference = [fx.clone().requires_grad_(True), fy.clone().requires_grad_(True)]
    value = content_loss(*ours, "l2")
    expected = (reference[0] - reference[1]).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(value, expected)
    weights = torch.rand(3, dtype=torch.float64)
    (value * weights).sum().backward()
    (expected * weights).sum().backward()
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine.grad, theirs.grad)
    assert torch.autograd.gradcheck(lambda a, b: content_loss(a, b, "l2"), tuple(reference))


def test_functional_terms_match_module(extractor) -> None:
    loss = make_loss(extractor, layers=["gdn3"], content="l1", reduction="none")
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    fx, fy = loss.features(x), loss.features(y)
    torch.testing.assert_close(loss(x, y), content_loss(fx["gdn3"], fy["gdn3"], "l1"))


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 3),
    height=st.integers(16, 72),
    width=st.integers(16, 72),
    input_range=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]),
    content=st.sampled_from(["l2", "l1", "normalized_l2"]),
)
def test_properties_over_shapes_and_ranges(extractor, batch, height, width, input_range, content) -> None:
    low, high = input_range
    loss = make_loss(extractor, content=content, input_range=input_range, reduction="none")
    x = low + (high - low) * torch.rand(batch, 3, height, width)
    y = low + (high - low) * torch.rand(batch, 3, height, width)
    values = loss(x, y)
    assert values.shape == (batch,)
    assert (values >= 0).all() and torch.isfinite(values).all()
    assert torch.equal(loss(x, x), torch.zeros(batch))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_moves(extractor, dtype: torch.dtype) -> None:
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    reference = make_loss(extractor)(x, y)
    loss = CodecPerceptualLoss(SMALL, weights=None)
    loss.extractor.load_state_dict(extractor.state_dict())
    loss = loss.to(dtype)
    assert all(p.dtype == dtype for p in loss.parameters())
    xd = x.to(dtype).requires_grad_(True)
    value = loss(xd, y.to(dtype))
    value.backward()
    assert torch.isfinite(xd.grad).all()
    tolerance = 0.05 if dtype == torch.bfloat16 else 1e-4
    torch.testing.assert_close(value.float(), reference, rtol=tolerance, atol=1e-6)


def test_float64_input_on_float32_loss_is_accepted(extractor) -> None:
    loss = make_loss(extractor)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    loss(x, torch.rand(1, 3, 32, 32, dtype=torch.float64)).backward()
    assert x.grad.dtype == torch.float64


def test_autocast_and_channels_last_agree_with_fp32(extractor) -> None:
    loss = make_loss(extractor, style_weight=1.0)
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    reference = loss(x, y)
    cl = loss(x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, reference, rtol=1e-4, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(x, y)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, rtol=0.1, atol=1e-3)


def test_random_weights_warn_once() -> None:
    from codecloss.backbones import _warn_random_once

    _warn_random_once.cache_clear()
    with pytest.warns(UserWarning, match="not perceptual"):
        codecloss.load_backbone("bmshj2018-factorized-mse-q1", weights=None)


def test_from_compressai_user_codec(extractor) -> None:
    codec = get_backbone_spec("bmshj2018-factorized-mse-q1").build_codec()
    loss = CodecPerceptualLoss(backbone=from_compressai(codec, "mine"), layers=["gdn1", "y"])
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x) == 0
    with pytest.raises(TypeError, match="model: expected a CompressAI model"):
        from_compressai(torch.nn.Conv2d(3, 3, 1))
