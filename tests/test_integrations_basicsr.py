"""codecloss.integrations.basicsr.CodecPerceptualLoss: BasicSR's PerceptualLoss contract on codec taps.

basicsr 1.4.2 does not import with torchvision >= 0.17 (it imports the removed
``torchvision.transforms.functional_tensor``). The contract tests below need no basicsr; the last
test runs the real ``basicsr.losses.basic_loss.PerceptualLoss.forward`` and ``build_loss`` when
basicsr is installed, making it importable in this process only by aliasing that one module to
``torchvision.transforms.functional`` (which has the same ``rgb_to_grayscale``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest
import torch
from torch import nn

import codecloss
from codecloss.integrations import basicsr as adapter
from codecloss.integrations.basicsr import CodecPerceptualLoss

LAYERS = {"gdn1": 1.0, "gdn2": 0.5, "y": 0.25}


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)


@pytest.fixture(scope="module")
def features():
    return codecloss.CodecPerceptualLoss(layers=LAYERS).features


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_perceptual_term_equals_codecloss_loss(images, criterion):
    x, y = images
    percep, style = CodecPerceptualLoss(LAYERS, perceptual_weight=0.7, criterion=criterion)(x, y)
    assert style is None
    expected = codecloss.CodecPerceptualLoss(layers=LAYERS, content=criterion)(x, y) * 0.7
    torch.testing.assert_close(percep, expected, rtol=1e-4, atol=0)


def test_style_term_with_l2_equals_codecloss_gram_loss(images):
    x, y = images
    percep, style = CodecPerceptualLoss(LAYERS, style_weight=3.0, criterion="l2")(x, y)
    both = codecloss.CodecPerceptualLoss(layers=LAYERS, content="l2", style_layers=LAYERS, style_weight=3.0)(x, y)
    torch.testing.assert_close(percep + style, both, rtol=1e-4, atol=0)
    content = codecloss.CodecPerceptualLoss(layers=LAYERS, content="l2")(x, y)
    torch.testing.assert_close(style, both - content, rtol=1e-4, atol=1e-7)


def test_frobenius_and_l1_style_follow_basicsr(images, features):
    x, y = images
    percep, style = CodecPerceptualLoss(LAYERS, criterion="fro", style_weight=2.0)(x, y)
    fx, fy = features(x), features(y)
    expected_percep = sum(torch.norm(fx[t] - fy[t], p="fro") * w for t, w in LAYERS.items())
    gram = codecloss.gram_matrix
    expected_style = 2.0 * sum(torch.norm(gram(fx[t]) - gram(fy[t]), p="fro") * w for t, w in LAYERS.items())
    torch.testing.assert_close(percep, expected_percep, rtol=1e-4, atol=0)
    torch.testing.assert_close(style, expected_style, rtol=1e-4, atol=0)
    _, style_l1 = CodecPerceptualLoss(LAYERS, criterion="l1", style_weight=2.0, perceptual_weight=0)(x, y)
    expected_l1 = 2.0 * sum((gram(fx[t]) - gram(fy[t])).abs().mean() * w for t, w in LAYERS.items())
    torch.testing.assert_close(style_l1, expected_l1, rtol=1e-4, atol=0)


def test_tuple_contract_and_gradients(images):
    x, y = images
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    loss_fn = CodecPerceptualLoss(LAYERS, style_weight=1.0)
    percep, style = loss_fn(x, y)
    assert percep.shape == style.shape == torch.Size([])
    (percep + style).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None  # BasicSR detaches the target
    assert all(not p.requires_grad for p in loss_fn.parameters())
    assert CodecPerceptualLoss(LAYERS, perceptual_weight=0, style_weight=1.0)(x, y)[0] is None
    assert CodecPerceptualLoss(LAYERS)(x, y)[1] is None
    assert CodecPerceptualLoss(LAYERS, perceptual_weight=0)(x, y) == (None, None)


def test_range_norm_takes_minus_one_to_one(images):
    x, y = images
    unit = CodecPerceptualLoss(LAYERS, style_weight=1.0)(x, y)
    signed = CodecPerceptualLoss(LAYERS, style_weight=1.0, range_norm=True)(x * 2 - 1, y * 2 - 1)
    for a, b in zip(unit, signed):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"vgg_type": "vgg19"}, ValueError, "vgg_type: got 'vgg19'.*not a VGG.*backbone"),
        ({"use_input_norm": True}, ValueError, "use_input_norm: got True.*never ImageNet-normalised"),
        ({"use_input_norm": False}, ValueError, "use_input_norm: got False.*remove use_input_norm"),
        ({"criterion": "l3"}, ValueError, r"criterion: got 'l3', expected one of \['l1', 'l2', 'fro'\]"),
        ({"layer_weights": {"conv5_4": 1.0}}, ValueError, r"layer_weights: unknown taps \['conv5_4'\].*gdn1"),
        ({"layer_weights": ["gdn1"]}, TypeError, "layer_weights: expected a non-empty mapping"),
        ({"layer_weights": {}}, TypeError, "layer_weights: expected a non-empty mapping"),
        ({"layer_weights": {"gdn1": -1.0}}, ValueError, r"layer_weights\['gdn1'\]: expected a number >= 0, got -1.0"),
        ({"perceptual_weight": -1}, ValueError, "perceptual_weight: expected a number >= 0, got -1"),
        ({"style_weight": "1"}, ValueError, "style_weight: expected a number >= 0, got '1'"),
        ({"range_norm": "yes"}, TypeError, "range_norm: expected a bool"),
        ({"backbone": "vgg19"}, ValueError, "vgg19"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"layer_weights": LAYERS, **kwargs}
    with pytest.raises(error, match=match):
        CodecPerceptualLoss(**kwargs)


def test_bad_inputs(images):
    x, y = images
    loss_fn = CodecPerceptualLoss(LAYERS)
    shapes = r"\(2, 3, 32, 32\) and \(1, 3, 32, 32\)"
    with pytest.raises(ValueError, match=rf"x and gt: expected the same shape, got {shapes}"):
        loss_fn(x, y[:1])
    with pytest.raises(TypeError, match="uint8"):
        loss_fn(x.to(torch.uint8), y)


class _Registry:
    """The contract of basicsr.utils.registry.Registry that registration relies on."""

    def __init__(self) -> None:
        self._obj_map: dict[str, object] = {}

    def register(self, obj=None):
        assert obj.__name__ not in self._obj_map, "BasicSR asserts on duplicate names"
        self._obj_map[obj.__name__] = obj

    def get(self, name):
        return self._obj_map[name]

    def __contains__(self, name):
        return name in self._obj_map

    def __iter__(self):
        return iter(self._obj_map.items())


def test_registration_is_idempotent_and_builds_from_options():
    registry = _Registry()
    assert adapter.register(registry) and adapter.register(registry)
    options = {"type": "CodecPerceptualLoss", "layer_weights": {"gdn1": 1.0}, "perceptual_weight": 1.0,
               "style_weight": 0, "criterion": "l1", "range_norm": False}
    opt = dict(options)
    loss_fn = registry.get(opt.pop("type"))(**opt)  # what basicsr.losses.build_loss does
    assert isinstance(loss_fn, CodecPerceptualLoss) and loss_fn.layer_weights == {"gdn1": 1.0}
    taken = _Registry()
    taken.register(type("CodecPerceptualLoss", (), {}))
    assert adapter.register(taken) is False


def test_without_basicsr_nothing_is_registered(monkeypatch):
    monkeypatch.setitem(sys.modules, "basicsr", None)
    assert adapter.register() is False


def _import_basicsr(monkeypatch):
    if importlib.util.find_spec("basicsr") is None:
        pytest.skip("basicsr is not installed")
    try:
        importlib.import_module("torchvision.transforms.functional_tensor")
    except ImportError:  # removed in torchvision 0.17; basicsr 1.4.2 still imports it
        import torchvision.transforms.functional as functional

        monkeypatch.setitem(sys.modules, "torchvision.transforms.functional_tensor", functional)
    try:
        return importlib.import_module("basicsr.losses.basic_loss"), importlib.import_module("basicsr.losses")
    except ImportError as err:
        pytest.skip(f"basicsr does not import here: {err}")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # basicsr imports scipy.ndimage.filters
def test_real_basicsr_registry_and_perceptual_loss(monkeypatch, images):
    basic_loss, losses = _import_basicsr(monkeypatch)
    assert adapter.register()
    built = losses.build_loss({"type": "CodecPerceptualLoss", "layer_weights": LAYERS, "style_weight": 1.0})
    assert isinstance(built, CodecPerceptualLoss)

    class CodecTaps(nn.Module):  # BasicSR's VGGFeatureExtractor interface, returning codec taps
        def __init__(self, layer_name_list, vgg_type, use_input_norm, range_norm):
            super().__init__()
            self.features = codecloss.CodecPerceptualLoss(layers=layer_name_list,
                                                          input_range=(-1, 1) if range_norm else (0, 1)).features

        def forward(self, x):
            return self.features(x)

    monkeypatch.setattr(basic_loss, "VGGFeatureExtractor", CodecTaps)
    x, y = images
    for criterion in ("l1", "fro"):
        options = {"perceptual_weight": 0.5, "style_weight": 2.0, "criterion": criterion}
        theirs = basic_loss.PerceptualLoss(LAYERS, **options)(x, y)
        mine = CodecPerceptualLoss(LAYERS, **options)(x, y)
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=0)
    # basicsr 1.4.2's 'l2' names torch.nn.L2loss, which does not exist
    with pytest.raises(AttributeError, match="L2loss"):
        basic_loss.PerceptualLoss(LAYERS, criterion="l2")


def test_outputs_may_overshoot_but_targets_must_be_in_range():
    loss_fn = CodecPerceptualLoss(LAYERS)
    gt = torch.rand(1, 3, 32, 32)
    percep, _ = loss_fn(gt * 1.2 - 0.1, gt)  # an SR network's output overshooting [0, 1] while it trains
    assert percep > 0
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\].*need input_range=\(-1, 1\)"):
        CodecPerceptualLoss(LAYERS)(gt, gt * 2 - 1)
