"""FrozenStemConv2d: the plain convolution's values, and its input gradient through the polyphase kernel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codecloss.backbones import get_backbone_spec
from codecloss.features import FeatureExtractor
from codecloss.stem import FrozenStemConv2d


@pytest.mark.parametrize("height, width", [(16, 16), (17, 22), (21, 19)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_input_gradient_equal_the_plain_convolution(height, width, channels_last, bias) -> None:
    conv = nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=bias).double().requires_grad_(False)
    stem = FrozenStemConv2d.from_conv(conv)
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn_like(conv(x))
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = stem(ours)
    torch.testing.assert_close(out, conv(theirs))
    out.backward(grad_out)
    conv(theirs).backward(grad_out)
    assert ours.grad.shape == x.shape
    torch.testing.assert_close(ours.grad, theirs.grad)
    assert torch.autograd.gradcheck(stem, (x[:1, :, :7, :9].clone().requires_grad_(True),))


def test_trainable_weights_fall_back_to_the_plain_convolution() -> None:
    stem = FrozenStemConv2d.from_conv(nn.Conv2d(3, 4, 5, stride=2, padding=2)).requires_grad_(True)
    stem(torch.rand(1, 3, 16, 16)).sum().backward()
    assert stem.weight.grad is not None


def test_only_matching_convolutions_are_accepted() -> None:
    assert FrozenStemConv2d.accepts(nn.Conv2d(3, 4, 5, stride=2, padding=2))
    for conv in (nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(3, 4, 5, stride=1, padding=2),
                 nn.Conv2d(4, 4, 5, stride=2, padding=2, groups=2), nn.ReLU()):
        assert not FrozenStemConv2d.accepts(conv)
    with pytest.raises(TypeError, match="conv"):
        FrozenStemConv2d.from_conv(nn.Conv2d(3, 4, 3, stride=2, padding=1))


@pytest.mark.parametrize("backbone, replaced", [("bmshj2018-hyperprior-mse-q1", True), ("cheng2020-anchor-mse-q1", False)])
def test_extractor_uses_the_stem_for_gdn_family_codecs(backbone: str, replaced: bool) -> None:
    extractor = FeatureExtractor(get_backbone_spec(backbone).build_codec().g_a)
    assert isinstance(extractor.stages[0], FrozenStemConv2d) == replaced
    if replaced:  # same parameters as the convolution it replaces, so checkpoints load unchanged
        assert set(extractor.stages[0].state_dict()) == {"weight", "bias"}
