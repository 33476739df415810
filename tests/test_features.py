"""Feature taps: names, metadata, parity with CompressAI's own g_a, frozen-ness."""

from __future__ import annotations

import pytest
import torch
from compressai.layers import GDN

import codecloss
from codecloss.backbones import ZOO_ARCHITECTURES, get_backbone_spec
from codecloss.features import FeatureExtractor, FrozenGDN

PARITY_BACKBONES = [f"{arch}-mse-q1" for arch in ZOO_ARCHITECTURES] + [
    "bmshj2018-hyperprior-ms-ssim-q6",
    codecloss.DEFAULT_BACKBONE,
]


def _perturbed_codec(backbone: str) -> torch.nn.Module:
    """A random-init codec whose GDN parameters are moved off their identity-like init."""
    codec = get_backbone_spec(backbone).build_codec()
    with torch.no_grad():
        for module in codec.g_a.modules():
            if isinstance(module, GDN):
                module.beta.add_(torch.rand_like(module.beta))
                module.gamma.add_(0.05 * torch.rand_like(module.gamma))
    return codec


@pytest.mark.parametrize("backbone", PARITY_BACKBONES)
def test_taps_equal_compressai_g_a(backbone: str) -> None:
    codec = _perturbed_codec(backbone)
    extractor = FeatureExtractor(codec.g_a, backbone_id=backbone)
    reference = {}
    hooks = [
        stage.register_forward_hook(lambda _m, _i, out, i=i: reference.__setitem__(i, out.clone()))
        for i, stage in enumerate(codec.g_a)
    ]
    x = torch.rand(2, 3, 48, 80)
    with torch.no_grad():
        y_reference = codec.g_a(x)
        ours = extractor(x, extractor.tap_names)
    for hook in hooks:
        hook.remove()
    assert list(ours) == extractor.tap_names
    for tap in extractor.taps:
        torch.testing.assert_close(ours[tap.name], reference[tap.index], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["y"], y_reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("backbone", "names"),
    [
        ("bmshj2018-factorized-mse-q1", ["conv1", "gdn1", "conv2", "gdn2", "conv3", "gdn3", "y"]),
        ("mbt2018-ms-ssim-q8", ["conv1", "gdn1", "conv2", "gdn2", "conv3", "gdn3", "y"]),
        ("cheng2020-anchor-mse-q1", ["rbs1", "rb1", "rbs2", "rb2", "rbs3", "rb3", "y"]),
        ("cheng2020-attn-mse-q1", ["rbs1", "rb1", "rbs2", "attn2", "rb2", "rbs3", "rb3", "conv4", "y"]),
    ],
)
def test_tap_names_and_metadata(backbone: str, names: list[str]) -> None:
    taps = codecloss.list_layers(backbone)
    assert [t.name for t in taps] == names
    spec = get_backbone_spec(backbone)
    assert taps[-1].channels == spec.config[-1]
    assert taps[-1].stride == 16
    assert [t.stride for t in taps][:2] == [2, 2]
    assert [t.index for t in taps] == list(range(len(names)))


def test_tap_shapes_match_metadata_on_odd_sizes() -> None:
    extractor = FeatureExtractor(get_backbone_spec("cheng2020-attn-mse-q1").build_codec().g_a)
    x = torch.rand(1, 3, 37, 53)
    feats = extractor(x, extractor.tap_names)
    for tap in extractor.taps:
        f = feats[tap.name]
        assert f.shape[1] == tap.channels
        assert f.shape[-2:] == (-(-37 // tap.stride), -(-53 // tap.stride))


def test_extraction_stops_after_deepest_tap() -> None:
    extractor = FeatureExtractor(get_backbone_spec("bmshj2018-factorized-mse-q1").build_codec().g_a)
    ran = []
    for i, stage in enumerate(extractor.stages):
        stage.register_forward_hook(lambda *_a, i=i: ran.append(i))
    extractor(torch.rand(1, 3, 32, 32), ["gdn2", "conv1"])
    assert ran == [0, 1, 2, 3]


def test_backbone_is_frozen_and_stays_in_eval() -> None:
    loss = codecloss.CodecPerceptualLoss("bmshj2018-factorized-mse-q1", weights=None)
    assert all(not p.requires_grad for p in loss.parameters())
    assert [p for p in loss.parameters() if p.requires_grad] == []
    loss.train()
    assert not any(m.training for m in loss.extractor.modules())
    assert not loss.extractor.stages.training


def test_frozen_gdn_replaces_every_forward_gdn_and_leaves_source_untouched() -> None:
    codec = get_backbone_spec("cheng2020-anchor-mse-q1").build_codec()
    extractor = FeatureExtractor(codec.g_a)
    assert not any(type(m) is GDN for m in extractor.modules())
    assert sum(isinstance(m, FrozenGDN) for m in extractor.modules()) == 3
    assert sum(type(m) is GDN for m in codec.g_a.modules()) == 3
    assert all(p.requires_grad for p in codec.g_a.parameters())


@pytest.mark.parametrize("channels_last", [False, True])
def test_frozen_gdn_gradient_equals_compressai(channels_last: bool) -> None:
    """The hand-written backward matches autograd through CompressAI's GDN (float64), and gradcheck passes."""
    gdn = GDN(6).double()
    with torch.no_grad():  # non-trivial beta/gamma
        gdn.beta.add_(torch.rand(6, dtype=torch.float64))
        gdn.gamma.add_(0.1 * torch.rand(6, 6, dtype=torch.float64))
    frozen = FrozenGDN.from_gdn(gdn)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    frozen(ours).backward(grad_out)
    gdn(theirs).backward(grad_out)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(frozen, (x.clone().requires_grad_(True),))


def test_frozen_gdn_rejects_inverse_gdn() -> None:
    with pytest.raises(TypeError, match="gdn"):
        FrozenGDN.from_gdn(GDN(8, inverse=True))


def test_frozen_gdn_runs_in_float32_under_autocast() -> None:
    gdn = FrozenGDN.from_gdn(GDN(8))
    x = torch.rand(1, 8, 4, 4, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gdn(x)
    assert out.dtype == torch.bfloat16
    expected = gdn(x.float())
    torch.testing.assert_close(out.float(), expected, atol=1e-2, rtol=1e-2)


def test_unknown_tap_lists_valid_names() -> None:
    extractor = FeatureExtractor(get_backbone_spec("bmshj2018-factorized-mse-q1").build_codec().g_a)
    with pytest.raises(ValueError, match=r"layers: unknown tap 'relu1_2'.*'gdn1'"):
        extractor(torch.rand(1, 3, 32, 32), ["relu1_2"])
