"""Feature taps: names, metadata, parity with CompressAI's own g_a, frozen-ness."""

from __future__ import annotations

import pytest
import torch
from compressai.layers import GDN

import codecloss
from codecloss.backbones import ZOO_ARCHITECTURES, get_backbone_spec
import codecloss._layout
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


def _perturbed_gdn(channels: int) -> GDN:
    """A GDN with non-trivial beta and gamma."""
    gdn = GDN(channels)
    with torch.no_grad():
        gdn.beta.add_(torch.rand(channels))
        gdn.gamma.add_(0.1 * torch.rand(channels, channels))
    return gdn


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
    with torch.no_grad():  # without convolution taps, each GDN overwrites its convolution's output in place
        nonlinear = extractor(x, extractor.default_layers)
    for name, value in nonlinear.items():
        torch.testing.assert_close(value, reference[extractor.tap(name).index], atol=1e-5, rtol=1e-5)


def test_inplace_gdn_leaves_a_tapped_convolution_output_intact() -> None:
    extractor = FeatureExtractor(_perturbed_codec("bmshj2018-factorized-mse-q1").g_a)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    feats = extractor(x, ["conv1", "gdn1", "y"])
    with torch.no_grad():
        conv1 = extractor.stages[0](x)
    torch.testing.assert_close(feats["conv1"], conv1)
    torch.testing.assert_close(feats["gdn1"], extractor.stages[1](conv1))
    grad_all_taps = torch.autograd.grad(feats["y"].sum(), x)[0]
    grad_inplace = torch.autograd.grad(extractor(x, ["y"])["y"].sum(), x)[0]
    torch.testing.assert_close(grad_inplace, grad_all_taps)


@pytest.mark.parametrize("channels_last", [None, False, True])
def test_memory_format_choice_changes_layout_not_values(channels_last: bool | None) -> None:
    g_a = _perturbed_codec("bmshj2018-hyperprior-mse-q1").g_a
    reference = FeatureExtractor(g_a, channels_last=False)
    extractor = FeatureExtractor(g_a, channels_last=channels_last)
    x = torch.rand(2, 3, 48, 32)
    x_ours, x_theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours, theirs = extractor(x_ours, ["gdn2", "y"]), reference(x_theirs, ["gdn2", "y"])
    assert ours["gdn2"].is_contiguous(memory_format=torch.channels_last) == (channels_last is not False)
    torch.testing.assert_close(ours["gdn2"], theirs["gdn2"], atol=1e-5, rtol=1e-5)
    (ours["gdn2"].square().sum() + ours["y"].sum()).backward()
    (theirs["gdn2"].square().sum() + theirs["y"].sum()).backward()
    assert x_ours.grad.is_contiguous()  # .grad keeps the input's layout
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("backbone", "names"),
    [
        ("bmshj2018-factorized-mse-q1", ["conv1", "gdn1", "conv2", "gdn2", "conv3", "gdn3", "y"]),
        ("mbt2018-ms-ssim-q8", ["conv1", "gdn1", "conv2", "gdn2", "conv3", "gdn3", "y", "h1", "h2", "z"]),
        ("cheng2020-anchor-mse-q1", ["rbs1", "rb1", "rbs2", "rb2", "rbs3", "rb3", "y", "h1", "h2", "h3", "h4", "z"]),
        ("cheng2020-attn-mse-q1",
         ["rbs1", "rb1", "rbs2", "attn2", "rb2", "rbs3", "rb3", "conv4", "y", "h1", "h2", "h3", "h4", "z"]),
    ],
)
def test_tap_names_and_metadata(backbone: str, names: list[str]) -> None:
    taps = codecloss.list_layers(backbone)
    assert [t.name for t in taps] == names
    spec = get_backbone_spec(backbone)
    latent = taps[names.index("y")]
    assert latent.channels == spec.config[-1]
    assert latent.stride == 16
    assert taps[-1].stride == 64 if names[-1] == "z" else 16
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


@pytest.mark.parametrize("backbone", PARITY_BACKBONES)
def test_input_gradients_equal_compressai_g_a(backbone: str) -> None:
    """Backward through every tap works and matches autograd through CompressAI's own g_a.

    cheng2020's ResidualBlockWithStride adds its skip branch to the GDN output in place, which
    once broke the frozen GDN's saved output ("modified by an inplace operation").
    """
    codec = _perturbed_codec(backbone).double()
    extractor = FeatureExtractor(codec.g_a, backbone_id=backbone).double()
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sum(f.square().sum() for f in extractor(ours, extractor.tap_names).values()).backward()
    taps = {}
    hooks = [stage.register_forward_hook(lambda _m, _i, out, i=i: taps.__setitem__(i, out.clone()))
             for i, stage in enumerate(codec.g_a)]
    codec.g_a(theirs)
    for hook in hooks:
        hook.remove()
    sum(taps[t.index].square().sum() for t in extractor.taps).backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
def test_frozen_gdn_gradient_equals_compressai(channels_last: bool) -> None:
    """The hand-written backward matches autograd through CompressAI's GDN (float64), and gradcheck passes."""
    gdn = _perturbed_gdn(6).double()
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


@pytest.mark.parametrize("channels_last", [False, True])
def test_frozen_gdn_chunks_and_inplace_give_the_same_values_and_gradients(monkeypatch, channels_last: bool) -> None:
    frozen = FrozenGDN.from_gdn(_perturbed_gdn(16))
    x = torch.randn(3, 16, 9, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(3, 16, 9, 7)

    def run(inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
        leaf = x.clone().requires_grad_(True)
        source = leaf * 1  # a non-leaf the layer may overwrite
        out = frozen(source, inplace=inplace)
        assert (out.data_ptr() == source.data_ptr()) == inplace
        out.backward(grad_out)
        return out.detach(), leaf.grad

    whole = run(inplace=False)
    monkeypatch.setattr(codecloss._layout, "CHUNK_ELEMENTS", 100)  # many chunks, the last one ragged
    for inplace in (False, True):
        out, grad = run(inplace)
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(out, whole[0])
        torch.testing.assert_close(grad, whole[1])


def test_frozen_gdn_rejects_inverse_gdn() -> None:
    with pytest.raises(TypeError, match="gdn"):
        FrozenGDN.from_gdn(GDN(8, inverse=True))


def test_frozen_gdn_keeps_bfloat16_under_autocast() -> None:
    gdn = FrozenGDN.from_gdn(GDN(8))
    x = torch.rand(1, 8, 4, 4, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gdn(x)
    assert out.dtype == torch.bfloat16
    expected = gdn(x.float())  # the same bf16 values in float32: the norm, rsqrt and output are each rounded once
    torch.testing.assert_close(out.float(), expected, atol=0, rtol=4 * 2**-8)


def test_unknown_tap_lists_valid_names() -> None:
    extractor = FeatureExtractor(get_backbone_spec("bmshj2018-factorized-mse-q1").build_codec().g_a)
    with pytest.raises(ValueError, match=r"layers: unknown tap 'relu1_2'.*'gdn1'"):
        extractor(torch.rand(1, 3, 32, 32), ["relu1_2"])
