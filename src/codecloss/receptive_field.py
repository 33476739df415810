"""Receptive fields of analysis-transform stages, worked out from their modules.

A stage maps output position ``i`` (along one axis) to the input positions
``[stride * i - left, stride * i + right]``: the exact set it reads through every
path of the module graph, with zero padding where that range leaves the input.
:func:`receptive_field` derives it from the modules: a convolution reads
``[stride * i - padding, stride * i - padding + dilation * (kernel - 1)]``;
a chain composes; parallel branches that are added (residual blocks, attention
blocks) take the union. Modules whose spatial behaviour is not known return ``None``
(and cannot be tiled exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from compressai.layers import GDN, AttentionBlock, ResidualBlock, ResidualBlockWithStride
from torch import nn

from codecloss.gdn import FrozenGDN
from codecloss.hyper import Abs

__all__ = ["ReceptiveField", "receptive_field"]

#: Modules that act on each pixel alone (any channel mixing, no spatial extent).
POINTWISE: tuple[type[nn.Module], ...] = (
    GDN, FrozenGDN, Abs, nn.Identity, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
)


@dataclass(frozen=True)
class ReceptiveField:
    """Input positions read by output position ``i`` along one axis: ``[stride*i - left, stride*i + right]``.

    Attributes:
        stride: downsampling factor (input positions per output position).
        left: extent before the anchor ``stride * i``, in input pixels.
        right: extent after it.

    Example:
        >>> conv = ReceptiveField(2, 2, 2)          # 5x5, stride 2, padding 2
        >>> conv.then(conv)
        ReceptiveField(stride=4, left=6, right=6)
    """

    stride: int
    left: int
    right: int

    def then(self, later: "ReceptiveField") -> "ReceptiveField":
        """The field of ``later`` applied after this one, in this one's input pixels."""
        return ReceptiveField(
            self.stride * later.stride, self.left + self.stride * later.left, self.right + self.stride * later.right
        )

    def union(self, other: "ReceptiveField") -> "ReceptiveField | None":
        """Field of two branches whose outputs are combined per position (``None`` if their strides differ)."""
        if other.stride != self.stride:
            return None
        return ReceptiveField(self.stride, max(self.left, other.left), max(self.right, other.right))


IDENTITY = ReceptiveField(1, 0, 0)


def _conv(conv: nn.Conv2d, axis: int) -> ReceptiveField | None:
    if conv.padding_mode != "zeros":  # reflected or circular borders differ between a tile and the image
        return None
    kernel, stride, dilation = conv.kernel_size[axis], conv.stride[axis], conv.dilation[axis]
    reach = dilation * (kernel - 1)
    if conv.padding == "valid":
        padding = 0
    elif conv.padding == "same":
        padding = reach // 2
    else:
        padding = conv.padding[axis]
    return ReceptiveField(stride, padding, reach - padding)


def _chain(modules: Sequence[nn.Module | None], axis: int) -> ReceptiveField | None:
    field = IDENTITY
    for module in modules:
        if module is None:
            continue
        part = receptive_field(module, axis)
        if part is None:
            return None
        field = field.then(part)
    return field


def _parallel(branches: Sequence[Sequence[nn.Module | None]], axis: int) -> ReceptiveField | None:
    field: ReceptiveField | None = None
    for branch in branches:
        part = _chain(branch, axis)
        if part is None:
            return None
        field = part if field is None else field.union(part)
        if field is None:
            return None
    return field


def _residual_unit(module: nn.Module, axis: int) -> ReceptiveField | None:
    """The ``ResidualUnit`` inside :class:`~compressai.layers.AttentionBlock`: ``relu(conv(x) + x)``."""
    return _parallel([[module.conv], []], axis)


#: Modules made of submodules, by how their forward combines them.
_COMPOSITE: dict[type[nn.Module], Callable[[nn.Module, int], ReceptiveField | None]] = {
    nn.Sequential: lambda m, axis: _chain(list(m), axis),
    ResidualBlock: lambda m, axis: _parallel([[m.conv1, m.conv2], [m.skip]], axis),
    ResidualBlockWithStride: lambda m, axis: _parallel([[m.conv1, m.conv2], [m.skip]], axis),
    AttentionBlock: lambda m, axis: _parallel([[m.conv_a], [m.conv_b], []], axis),
}


def receptive_field(module: nn.Module, axis: int = 0) -> ReceptiveField | None:
    """Exact receptive field of ``module`` along ``axis`` (0: height, 1: width).

    Known modules: :class:`~torch.nn.Conv2d` and its subclasses with zero padding, pointwise
    layers (:data:`POINTWISE`), :class:`~torch.nn.Sequential` and CompressAI's residual and
    attention blocks.

    Args:
        module: a module of an analysis transform.
        axis: spatial axis.

    Returns:
        The field, or ``None`` when a module's spatial behaviour is unknown.

    Example:
        >>> receptive_field(nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1)))
        ReceptiveField(stride=2, left=4, right=4)
    """
    if isinstance(module, nn.Conv2d):
        return _conv(module, axis)
    if isinstance(module, POINTWISE):
        return IDENTITY
    rule = _COMPOSITE.get(type(module))
    if rule is not None:
        return rule(module, axis)
    if type(module).__name__ == "ResidualUnit" and type(module).__qualname__.startswith("AttentionBlock."):
        return _residual_unit(module, axis)
    return None
