"""The feed-forward stylizer of Johnson, Alahi & Fei-Fei (ECCV 2016), and its model file.

Downsampling by strided convolutions, residual blocks, instance normalisation, and upsampling by
nearest-neighbour resize followed by a convolution (Odena et al. 2016: transposed convolutions leave
checkerboards). Reflection padding everywhere; the output is squashed into [0, 1] by a sigmoid so that every
image it makes is a valid image. Width and depth are options: ``width=32, blocks=5`` is the paper's network.

Example:
    >>> net = Stylizer(width=8, blocks=1)
    >>> net(torch.rand(1, 3, 36, 52)).shape
    torch.Size([1, 3, 36, 52])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss._io import atomic_torch_save

__all__ = ["MODEL_FORMAT", "Stylizer", "load_stylizer", "save_stylizer"]

#: The ``format`` field of a stylizer model file.
MODEL_FORMAT = "codecloss-stylizer-1"

#: The network downsamples twice by 2: inputs are padded to a multiple of this and cropped back.
_ALIGN = 4


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(in_channels, out_channels, kernel, stride))


def _conv_norm_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, out_channels, kernel, stride),
                         nn.InstanceNorm2d(out_channels, affine=True), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_norm_relu(channels, channels, 3), _conv(channels, channels, 3),
                                  nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _Upsample(nn.Module):
    """Nearest-neighbour x2, then a convolution, instance norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _conv_norm_relu(in_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stylizer(nn.Module):
    """Image-to-image style network; any input size, output in [0, 1] of the input's size.

    Args:
        width: channels of the first stage (then 2x and 4x after each downsampling); the paper uses 32.
        blocks: residual blocks at the lowest resolution; the paper uses 5.
    """

    def __init__(self, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        for name, value in (("width", width), ("blocks", blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        self.width, self.blocks = width, blocks
        self.net = nn.Sequential(
            _conv_norm_relu(3, width, 9),
            _conv_norm_relu(width, 2 * width, 3, stride=2),
            _conv_norm_relu(2 * width, 4 * width, 3, stride=2),
            *(_Residual(4 * width) for _ in range(blocks)),
            _Upsample(4 * width, 2 * width),
            _Upsample(2 * width, width),
            _conv(width, 3, 9),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Stylize (N, 3, H, W) images in [0, 1]; H and W need not be multiples of anything."""
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % _ALIGN, -w % _ALIGN
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return torch.sigmoid(self.net(x))[..., :h, :w]

    def config(self) -> dict[str, int]:
        """The arguments that rebuild this network."""
        return {"width": self.width, "blocks": self.blocks}


def save_stylizer(model: Stylizer, path: str | os.PathLike[str], meta: dict[str, Any] | None = None,
                  half: bool = True) -> Path:
    """Write a stylizer model file atomically (parameters in float16 unless ``half=False``).

    Args:
        model: the trained network.
        path: destination file.
        meta: JSON-ready facts stored beside the weights (style, loss, steps, ...).
        half: store floating point tensors in float16 (half the size; loaded back as float32).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    return atomic_torch_save({"format": MODEL_FORMAT, "config": model.config(), "state_dict": state,
                              "meta": dict(meta or {})}, path)


def load_stylizer(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Stylizer:
    """Load a model file written by :func:`save_stylizer` (or ``codecloss train-style``) for inference.

    Args:
        path: the model file.
        device: where to put the network.

    Returns:
        The :class:`Stylizer` in eval mode, float32; its file's ``meta`` is in ``model.meta``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a codecloss stylizer model.

    Example:
        >>> net = load_stylizer("benchmarks/models/starry_night-codec.pth")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model: no such file {str(path)!r}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        raise ValueError(f"model: {str(path)!r} is not a readable torch file; expected a stylizer from "
                         "`codecloss train-style`") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"model: {str(path)!r} is not a stylizer (format {found!r}, expected {MODEL_FORMAT!r})")
    model = Stylizer(**blob["config"])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    except RuntimeError as err:
        raise ValueError(f"model: {str(path)!r} does not match its own config {blob['config']}: "
                         f"{str(err).splitlines()[0]}") from None
    model.meta = blob.get("meta", {})
    return model.to(device).eval()
