"""Every bad input raises a clear error naming the argument, the value and what is expected."""

from __future__ import annotations

import pytest
import torch

import codecloss
from codecloss import CodecPerceptualLoss


@pytest.fixture(scope="module")
def loss() -> CodecPerceptualLoss:
    return CodecPerceptualLoss(codecloss.DEFAULT_BACKBONE, weights=None)


@pytest.mark.parametrize(
    ("x", "y", "error", "pattern"),
    [
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 48), ValueError, r"x and y: .*same size.*\(32, 32\).*\(32, 48\).*resize or crop"),
        (torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32), ValueError, r"x and y: expected the same shape.*\(1, 3, 32, 32\).*\(2, 3, 32, 32\)"),
        (torch.rand(2, 1, 3, 32, 32), torch.rand(2, 1, 3, 32, 32), ValueError, r"x: expected shape \(N, 3, H, W\).*got \(2, 1, 3, 32, 32\)"),
        (torch.rand(32, 32), torch.rand(32, 32), ValueError, r"x: expected shape"),
        (torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32), ValueError, r"x: expected 3 channels.*allow_grayscale=True.*got 4"),
        (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), ValueError, r"x: expected 3 channels.*got 1"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, r"x: expected a floating point tensor, got dtype torch.uint8 \(for uint8 images use x.float\(\) / 255\)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int64), torch.zeros(1, 3, 32, 32), TypeError, r"x: expected a floating point tensor, got dtype torch.int64"),
        (torch.rand(1, 3, 15, 32), torch.rand(1, 3, 15, 32), ValueError, r"x: height and width must be >= 16, got \(15, 32\)"),
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32).numpy(), TypeError, r"y: expected a torch.Tensor, got ndarray"),
    ],
)
def test_bad_images(loss, x, y, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        loss(x, y)


def test_single_image_is_batched(loss) -> None:
    x = torch.rand(3, 32, 32)
    assert loss(x, x) == 0
    assert list(loss.features(x).values())[0].shape[0] == 1


def test_grayscale_when_allowed() -> None:
    gray = CodecPerceptualLoss(codecloss.DEFAULT_BACKBONE, weights=None, allow_grayscale=True, reduction="none")
    x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(gray(x, y), gray(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)))


def test_check_finite() -> None:
    strict = CodecPerceptualLoss(codecloss.DEFAULT_BACKBONE, weights=None, check_inputs="always")
    x = torch.rand(1, 3, 32, 32)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert strict(x, x) == 0
    with pytest.raises(ValueError, match="y: contains NaN or Inf"):
        strict(x, bad)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"backbone": "vgg16"}, ValueError, r"backbone: unknown backbone 'vgg16'; expected one of \[.*'bmshj2018-hyperprior-mse-q3'"),
        ({"backbone": 3}, TypeError, r"backbone: expected a backbone id"),
        ({"layers": ["relu1_2"]}, ValueError, r"layers: unknown tap 'relu1_2'.*expected one of \['conv1', 'gdn1'"),
        ({"layers": "gdn1"}, TypeError, r"layers: expected a sequence of tap names or a mapping"),
        ({"layers": {"gdn1": -1.0}}, ValueError, r"layers: weight of 'gdn1' must be a finite number >= 0, got -1.0"),
        ({"layers": {"gdn1": float("nan")}}, ValueError, r"layers: weight of 'gdn1' must be a finite number >= 0, got nan"),
        ({"layers": {"gdn1": float("inf")}}, ValueError, r"layers: weight of 'gdn1' must be a finite number >= 0, got inf"),
        ({"layers": {}}, ValueError, r"layers: expected at least one tap with a weight > 0, got \{\}; choose from \['conv1'"),
        ({"layers": []}, ValueError, r"layers: expected at least one tap with a weight > 0, got \{\}"),
        ({"layers": {"gdn1": 0, "y": 0.0}}, ValueError, r"layers: expected at least one tap with a weight > 0, got \{'gdn1': 0, 'y': 0.0\}"),
        ({"layers": {}, "style_layers": {}, "style_weight": 1.0}, ValueError, r"style_layers: expected at least one tap"),
        ({"layers": {}, "style_weight": 1.0}, ValueError, r"style_layers: expected at least one tap"),
        ({"style_layers": ["gdn1"]}, ValueError, r"style_layers: got \['gdn1'\], but style_weight=0 switches the style term off; pass style_weight > 0"),
        ({"style_weight": float("nan")}, ValueError, r"style_weight: expected a finite number >= 0, got nan"),
        ({"check_inputs": "sometimes"}, ValueError, r"check_inputs: got 'sometimes', expected one of \['first', 'always', 'never'\]"),
        ({"style_layers": ["nope"], "style_weight": 1.0}, ValueError, r"layers: unknown tap 'nope'"),
        ({"content": "l3"}, ValueError, r"content: got 'l3', expected one of \['l2', 'l1', 'normalized_l2'\]"),
        ({"reduction": "avg"}, ValueError, r"reduction: got 'avg', expected one of \['mean', 'sum', 'none'\]"),
        ({"style_weight": -1}, ValueError, r"style_weight: expected a finite number >= 0, got -1"),
        ({"input_range": (1, 0)}, ValueError, r"input_range: got \(1, 0\), expected low < high"),
        ({"input_range": "0-1"}, ValueError, r"input_range: got '0-1', expected a pair"),
        ({"weights": 3}, TypeError, r"weights: expected 'default', a registry name, a file path or None, got int"),
        ({"weights": "/no/such/file.pth"}, FileNotFoundError, r"weights: no such file '/no/such/file.pth'"),
    ],
)
def test_bad_arguments(kwargs, error, pattern) -> None:
    kwargs.setdefault("weights", None)
    with pytest.raises(error, match=pattern):
        CodecPerceptualLoss(**kwargs)


# --- values: range and finiteness (issue 23, item 3) -------------------------------------------------

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _with_nan(x: torch.Tensor) -> torch.Tensor:
    bad = x.clone()
    bad[0, 1, 2, 3] = float("nan")
    return bad


WRONG_CONVENTIONS = [
    (lambda a: a * 2 - 1, r"values must lie in \[0, 1\] \(input_range=\(0, 1\)\), got min -\d.*images in \[-1, 1\] \(lpips-style\) need input_range=\(-1, 1\)"),
    (lambda a: a * 255, r"values must lie in \[0, 1\].*max 2\d\d.*for images in \[0, 255\] use x / 255"),
    (lambda a: (a - IMAGENET_MEAN) / IMAGENET_STD, r"values must lie.*; codec inputs are raw RGB, not ImageNet-normalised"),
    (_with_nan, r"contains NaN or Inf values; find where they arise"),
    (lambda a: a.index_fill(3, torch.tensor([0]), float("inf")), r"contains NaN or Inf values"),
]


@pytest.mark.parametrize(("convert", "pattern"), WRONG_CONVENTIONS)
def test_metric_refuses_wrong_conventions(convert, pattern) -> None:
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="x: " + pattern):
        codecloss.metric(convert(a), b, weights=None)
    with pytest.raises(ValueError, match="y: " + pattern):
        codecloss.CPIPS(weights=None)(a, convert(b))


@pytest.mark.parametrize(("convert", "pattern"), WRONG_CONVENTIONS)
def test_loss_refuses_wrong_conventions_on_its_first_call(convert, pattern) -> None:
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="y: " + pattern):
        CodecPerceptualLoss(weights=None)(a, convert(b))


def test_signed_images_with_their_range_give_the_unit_range_value() -> None:
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    expected = codecloss.metric(a, b, weights=None)
    torch.testing.assert_close(codecloss.metric(a * 2 - 1, b * 2 - 1, weights=None, input_range=(-1, 1)), expected)


@pytest.mark.parametrize(("overshoot", "ok"), [(5e-4, True), (2e-3, False)])
def test_small_overshoot_is_tolerated(overshoot, ok) -> None:
    a = torch.rand(1, 3, 32, 32)
    a[0, 0, 0, :2] = torch.tensor([-overshoot, 1 + overshoot])
    if ok:
        codecloss.metric(a, a, weights=None)
    else:
        with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
            codecloss.metric(a, a, weights=None)


def _count_checks(monkeypatch: pytest.MonkeyPatch, module: str) -> list[int]:
    """Count the calls of ``check_values`` made from ``module`` (each one is a host sync)."""
    import importlib

    from codecloss import _validate

    calls: list[int] = []

    def counting(*args, **kwargs):
        calls.append(1)
        return _validate.check_values(*args, **kwargs)

    monkeypatch.setattr(importlib.import_module(module), "check_values", counting)
    return calls


@pytest.mark.parametrize(("mode", "syncs", "second_raises"), [("first", 1, False), ("always", 3, True), ("never", 0, False)])
def test_loss_checks_values_when_asked(monkeypatch, mode, syncs, second_raises) -> None:
    calls = _count_checks(monkeypatch, "codecloss.losses")
    loss = CodecPerceptualLoss(weights=None, check_inputs=mode)
    a = torch.rand(1, 3, 32, 32)
    loss(a, a)
    loss(a, a)
    if second_raises:
        with pytest.raises(ValueError, match="y: contains NaN"):
            loss(a, _with_nan(a))
    else:
        loss(a, _with_nan(a))
    assert len(calls) == syncs


def test_cpips_checks_every_call(monkeypatch) -> None:
    calls = _count_checks(monkeypatch, "codecloss.cpips")
    model = codecloss.CPIPS(weights=None)
    a = torch.rand(1, 3, 32, 32)
    model(a, a)
    with pytest.raises(ValueError, match="y: contains NaN"):
        model(a, _with_nan(a))
    assert len(calls) == 2


def test_loss_checks_predictions_for_nan_but_not_for_range() -> None:
    loss = CodecPerceptualLoss(weights=None, check_inputs="always")
    a = torch.rand(1, 3, 32, 32)
    loss(a * 1.1 - 0.05, a)  # a model's output overshooting [0, 1] while it trains
    loss.features(a * 1.1 - 0.05, prediction=True)
    with pytest.raises(ValueError, match="x: contains NaN"):
        loss(_with_nan(a), a)
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        loss.features(a * 2 - 1)


def test_style_only_loss_and_style_target_without_style_term() -> None:
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    style_only = CodecPerceptualLoss(weights=None, layers={}, style_layers=["gdn1"], style_weight=1.0)
    assert style_only(a, a, style_target=b) > 0
    with pytest.raises(ValueError, match=r"style_target: given, but this loss has no style term \(style_weight=0\)"):
        CodecPerceptualLoss(weights=None)(a, a, style_target=b)


# --- devices (issue 23, item 4) ----------------------------------------------------------------------


def test_check_device_without_gpu(monkeypatch) -> None:
    from codecloss._validate import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^--device: got 'cuda', but torch.cuda.is_available\(\) is False; expected one of cpu"):
        check_device("cuda", "--device")
    with pytest.raises(ValueError, match=r"^device: got 'gpu0', expected one of cpu"):
        check_device("gpu0")


def test_check_device_gpu_index(monkeypatch) -> None:
    from codecloss._validate import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"got 'cuda:3', but this machine has 1 GPU\(s\); expected one of cpu, cuda:0"):
        check_device("cuda:3")
