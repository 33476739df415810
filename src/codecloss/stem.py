"""The first (stem) convolution of a GDN-family ``g_a``, with a faster input gradient."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["FrozenStemConv2d"]


class FrozenStemConv2d(nn.Conv2d):
    """A frozen 5x5, stride-2, padding-2 convolution whose input gradient runs as a stride-1 convolution.

    The forward pass is the plain convolution. Its input gradient, on an image with only 3 channels,
    is a transposed convolution that oneDNN runs far below peak. Split into its 2x2 polyphase
    components (space-to-depth, :func:`torch.nn.functional.pixel_unshuffle`), the same convolution is a
    3x3 stride-1 one on 4x as many channels, whose transposed convolution is about twice as fast on CPU.
    The result equals the plain gradient up to float rounding. When the weights require gradients,
    this layer is a plain :class:`~torch.nn.Conv2d`.

    Example:
        >>> stem = FrozenStemConv2d.from_conv(nn.Conv2d(3, 8, 5, stride=2, padding=2))
        >>> stem(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 8, 8, 8])
    """

    @staticmethod
    def accepts(conv: nn.Module) -> bool:
        """Whether ``conv`` is a plain 5x5, stride-2, padding-2, ungrouped 2-D convolution."""
        return (
            type(conv) is nn.Conv2d
            and conv.kernel_size == (5, 5)
            and conv.stride == (2, 2)
            and conv.padding == (2, 2)
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.padding_mode == "zeros"
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "FrozenStemConv2d":
        """A copy of ``conv`` (see :meth:`accepts`) with the same weights, frozen."""
        if not cls.accepts(conv):
            raise TypeError(f"conv: expected a 5x5, stride-2, padding-2 nn.Conv2d, got {conv!r}")
        stem = cls(conv.in_channels, conv.out_channels, 5, stride=2, padding=2, bias=conv.bias is not None)
        stem.load_state_dict(conv.state_dict())
        return stem.to(conv.weight.device, conv.weight.dtype).requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad):
            return super().forward(x)
        return _StemFunction.apply(x, self.weight, self.bias)


def _polyphase_weight(weight: Tensor) -> Tensor:
    """(O, C, 5, 5) stride-2 kernel -> (O, 4C, 3, 3) stride-1 kernel on the space-to-depth input.

    Tap ``k`` of the 5x5 kernel reads input pixel ``2i + k - 2``, i.e. phase ``p = k % 2`` of the
    space-to-depth image at offset ``k // 2 - 1``; a zero row/column makes the kernel 6x6 = 3 x 2 phases.
    """
    out_channels, channels = weight.shape[:2]
    padded = F.pad(weight, (0, 1, 0, 1))
    phases = padded.view(out_channels, channels, 3, 2, 3, 2).permute(0, 1, 3, 5, 2, 4)
    return phases.reshape(out_channels, 4 * channels, 3, 3)


class _StemFunction(torch.autograd.Function):
    """Plain forward; input gradient through the polyphase kernel (first-order gradients only)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.input_size = x.shape[-2:]
        return F.conv2d(x, weight, bias, stride=2, padding=2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        height, width = ctx.input_size
        with torch.autocast(grad.device.type, enabled=False):  # in the gradient's dtype, also if called under autocast
            polyphase_grad = F.conv_transpose2d(grad, _polyphase_weight(weight).to(grad.dtype), padding=1)
        return F.pixel_shuffle(polyphase_grad, 2)[..., :height, :width], None, None
