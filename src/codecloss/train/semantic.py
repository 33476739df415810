"""The semantic term S of the joint objective ``loss = R + lmbda * D + beta * S`` (``codecloss train-codec``).

S distils a frozen ImageNet teacher (:func:`codecloss.reference.trunk`, VGG16 or AlexNet) into the
analysis transform ``g_a`` of the codec being trained, without labels. For each pair ``TAP=LAYER``
(e.g. ``gdn2=relu3_3``, both at stride 4; a hyperprior's ``h_a`` taps too, e.g. ``h2=pool5`` at stride 32,
see :mod:`codecloss.hyper`) a linear 1x1 head, without bias, maps the codec's own tap
activations (with gradients into ``g_a``, and ``h_a`` for its taps) to the teacher's channels. Head output and teacher
features are both unit-normalised along channels (:func:`codecloss.losses.normalize_channels`, as
LPIPS does), and S is their squared distance summed over channels and averaged over positions,
images and pairs: LPIPS's distance with unit weights, in [0, 4]. Normalising both sides leaves no
scale for the head to fit, so S rewards only the direction of the features; summing over channels
keeps S's range independent of the teacher's width, so one beta means the same for every layer.

The heads stay linear so that the teacher's knowledge has to live in the codec's features; they are
trained with the codec, kept in the training checkpoint (``"semantic_heads"``) and discarded at export.

Example:
    >>> from codecloss.train.codec import TrainConfig, train
    >>> cfg = TrainConfig(data_dirs=["photos"], out_dir="runs/sem", semantic_weight=1.0)
    >>> summary = train(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss._dtype import compute_context, resolve_task_dtype
from codecloss.features import FeatureExtractor, TapInfo
from codecloss.losses import normalize_channels
from codecloss.reference.trunks import Trunk, as_trunk
from codecloss.train.config import TrainConfig

__all__ = ["CodecWithHeads", "Distillation"]

logger = logging.getLogger(__name__)


class CodecWithHeads(nn.Module):
    """A codec and its semantic heads as one module: the module that DDP wraps under ``torchrun``.

    Args:
        codec: the CompressAI model being trained (its ``g_a`` and ``h_a`` each an ``nn.Sequential``).
        heads: codec tap name -> linear 1x1 head (see :meth:`Distillation.heads`).
        sources: codec tap name -> path of the module in ``codec`` whose output the tap is (``"g_a.3"``).
    """

    def __init__(self, codec: nn.Module, heads: nn.ModuleDict, sources: Mapping[str, str]) -> None:
        super().__init__()
        self.codec = codec
        self.heads = heads
        self.sources = dict(sources)

    def forward(self, x: Tensor) -> dict[str, Any]:
        """The codec's forward, plus ``"semantic"``: tap name -> head output on that tap.

        The taps are read by forward hooks during the codec's own pass, so ``g_a`` and ``h_a`` run once.

        Args:
            x: images (N, 3, H, W) in [0, 1].

        Returns:
            The codec's output dict with the added key ``"semantic"``.
        """
        taps: dict[str, Tensor] = {}

        def keep(name: str, module: nn.Module, inputs: Any, output: Tensor) -> None:
            taps[name] = output

        hooks = [
            self.codec.get_submodule(path).register_forward_hook(partial(keep, name)) for name, path in self.sources.items()
        ]
        try:
            out = self.codec(x)
        finally:
            for hook in hooks:
                hook.remove()
        return {**out, "semantic": {name: self.heads[name](taps[name]) for name in self.sources}}


class Distillation:
    """The frozen teacher and the checked tap pairs of the semantic term; builds heads and computes S.

    Args:
        teacher: the frozen ImageNet trunk (moved to float32 here).
        pairs: codec tap -> teacher layer, each pair at equal stride.
        codec: the codec being trained (only read, for its ``g_a`` and ``h_a`` taps).
        dtype: the teacher's compute dtype (its weights stay float32; bfloat16 runs under autocast and
            its features are returned to float32 before the distance).

    Raises:
        ValueError: an unknown codec tap or teacher layer, or a pair of unequal strides (messages
            start with ``semantic_taps:``).
    """

    def __init__(
        self, teacher: Trunk, pairs: Mapping[str, str], codec: nn.Module, dtype: torch.dtype = torch.float32
    ) -> None:
        extractor = FeatureExtractor.from_codec(codec)
        codec_taps = {tap.name: tap for tap in extractor.taps}
        self.sources = {name: extractor.tap_sources[name] for name in pairs if name in codec_taps}
        layers = {tap.name: tap for tap in teacher.taps}
        self.pairs = dict(pairs)
        self.codec_taps: dict[str, TapInfo] = {}
        self.teacher_taps: dict[str, TapInfo] = {}
        for name, layer in self.pairs.items():
            where = f"semantic_taps: {name}={layer}"
            if name not in codec_taps:
                raise ValueError(f"{where}: unknown codec tap {name!r}; expected one of {list(codec_taps)}")
            if layer not in layers:
                raise ValueError(f"{where}: unknown {teacher.backbone_id} layer {layer!r}; expected one of {list(layers)}")
            stride = codec_taps[name].stride
            if layers[layer].stride != stride:
                same = [t.name for t in teacher.taps if t.stride == stride]
                raise ValueError(
                    f"{where}: the codec tap has stride {stride}, the {teacher.backbone_id} layer {layers[layer].stride}; "
                    f"pair layers of equal stride (at {stride}: {same or 'none'})"
                )
            self.codec_taps[name], self.teacher_taps[name] = codec_taps[name], layers[layer]
        self.teacher = teacher.float().eval()
        self.dtype = dtype

    @classmethod
    def from_config(cls, config: TrainConfig, codec: nn.Module, device: torch.device | str = "cpu") -> "Distillation":
        """The distillation ``config`` asks for: its teacher (``teacher_weights`` or the default file) and pairs.

        Args:
            config: the run's settings (``semantic_teacher``, ``teacher_weights``, ``teacher_dtype``,
                :attr:`TrainConfig.semantic_pairs`).
            codec: the codec being trained.
            device: where the teacher runs (the codec's device).

        Returns:
            The :class:`Distillation`.

        Raises:
            FileNotFoundError: no teacher file given and ``CODECLOSS_TRUNKS`` names none, or a missing file.
            ValueError: a file of another network, or bad pairs (see the class).
        """
        teacher = as_trunk(config.semantic_teacher, config.teacher_weights, argument="teacher_weights")
        dtype = resolve_task_dtype(config.teacher_dtype, device, "teacher_dtype")
        logger.info("semantic teacher %s computes in %s", config.semantic_teacher, str(dtype).removeprefix("torch."))
        return cls(teacher.to(device), config.semantic_pairs, codec, dtype)

    def heads(self) -> nn.ModuleDict:
        """Fresh linear heads (1x1 convolutions without bias), codec tap name -> head."""
        return nn.ModuleDict({
            name: nn.Conv2d(tap.channels, self.teacher_taps[name].channels, 1, bias=False)
            for name, tap in self.codec_taps.items()
        })

    def wrap(self, codec: nn.Module, heads: nn.ModuleDict) -> CodecWithHeads:
        """``codec`` and ``heads`` as one :class:`CodecWithHeads`."""
        return CodecWithHeads(codec, heads, self.sources)

    def loss(self, predictions: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """S: the channel-normalised squared distance of the head outputs to the teacher's features.

        A teacher map of another spatial size than its head output (AlexNet's padding) is resized
        to it bilinearly before normalisation.

        Args:
            predictions: codec tap name -> head output (``CodecWithHeads``'s ``"semantic"``).
            images: the images the codec saw, (N, 3, H, W) in [0, 1].

        Returns:
            Scalar tensor, the mean over pairs of the per-position distance (in [0, 4]).
        """
        if images.device.type == "cpu":  # oneDNN runs the teacher's convolutions about 1.4x faster in NHWC
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), compute_context(self.dtype, images.device):
            targets = self.teacher.extract(images, list(dict.fromkeys(self.pairs.values())))
        terms = []
        for name, layer in self.pairs.items():
            prediction, target = predictions[name], targets[layer].float()
            if target.shape[-2:] != prediction.shape[-2:]:
                target = F.interpolate(target, size=prediction.shape[-2:], mode="bilinear", align_corners=False)
            terms.append((normalize_channels(prediction) - normalize_channels(target)).pow(2).sum(dim=1).mean())
        return torch.stack(terms).mean()
