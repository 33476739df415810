"""codecloss.integrations.lpips.LPIPS: values equal codecloss.metric; call sites and shapes as the real lpips.LPIPS."""

from __future__ import annotations

import inspect
import warnings
from unittest import mock

import pytest
import torch

import codecloss
from codecloss.integrations.lpips import LPIPS

lpips = pytest.importorskip("lpips")


def _no_download(*args, **kwargs):
    raise AssertionError(f"lpips tried to download: {args} {kwargs}")


@pytest.fixture(scope="module")
def real():
    """The real lpips with random trunk and linear layers (pnet_rand=True, pretrained=False): no file is read."""
    with mock.patch("torch.hub.load_state_dict_from_url", _no_download), \
            mock.patch("torch.hub.download_url_to_file", _no_download), \
            mock.patch("torch.load", _no_download), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision: lpips passes the deprecated `pretrained`
        plain = lpips.LPIPS(pretrained=False, pnet_rand=True, net="alex", verbose=False)
        spatial = lpips.LPIPS(pretrained=False, pnet_rand=True, net="alex", spatial=True, verbose=False)
    return {False: plain, True: spatial}


@pytest.fixture(scope="module")
def ours():
    return {False: LPIPS(), True: LPIPS(spatial=True)}


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 48, generator=g), torch.rand(2, 3, 32, 48, generator=g)


def test_values_equal_codecloss_metric(ours, images):
    x, y = images
    expected = codecloss.metric(x, y)
    torch.testing.assert_close(ours[False](x, y, normalize=True).flatten(), expected, rtol=1e-4, atol=0)
    torch.testing.assert_close(ours[False](x * 2 - 1, y * 2 - 1).flatten(), expected, rtol=1e-4, atol=0)
    # 32 x 48 are multiples of every tap's stride (16): the map's mean is the distance
    spatial = ours[True](x, y, normalize=True)
    torch.testing.assert_close(spatial.mean(dim=(1, 2, 3)), expected, rtol=1e-4, atol=0)


def test_per_layer_values_are_cpips_contributions(ours, images):
    x, y = images
    total, per_layer = ours[False](x, y, retPerLayer=True, normalize=True)
    _, parts = codecloss.CPIPS(per_layer=True)(x, y)
    assert ours[False].layers == list(parts) == codecloss.CPIPS().layers
    for value, tap in zip(per_layer, parts):
        torch.testing.assert_close(value.flatten(), parts[tap], rtol=1e-4, atol=0)
    torch.testing.assert_close(torch.stack(per_layer).sum(dim=0), total, rtol=1e-5, atol=0)


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_shapes_match_real_lpips(real, ours, images, spatial, normalize, batch):
    x, y = (t[:batch] for t in images)
    if not normalize:
        x, y = x * 2 - 1, y * 2 - 1
    with torch.no_grad():
        theirs = real[spatial](x, y, normalize=normalize)
        mine = ours[spatial](x, y, normalize=normalize)
        assert mine.shape == theirs.shape == ((batch, 1, 32, 48) if spatial else (batch, 1, 1, 1))
        theirs_total, theirs_layers = real[spatial](x, y, retPerLayer=True, normalize=normalize)
        mine_total, mine_layers = ours[spatial](x, y, retPerLayer=True, normalize=normalize)
    assert type(mine_layers) is type(theirs_layers) is list
    assert mine_total.shape == theirs_total.shape
    assert {t.shape for t in mine_layers} == {t.shape for t in theirs_layers} == {theirs_total.shape}
    assert len(mine_layers) == len(ours[spatial].layers)


def test_positional_call_sites_match_real_lpips(real, ours, images):
    x, y = images
    for model in (real[False], ours[False]):
        total, layers = model(x, y, True, True)  # forward(in0, in1, retPerLayer, normalize)
        assert total.shape == (2, 1, 1, 1) and isinstance(layers, list)


def test_signatures_cover_lpips():
    theirs = inspect.signature(lpips.LPIPS.__init__).parameters
    mine = inspect.signature(LPIPS.__init__).parameters
    assert set(theirs) <= set(mine), sorted(set(theirs) - set(mine))
    assert list(inspect.signature(LPIPS.forward).parameters) == list(inspect.signature(lpips.LPIPS.forward).parameters)
    assert inspect.signature(LPIPS.forward).parameters["normalize"].default is False
    assert inspect.signature(LPIPS.forward).parameters["retPerLayer"].default is False


def test_gradients_reach_the_images(ours, images):
    x, y = images
    x = x.clone().requires_grad_(True)
    ours[False](x, y, normalize=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in ours[False].parameters())


def test_lpips_options_map_onto_codecloss(images):
    x, y = images
    random_backbone = LPIPS(pnet_rand=True)  # weights=None: random trunk, as lpips
    reference = codecloss.CPIPS(weights=None)
    reference.load_state_dict(random_backbone.cpips.state_dict())
    torch.testing.assert_close(random_backbone(x, y, normalize=True).flatten(), reference(x, y), rtol=1e-4, atol=0)
    baseline = LPIPS(lpips=False, pretrained=False, use_dropout=False, eval_mode=False, verbose=False, version="0.1")
    assert baseline.cpips.heads_source == "uniform"
    torch.testing.assert_close(baseline(x, y, normalize=True).flatten(), codecloss.metric(x, y), rtol=1e-4, atol=0)
    assert LPIPS(layers=["gdn1", "y"]).layers == ["gdn1", "y"]


def test_model_path_is_a_head_file(tmp_path, ours, images):
    x, y = images
    head = ours[False].cpips.head_state()
    head["layers"] = ["gdn1", "gdn2"]
    head["lin"] = {tap: torch.rand_like(head["lin"][tap]) for tap in head["layers"]}
    torch.save(head, tmp_path / "head.pt")
    model = LPIPS(model_path=tmp_path / "head.pt")
    expected = codecloss.CPIPS(heads=tmp_path / "head.pt")(x, y)
    assert model.layers == ["gdn1", "gdn2"]
    torch.testing.assert_close(model(x, y, normalize=True).flatten(), expected, rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="pretrained=False and heads=.* contradict"):
        LPIPS(model_path=tmp_path / "head.pt", pretrained=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"net": "alex"}, ValueError, "net: 'alex' is an lpips trunk.*codecloss-wide-sem"),
        ({"net": "vgg"}, ValueError, "net: 'vgg' is an lpips trunk"),
        ({"net": 3}, TypeError, "net: expected a codecloss backbone id"),
        ({"version": "0.0"}, ValueError, "version: got '0.0', expected '0.1'"),
        ({"pnet_tune": True}, ValueError, "pnet_tune: got True.*frozen"),
        ({"pnet_rand": True, "weights": "w.pth"}, ValueError, "pnet_rand=True and weights='w.pth' contradict"),
        ({"model_path": "a.pt", "heads": "b.pt"}, ValueError, "model_path='a.pt' and heads='b.pt' contradict"),
        ({"lpips": False, "heads": "b.pt"}, ValueError, "lpips=False and heads='b.pt' contradict"),
        ({"layers": ["relu1"]}, ValueError, "unknown tap 'relu1'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        LPIPS(**kwargs)


def test_bad_inputs(ours):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="same size"):
        ours[False](x, torch.rand(1, 3, 32, 48))
    with pytest.raises(TypeError, match="floating point"):
        ours[False](torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("convert", "normalize", "pattern"),
    [
        (lambda a: a * 2 - 1, True, r"in0: values must lie in \[0, 1\] \(normalize=True\).*need normalize=False"),
        (lambda a: a * 255, False, r"in0: values must lie in \[-1, 1\] \(normalize=False\).*x / 255 with normalize=True"),
        (lambda a: a.index_fill(2, torch.tensor([0]), float("nan")), False, r"in0: contains NaN or Inf"),
    ],
)
def test_values_are_checked_in_lpips_terms(convert, normalize, pattern):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=pattern):
        LPIPS()(convert(x), x, normalize=normalize)
