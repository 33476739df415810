"""Named feature taps on a frozen codec analysis transform ``g_a``.

A tap is the output of one top-level stage of ``g_a`` (an ``nn.Sequential`` in
every CompressAI image codec). Taps are named by one rule for every backbone,
zoo or user-made: the stage kind plus its resolution level (how many
downsampling stages precede or include it), and the last stage is always ``y``,
the latent. For the GDN family (Ballé et al. 2017/2018, Minnen et al. 2018)
this gives ``conv1, gdn1, conv2, gdn2, conv3, gdn3, y``; for Cheng et al. 2020
``rbs1, rb1, rbs2, rb2, rbs3, rb3, y`` (``attn`` stages in cheng2020-attn).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from compressai.layers import GDN, AttentionBlock, ResidualBlock, ResidualBlockWithStride
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["TapInfo", "FrozenGDN", "FeatureExtractor", "freeze_analysis_transform"]

_PROBE_SIZE = 64


@dataclass(frozen=True)
class TapInfo:
    """Metadata of one feature tap.

    Attributes:
        name: tap name, e.g. ``"gdn2"`` or ``"y"``.
        index: index of the stage in ``g_a`` whose output this tap is.
        channels: number of feature channels.
        stride: spatial downsampling factor with respect to the input.
    """

    name: str
    index: int
    channels: int
    stride: int


class FrozenGDN(nn.Module):
    r"""Inference-only GDN with its reparametrised :math:`\beta, \gamma` evaluated once.

    CompressAI's :class:`~compressai.layers.GDN` (Ballé et al., "Density Modeling
    of Images Using a Generalized Normalization Transformation", ICLR 2016)
    recomputes the non-negative reparametrisation of beta and gamma on every
    call. For a frozen backbone these are constants, so this layer stores them
    as buffers and computes :math:`y_i = x_i / \sqrt{\beta_i + \sum_j \gamma_{ij} x_j^2}`
    in at least float32 (also under autocast). The channel sum is one matrix product
    (NHWC rows for channels_last inputs), and a hand-written backward saves only the output
    and the norm (first-order gradients only).
    """

    def __init__(self, beta: Tensor, gamma: Tensor) -> None:
        super().__init__()
        channels = beta.numel()
        self.register_buffer("beta", beta.detach().clone())
        self.register_buffer("gamma", gamma.detach().reshape(channels, channels, 1, 1).clone())

    @classmethod
    def from_gdn(cls, gdn: GDN) -> "FrozenGDN":
        """Freeze a (forward, not inverse) CompressAI GDN layer."""
        if gdn.inverse or type(gdn) is not GDN:
            raise TypeError(f"gdn: expected a forward compressai.layers.GDN, got {gdn!r}")
        with torch.no_grad():
            return cls(gdn.beta_reparam(gdn.beta), gdn.gamma_reparam(gdn.gamma))

    def forward(self, x: Tensor) -> Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        channels = self.beta.numel()
        with torch.autocast(x.device.type, enabled=False):
            out = _GDNFunction.apply(x.to(dtype), self.beta.to(dtype), self.gamma.reshape(channels, channels).to(dtype))
        return out.to(x.dtype)


def _channel_mix(x: Tensor, matrix: Tensor, bias: Tensor | None = None) -> Tensor:
    """``out[:, i] = sum_j matrix[i, j] * x[:, j] (+ bias[i])``: a 1x1 convolution as one matrix product.

    Channels_last inputs are multiplied as (N*H*W, C) rows without a copy and give a channels_last output.
    """
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        out = rows @ matrix.t() if bias is None else torch.addmm(bias, rows, matrix.t())
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)
    out = torch.matmul(matrix, x.reshape(n, c, h * w))
    if bias is not None:
        out += bias.view(-1, 1)
    return out.view(n, -1, h, w)


class _GDNFunction(torch.autograd.Function):
    """GDN with a fused backward; with ``s = (beta + gamma x^2)^(1/2)``, ``y = x / s`` and
    ``dL/dx = g / s - y s (gamma^T (g y / s^2))``.

    It saves the output ``y`` and ``s``, not the input: the next convolution keeps ``y`` alive
    anyway, so the input can be freed (one activation less per GDN layer in memory).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
        # Buffers are reused in place: each fresh large tensor costs page faults on CPU.
        squared = x * x
        s = _channel_mix(squared, gamma, beta).sqrt_()
        y = torch.div(x, s, out=squared)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(y, s, gamma)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        y, s, gamma = ctx.saved_tensors
        with torch.autocast(y.device.type, enabled=False):
            u = grad / s
            mixed = _channel_mix((u * y).div_(s), gamma.t())
            return u.sub_(mixed.mul_(y).mul_(s)), None, None


def freeze_analysis_transform(g_a: nn.Module) -> nn.Module:
    """Return a frozen, eval-mode copy of ``g_a`` with every GDN replaced by :class:`FrozenGDN`.

    The input module is left untouched.
    """
    frozen = copy.deepcopy(g_a)
    _replace_gdn(frozen)
    frozen.requires_grad_(False)
    return frozen.eval()


def _replace_gdn(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is GDN and not child.inverse:
            setattr(module, name, FrozenGDN.from_gdn(child))
        else:
            _replace_gdn(child)


def _stage_kind(stage: nn.Module) -> tuple[str, bool]:
    """Short kind name of a stage and whether it downsamples."""
    if isinstance(stage, ResidualBlockWithStride):
        return "rbs", True
    if isinstance(stage, ResidualBlock):
        return "rb", False
    if isinstance(stage, AttentionBlock):
        return "attn", False
    if isinstance(stage, (GDN, FrozenGDN)):
        return "gdn", False
    if isinstance(stage, nn.Conv2d):
        return "conv", max(stage.stride) > 1
    return type(stage).__name__.lower(), False


def tap_names(stages: Sequence[nn.Module]) -> list[str]:
    """Name each stage by the rule in this module's docstring (last one is ``"y"``)."""
    names: list[str] = []
    level = 0
    for stage in stages[:-1]:
        kind, downsamples = _stage_kind(stage)
        level += downsamples
        name = f"{kind}{level}"
        while name in names:
            name += "b"
        names.append(name)
    return names + ["y"]


def _as_stages(g_a: nn.Module) -> nn.Sequential:
    return g_a if isinstance(g_a, nn.Sequential) else nn.Sequential(g_a)


class FeatureExtractor(nn.Module):
    """Frozen analysis transform with named taps; stops after the deepest tap requested.

    The backbone never requires gradients and stays in eval mode even after
    ``.train()``; gradients still flow to the input.

    Args:
        g_a: a CompressAI analysis transform (usually ``model.g_a``); it is copied and frozen.
        backbone_id: name reported in ``repr`` and errors.

    Example:
        >>> from compressai.models import FactorizedPrior
        >>> extractor = FeatureExtractor(FactorizedPrior(64, 96).g_a)
        >>> feats = extractor(torch.rand(1, 3, 64, 64), ["gdn1", "y"])
        >>> [tuple(f.shape) for f in feats.values()]
        [(1, 64, 32, 32), (1, 96, 4, 4)]
    """

    def __init__(self, g_a: nn.Module, backbone_id: str = "custom") -> None:
        super().__init__()
        self.backbone_id = backbone_id
        self.stages = _as_stages(freeze_analysis_transform(g_a))
        self.taps: tuple[TapInfo, ...] = self._probe(tap_names(list(self.stages)))
        self._by_name = {tap.name: tap for tap in self.taps}

    def _probe(self, names: list[str]) -> tuple[TapInfo, ...]:
        param = next(self.stages.parameters(), None)
        x = torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE)
        if param is not None:
            x = x.to(param.device, param.dtype)
        taps = []
        with torch.no_grad():
            for index, (name, stage) in enumerate(zip(names, self.stages)):
                x = stage(x)
                taps.append(TapInfo(name, index, x.shape[1], _PROBE_SIZE // x.shape[-1]))
        return tuple(taps)

    @property
    def tap_names(self) -> list[str]:
        """All tap names in forward order."""
        return [tap.name for tap in self.taps]

    @property
    def default_layers(self) -> list[str]:
        """Taps used when none are chosen: each nonlinearity's output (``gdn*``, ``rb*``) and ``y``."""
        chosen = [name for name in self.tap_names[:-1] if name.startswith(("gdn", "rb")) and not name.startswith("rbs")]
        return chosen + ["y"] if chosen else self.tap_names

    def tap(self, name: str) -> TapInfo:
        """Metadata of one tap; raises ``ValueError`` listing valid names if unknown."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(
                f"layers: unknown tap {name!r} for backbone {self.backbone_id!r}; "
                f"expected one of {self.tap_names}"
            ) from None

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Keep the frozen backbone in eval mode whatever ``mode`` is."""
        return super().train(False)

    def forward(self, x: Tensor, layers: Sequence[str]) -> "OrderedDict[str, Tensor]":
        """Run ``g_a`` up to the deepest tap in ``layers``.

        Args:
            x: images (N, 3, H, W) in [0, 1], already validated.
            layers: tap names to return.

        Returns:
            Ordered dict tap name -> feature map, in forward order.
        """
        wanted = {self.tap(name).index: name for name in layers}
        out: OrderedDict[str, Tensor] = OrderedDict()
        last = max(wanted, default=-1)
        for index in range(last + 1):
            x = self.stages[index](x)
            if index in wanted:
                out[wanted[index]] = x
        return out

    def extra_repr(self) -> str:
        return f"backbone_id={self.backbone_id!r}, taps={self.tap_names}"
