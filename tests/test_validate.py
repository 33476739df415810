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
    strict = CodecPerceptualLoss(codecloss.DEFAULT_BACKBONE, weights=None, check_finite=True)
    x = torch.rand(1, 3, 32, 32)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="y: contains NaN or Inf"):
        strict(x, bad)
    assert strict(x, x) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"backbone": "vgg16"}, ValueError, r"backbone: unknown backbone 'vgg16'; expected one of \[.*'bmshj2018-hyperprior-mse-q3'"),
        ({"backbone": 3}, TypeError, r"backbone: expected a backbone id"),
        ({"layers": ["relu1_2"]}, ValueError, r"layers: unknown tap 'relu1_2'.*expected one of \['conv1', 'gdn1'"),
        ({"layers": "gdn1"}, TypeError, r"layers: expected a sequence of tap names or a mapping"),
        ({"layers": {"gdn1": -1.0}}, ValueError, r"layers: weight of 'gdn1' must be a number >= 0, got -1.0"),
        ({"style_layers": ["nope"], "style_weight": 1.0}, ValueError, r"layers: unknown tap 'nope'"),
        ({"content": "l3"}, ValueError, r"content: got 'l3', expected one of \['l2', 'l1', 'normalized_l2'\]"),
        ({"reduction": "avg"}, ValueError, r"reduction: got 'avg', expected one of \['mean', 'sum', 'none'\]"),
        ({"style_weight": -1}, ValueError, r"style_weight: expected a number >= 0, got -1"),
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
