"""Shared input checks: every public entry point validates images and devices through here.

:func:`check_image` and :func:`check_pair` look at shapes and dtypes only (no host-device sync);
:func:`check_values` looks at the values (range and finiteness) with one reduction per image and
one host sync for all of them.
"""

from __future__ import annotations

import math
from typing import Collection, Iterable, Mapping, Sequence

import torch
from torch import Tensor

MIN_SIZE = 16

#: Values may leave ``input_range`` by this fraction of its width (resampling overshoot, rounding).
RANGE_TOLERANCE = 1e-3

#: Largest value of an ImageNet-normalised image: (1 - 0.406) / 0.225.
_IMAGENET_MAX = 2.65


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


def _spell(input_range: tuple[float, float], options: Mapping[tuple[float, float], str] | None) -> str:
    """How the caller asks for ``input_range`` (``input_range=(-1, 1)``, or an adapter's own option)."""
    if options is not None and input_range in options:
        return options[input_range]
    return f"input_range=({input_range[0]:g}, {input_range[1]:g})"


def _range_hint(
    lowest: float, highest: float, input_range: tuple[float, float], options: Mapping[tuple[float, float], str] | None
) -> str:
    """The likely convention of images with these extremes, and how to pass them."""
    low, high = input_range
    tolerance = RANGE_TOLERANCE * (high - low)
    if -1 - tolerance <= lowest < 0 and highest <= 1 + tolerance:
        return f"images in [-1, 1] (lpips-style) need {_spell((-1.0, 1.0), options)}"
    if lowest >= -tolerance and highest > 1 + tolerance:
        scale = "x / 255" if input_range == (0.0, 1.0) else f"x / 255 with {_spell((0.0, 1.0), options)}"
        return f"for images in [0, 255] use {scale}"
    if lowest < 0 and highest <= _IMAGENET_MAX:
        return ("codec inputs are raw RGB, not ImageNet-normalised: undo transforms.Normalize(mean, std) "
                "with x * std + mean")
    return f"rescale them to [{low:g}, {high:g}], or clamp small overshoots with x.clamp({low:g}, {high:g})"


def check_values(
    images: Mapping[str, Tensor],
    input_range: tuple[float, float],
    *,
    ranged: Collection[str] | None = None,
    options: Mapping[tuple[float, float], str] | None = None,
) -> None:
    """Reject images with NaN/Inf values, or with values outside ``input_range`` (with a hint at their convention).

    One ``torch.aminmax`` per image (NaN propagates to both extremes, Inf shows as one) and one host
    sync for all images together. Values may leave the range by :data:`RANGE_TOLERANCE` of its width.

    Args:
        images: argument name -> images (already checked by :func:`check_image`).
        input_range: the declared ``(low, high)``.
        ranged: names whose range is checked (default: all); the others are checked for NaN/Inf only.
        options: how the caller spells each range in hints (default ``input_range=(low, high)``),
            e.g. ``{(0.0, 1.0): "normalize=True", (-1.0, 1.0): "normalize=False"}``.

    Example:
        >>> check_values({"x": torch.rand(1, 3, 16, 16) * 2 - 1}, (0.0, 1.0))  # doctest: +SKIP
        ValueError: x: values must lie in [0, 1] (input_range=(0, 1)), got min -0.9991 and max 0.9987; images
        in [-1, 1] (lpips-style) need input_range=(-1, 1)
    """
    names = [name for name, image in images.items() if image.numel()]
    if not names:
        return
    device = images[names[0]].device
    extremes = torch.stack([torch.stack(torch.aminmax(images[n].detach())).to(device, torch.float32) for n in names])
    low, high = input_range
    tolerance = RANGE_TOLERANCE * (high - low)
    for name, (lowest, highest) in zip(names, extremes.tolist()):
        if not (math.isfinite(lowest) and math.isfinite(highest)):
            raise ValueError(
                f"{name}: contains NaN or Inf values; find where they arise, e.g. "
                "with torch.autograd.set_detect_anomaly(True), or replace them with torch.nan_to_num"
            )
        if (ranged is None or name in ranged) and (lowest < low - tolerance or highest > high + tolerance):
            raise ValueError(
                f"{name}: values must lie in [{low:g}, {high:g}] ({_spell(input_range, options)}), got min "
                f"{lowest:.4g} and max {highest:.4g}; {_range_hint(lowest, highest, input_range, options)}"
            )


def available_devices() -> list[str]:
    """The devices this machine can run on: ``cpu``, then ``cuda:K`` for each GPU and ``mps`` when present."""
    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: str | torch.device, argument: str = "device") -> torch.device:
    """Parse a device and check that this machine has it.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:K"``, ``"mps"`` or a ``torch.device``.
        argument: name used in error messages (``"--device"`` for commands).

    Returns:
        The ``torch.device``.

    Example:
        >>> check_device("cpu", "--device")
        device(type='cpu')
    """
    expected = f"expected one of {', '.join(available_devices())}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{argument}: got {device!r}, {expected}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{argument}: got {device!r}, but torch.cuda.is_available() is False; {expected}")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"{argument}: got {device!r}, but this machine has {torch.cuda.device_count()} GPU(s); {expected}"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{argument}: got {device!r}, but torch.backends.mps.is_available() is False; {expected}")
    return parsed
