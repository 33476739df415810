"""Taps on a hyperprior's hyper-analysis ``h_a`` (``h1``, ``h2``, ``z``): names, strides, parity, weights, training."""

from __future__ import annotations

import pytest
import torch
from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior

from codecloss import CPIPS, CodecPerceptualLoss, from_compressai, load_backbone
from codecloss.features import FeatureExtractor
from codecloss.reference import trunk
from codecloss.train.semantic import Distillation

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("cls", "absolute"), [(ScaleHyperprior, True), (MeanScaleHyperprior, False)])
def test_taps_match_compressai_h_a(cls, absolute):
    torch.manual_seed(0)
    codec = cls(16, 24).eval()
    extractor = FeatureExtractor.from_codec(codec)
    assert [(t.name, t.channels, t.stride) for t in extractor.taps[-4:]] == [
        ("y", 24, 16), ("h1", 16, 16), ("h2", 16, 32), ("z", 16, 64)]
    assert [extractor.tap_sources[n] for n in ("gdn2", "y", "h1", "h2", "z")] == ["g_a.3", "g_a.6", "h_a.1", "h_a.3", "h_a.4"]
    assert extractor.default_layers == ["gdn1", "gdn2", "gdn3", "y"]  # h_a taps are opt-in
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        y = codec.g_a(x)
        h1 = codec.h_a[:2](y.abs() if absolute else y)
        z = codec.h_a[2:](h1.clone())
        other = codec.h_a(y if absolute else y.abs())  # the input the codec does not use
        features = extractor(x, ["y", "h1", "z"])
    torch.testing.assert_close(features["y"], y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features["h1"], h1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features["z"], z, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(features["z"], other, atol=1e-3)
    # receptive fields in pixels: 61 (y), +2 x 16 (3x3 conv), +4 x 16 and +4 x 32 (5x5 stride-2 convs)
    assert [1 + 2 * extractor.receptive_field(n)[0].left for n in ("y", "h1", "h2", "z")] == [61, 93, 157, 285]


def test_factorized_codecs_have_no_h_a_taps():
    assert FeatureExtractor.from_codec(FactorizedPrior(16, 24)).tap_names[-1] == "y"
    assert from_compressai(ScaleHyperprior(16, 24)).tap_names[-3:] == ["h1", "h2", "z"]
    assert FeatureExtractor.from_codec(ScaleHyperprior(16, 24), hyper=False).tap_names[-1] == "y"


def test_h_a_taps_need_h_a_weights(tmp_path):
    torch.manual_seed(0)
    codec = ScaleHyperprior(128, 192).eval()  # the (N, M) of bmshj2018-hyperprior-mse-q1
    full, g_a_only = tmp_path / "full.pth", tmp_path / "g_a.pth"
    torch.save(codec.state_dict(), full)
    torch.save(codec.g_a.state_dict(), g_a_only)
    loaded = load_backbone("bmshj2018-hyperprior-mse-q1", weights=str(full))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, ["z"])["z"], codec.h_a(codec.g_a(x).abs()), rtol=1e-5, atol=1e-5)
    # a g_a-only file leaves h_a random: its taps are not offered rather than random
    assert load_backbone("bmshj2018-hyperprior-mse-q1", weights=str(g_a_only)).tap_names[-1] == "y"
    with pytest.raises(ValueError, match="layers: unknown tap 'h2' for backbone 'bmshj2018-hyperprior-mse-q1'"):
        CodecPerceptualLoss(backbone="bmshj2018-hyperprior-mse-q1", weights=str(g_a_only), layers=["gdn3", "h2"])
    loss = CodecPerceptualLoss(backbone="bmshj2018-hyperprior-mse-q1", weights=str(full), layers=["gdn3", "h2"])
    y = torch.rand(1, 3, 64, 64, requires_grad=True)
    value = loss(y, x)
    value.backward()
    assert value.item() > 0 and y.grad.abs().sum() > 0


def test_semantic_term_trains_h_a_through_its_taps():
    torch.manual_seed(0)
    codec = ScaleHyperprior(16, 16).train()
    teacher = trunk("vgg16", weights=None, seed=0)
    distillation = Distillation(teacher, {"gdn3": "relu4_3", "h1": "relu5_3", "h2": "pool5"}, codec)
    wrapped = distillation.wrap(codec, distillation.heads())
    x = torch.rand(2, 3, 128, 128)
    out = wrapped(x)
    assert {k: tuple(v.shape) for k, v in out["semantic"].items()} == {
        "gdn3": (2, 512, 16, 16), "h1": (2, 512, 8, 8), "h2": (2, 512, 4, 4)}
    distillation.loss(out["semantic"], x).backward()
    assert codec.h_a[2].weight.grad.abs().sum() > 0 and codec.g_a[0].weight.grad.abs().sum() > 0
    assert codec.h_a[4].weight.grad is None  # z is not paired: nothing after h2 gets S's gradient
    with pytest.raises(ValueError, match="semantic_taps: h2=relu5_3: the codec tap has stride 32, the vgg16 layer 16; "
                                         r"pair layers of equal stride \(at 32: \['pool5'\]\)"):
        Distillation(teacher, {"h2": "relu5_3"}, codec)


def test_h_a_taps_tile_exactly():
    torch.manual_seed(0)
    metric = CPIPS(from_compressai(ScaleHyperprior(16, 24)), layers=["gdn2", "h2", "z"])
    x, y = torch.rand(2, 3, 200, 260), torch.rand(2, 3, 200, 260)
    with torch.no_grad():
        whole = metric(x, y)
        metric.tile = 128  # aligned to z's stride 64, with halos from z's 285 px field
        tiled = metric(x, y)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-7)
