"""Named feature taps on a frozen codec analysis transform ``g_a``.

A tap is the output of one top-level stage of ``g_a`` (an ``nn.Sequential`` in
every CompressAI image codec). Taps are named by one rule for every backbone,
zoo or user-made: the stage kind plus its resolution level (how many
downsampling stages precede or include it), and the last stage is always ``y``,
the latent. For the GDN family (Ballé et al. 2017/2018, Minnen et al. 2018)
this gives ``conv1, gdn1, conv2, gdn2, conv3, gdn3, y``; for Cheng et al. 2020
``rbs1, rb1, rbs2, rb2, rbs3, rb3, y`` (``attn`` stages in cheng2020-attn). Hyperprior codecs built with
:meth:`FeatureExtractor.from_codec` go on past ``y`` into their hyper-analysis ``h_a``: ``h1, h2, ..., z``
(:mod:`codecloss.hyper`).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from compressai.layers import GDN, AttentionBlock, ResidualBlock, ResidualBlockWithStride
from torch import Tensor, nn

from codecloss._layout import is_channels_last
from codecloss._validate import to_unit_range
from codecloss.gdn import FrozenGDN
from codecloss.hyper import hyper_stages
from codecloss.receptive_field import ReceptiveField, receptive_field
from codecloss.stem import FrozenStemConv2d
from codecloss.tiling import TilePlan

__all__ = ["TapInfo", "TappedNetwork", "FrozenGDN", "FeatureExtractor", "freeze_analysis_transform"]

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


def freeze_analysis_transform(g_a: nn.Module) -> nn.Module:
    """Return a frozen, eval-mode copy of ``g_a`` with every GDN replaced by :class:`FrozenGDN`
    and a 5x5 stride-2 first stage by :class:`~codecloss.stem.FrozenStemConv2d`.

    The input module is left untouched.
    """
    frozen = copy.deepcopy(g_a)
    _replace_gdn(frozen)
    if isinstance(frozen, nn.Sequential) and len(frozen) and FrozenStemConv2d.accepts(frozen[0]):
        frozen[0] = FrozenStemConv2d.from_conv(frozen[0])
    frozen.requires_grad_(False)
    return frozen.eval()


def _replace_gdn(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is GDN and not child.inverse:
            # ResidualBlockWithStride adds its skip branch to the GDN output in place (out += identity)
            setattr(module, name, FrozenGDN.from_gdn(child, output_modified=isinstance(module, ResidualBlockWithStride)))
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


def _cumulative_fields(stages: Sequence[nn.Module]) -> list[tuple[ReceptiveField, ReceptiveField] | None]:
    """Per stage, the (height, width) receptive field of its output in input pixels (``None`` once unknown)."""
    fields: list[tuple[ReceptiveField, ReceptiveField] | None] = []
    field: tuple[ReceptiveField, ReceptiveField] | None = (ReceptiveField(1, 0, 0), ReceptiveField(1, 0, 0))
    for stage in stages:
        if field is not None:
            parts = receptive_field(stage, 0), receptive_field(stage, 1)
            field = None if None in parts else (field[0].then(parts[0]), field[1].then(parts[1]))
        fields.append(field)
    return fields


def _as_stages(g_a: nn.Module) -> nn.Sequential:
    return g_a if isinstance(g_a, nn.Sequential) else nn.Sequential(g_a)


class TappedNetwork(nn.Module):
    """Base of frozen networks with named taps (codec ``g_a`` stages, :mod:`codecloss.reference` trunks).

    A subclass sets ``backbone_id`` and ``taps`` (:class:`TapInfo` in forward order) in ``__init__`` and defines
    ``forward(x01, layers)``; this class looks taps up by name, maps inputs to [0, 1] in :meth:`extract`, and keeps
    the network in eval mode whatever ``train()`` is asked.
    """

    backbone_id: str
    taps: tuple[TapInfo, ...]

    @property
    def tap_names(self) -> list[str]:
        """All tap names in forward order."""
        return [tap.name for tap in self.taps]

    def tap(self, name: str) -> TapInfo:
        """Metadata of one tap; raises ``ValueError`` listing valid names if unknown."""
        for tap in self.taps:
            if tap.name == name:
                return tap
        raise ValueError(
            f"layers: unknown tap {name!r} for backbone {self.backbone_id!r}; expected one of {self.tap_names}"
        )

    def train(self, mode: bool = True) -> "TappedNetwork":
        """Keep the frozen network in eval mode whatever ``mode`` is."""
        return super().train(False)

    def extract(
        self, images: Tensor, layers: Sequence[str], input_range: tuple[float, float] = (0.0, 1.0)
    ) -> "OrderedDict[str, Tensor]":
        """``forward(x, layers)`` on validated images in ``input_range``, mapped to [0, 1] and the weights' dtype."""
        dtype = next(self.parameters()).dtype
        return self(to_unit_range(images, input_range).to(dtype), layers)


class FeatureExtractor(TappedNetwork):
    """Frozen analysis transform with named taps; stops after the deepest tap requested.

    The backbone never requires gradients and stays in eval mode even after
    ``.train()``; gradients still flow to the input. A GDN right after a convolution
    normalises the convolution's output in place unless that output is itself a tap.

    Args:
        g_a: a CompressAI analysis transform (usually ``model.g_a``); it is copied and frozen.
        backbone_id: name reported in ``repr`` and errors.
        channels_last: run in NHWC memory format (returned features are NHWC too); ``None``:
            always on CPU, where oneDNN convolutions are faster in NHWC, elsewhere when the input is NHWC.
        hyper: taps after ``y`` on the hyper-analysis ``h_a``, from :func:`codecloss.hyper.hyper_stages`
            (:meth:`from_codec` adds them); they are copied and frozen.

    Example:
        >>> from compressai.models import FactorizedPrior
        >>> extractor = FeatureExtractor(FactorizedPrior(64, 96).g_a)
        >>> feats = extractor(torch.rand(1, 3, 64, 64), ["gdn1", "y"])
        >>> [tuple(f.shape) for f in feats.values()]
        [(1, 64, 32, 32), (1, 96, 4, 4)]
    """

    def __init__(
        self,
        g_a: nn.Module,
        backbone_id: str = "custom",
        channels_last: bool | None = None,
        hyper: Sequence[tuple[str, str, nn.Module]] = (),
    ) -> None:
        super().__init__()
        self.backbone_id = backbone_id
        self.channels_last = channels_last
        analysis = _as_stages(freeze_analysis_transform(g_a))
        hyper_stages = [copy.deepcopy(stage).requires_grad_(False).eval() for _, _, stage in hyper]
        self.stages = nn.Sequential(*analysis, *hyper_stages)
        stages = list(self.stages)
        names = tap_names(list(analysis)) + [name for name, _, _ in hyper]
        #: tap name -> path of the module in the source codec whose output the tap is (``g_a.3``, ``h_a.1``)
        self.tap_sources = {name: f"g_a.{index}" for index, name in enumerate(names[: len(analysis)])}
        self.tap_sources |= {name: path for name, path, _ in hyper}
        self._gdn_after_conv = frozenset(
            index
            for index in range(1, len(stages))
            if isinstance(stages[index], FrozenGDN) and isinstance(stages[index - 1], nn.Conv2d)
        )
        self.taps: tuple[TapInfo, ...] = self._probe(names)
        self._fields = _cumulative_fields(stages)

    @classmethod
    def from_codec(
        cls, codec: nn.Module, backbone_id: str = "custom", channels_last: bool | None = None, hyper: bool = True
    ) -> "FeatureExtractor":
        """The taps of a whole codec: ``g_a``'s and, with ``hyper`` and where it has one, its ``h_a``'s.

        Example:
            >>> from compressai.models import ScaleHyperprior
            >>> FeatureExtractor.from_codec(ScaleHyperprior(64, 96)).tap_names[-4:]
            ['y', 'h1', 'h2', 'z']
        """
        return cls(codec.g_a, backbone_id, channels_last, hyper_stages(codec) if hyper else ())

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
    def default_layers(self) -> list[str]:
        """Taps used when none are chosen: each nonlinearity's output of ``g_a`` (``gdn*``, ``rb*``) and ``y``."""
        analysis = self.tap_names[: self.tap_names.index("y")]
        chosen = [name for name in analysis if name.startswith(("gdn", "rb")) and not name.startswith("rbs")]
        return (chosen or analysis) + ["y"]

    def receptive_field(self, name: str) -> tuple[ReceptiveField, ReceptiveField] | None:
        """(height, width) receptive fields of a tap in input pixels, ``None`` if a stage up to it is of
        unknown spatial behaviour (see :mod:`codecloss.receptive_field`)."""
        return self._fields[self.tap(name).index]

    def tile_plan(self, layers: Sequence[str], tile: int) -> TilePlan:
        """Where to cut images into tiles of ``tile`` owned pixels so that the features at ``layers``
        equal the untiled ones (see :mod:`codecloss.tiling`).

        Raises:
            ValueError: ``tile`` below the alignment of the taps, or a tap whose receptive field is unknown.
        """
        fields = {}
        for name in layers:
            field = self.receptive_field(name)
            if field is None:
                raise ValueError(
                    f"tile: backbone {self.backbone_id!r} has a stage up to tap {name!r} whose receptive field "
                    "is unknown, so it cannot be tiled exactly; use tile=None"
                )
            fields[name] = field
        return TilePlan(fields, tile)

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
        x = x.contiguous(memory_format=self._memory_format(x))
        for index in range(max(wanted, default=-1) + 1):
            stage = self.stages[index]
            if index in self._gdn_after_conv:  # the convolution's output is read by nobody else
                x = stage(x, inplace=index - 1 not in wanted)
            else:
                x = stage(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

    def _memory_format(self, x: Tensor) -> torch.memory_format:
        """The memory format to run ``x`` in (see ``channels_last``)."""
        channels_last = self.channels_last
        if channels_last is None:
            channels_last = x.device.type == "cpu" or is_channels_last(x)
        return torch.channels_last if channels_last else torch.contiguous_format

    def extra_repr(self) -> str:
        return f"backbone_id={self.backbone_id!r}, taps={self.tap_names}"
