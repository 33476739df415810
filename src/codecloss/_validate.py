"""Shared input checks: every public entry point validates images through here.

Checks are on shapes and dtypes only (no host-device sync) unless
``check_finite=True`` is asked for.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

MIN_SIZE = 16


def check_choice(argument: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise ``ValueError`` naming the argument."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{argument}: got {value!r}, expected one of {choices}")
    return value  # type: ignore[return-value]


def check_input_range(input_range: Sequence[float]) -> tuple[float, float]:
    """Validate ``input_range=(low, high)`` with ``low < high``."""
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"input_range: got {input_range!r}, expected a pair (low, high) such as (0, 1) or (-1, 1)") from None
    if not low < high:
        raise ValueError(f"input_range: got {input_range!r}, expected low < high")
    return low, high


def check_image(
    x: Tensor,
    argument: str = "x",
    *,
    allow_grayscale: bool = False,
    check_finite: bool = False,
    min_size: int = MIN_SIZE,
    allow_uint8: bool = False,
) -> Tensor:
    """Check one image batch and return it as (N, 3, H, W) floating point.

    A single (C, H, W) image is batched; a 1-channel batch is repeated to RGB when
    ``allow_grayscale`` is set.

    Args:
        x: images, (N, C, H, W) or (C, H, W), floating point.
        argument: name used in error messages.
        allow_grayscale: accept C == 1.
        check_finite: also reject NaN/Inf values (synchronises with the device).
        min_size: smallest accepted height and width.
        allow_uint8: accept uint8 images too (for callers that convert them to float themselves).

    Returns:
        The images as an (N, 3, H, W) tensor (a view where possible).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{argument}: expected a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or (allow_uint8 and x.dtype == torch.uint8)):
        hint = " (for uint8 images use x.float() / 255)" if x.dtype == torch.uint8 else ""
        raise TypeError(f"{argument}: expected a floating point tensor, got dtype {x.dtype}{hint}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"{argument}: expected shape (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    channels = x.shape[1]
    if channels == 1 and allow_grayscale:
        x = x.expand(-1, 3, -1, -1)
    elif channels != 3:
        extra = "" if allow_grayscale else " (1 channel is accepted with allow_grayscale=True)"
        raise ValueError(f"{argument}: expected 3 channels{extra}, got {channels} in shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"{argument}: height and width must be >= {min_size}, got {tuple(x.shape[-2:])}")
    if check_finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{argument}: contains NaN or Inf values")
    return x


def check_pair(x: Tensor, y: Tensor, **kwargs: object) -> tuple[Tensor, Tensor]:
    """Check two image batches of the same shape; see :func:`check_image` for ``kwargs``."""
    x = check_image(x, "x", **kwargs)  # type: ignore[arg-type]
    y = check_image(y, "y", **kwargs)  # type: ignore[arg-type]
    if x.shape[-2:] != y.shape[-2:]:
        raise ValueError(
            f"x and y: images must have the same size, got {tuple(x.shape[-2:])} and {tuple(y.shape[-2:])} "
            "(H, W); resize or crop one of them to match"
        )
    if x.shape != y.shape:
        raise ValueError(f"x and y: expected the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def to_unit_range(x: Tensor, input_range: tuple[float, float]) -> Tensor:
    """Map images from ``input_range`` to [0, 1] (no-op for (0, 1))."""
    low, high = input_range
    if (low, high) == (0.0, 1.0):
        return x
    return (x - low) / (high - low)
