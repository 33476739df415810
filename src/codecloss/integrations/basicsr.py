"""``CodecPerceptualLoss`` with BasicSR's ``PerceptualLoss`` options and ``(percep, style)`` return value.

Importing this module registers the class in BasicSR's ``LOSS_REGISTRY`` when basicsr is importable,
so that a BasicSR option file can say::

    perceptual_opt:
      type: CodecPerceptualLoss
      layer_weights: {gdn1: 1.0, gdn2: 1.0, gdn3: 1.0}
      perceptual_weight: 1.0
      style_weight: 0
      criterion: l1

(import ``codecloss.integrations.basicsr`` in the training script before BasicSR builds its losses).
The computation follows ``basicsr.losses.basic_loss.PerceptualLoss.forward`` with the VGG replaced by
the codec's taps: per tap, ``criterion(features(x), features(gt.detach())) * layer_weights[tap]``,
summed and scaled by ``perceptual_weight``; the style term applies the same criterion to Gram
matrices normalised by C*H*W (:func:`codecloss.gram_matrix`), scaled by ``style_weight``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss import DEFAULT_BACKBONE, gram_matrix, load_backbone
from codecloss import CodecPerceptualLoss as _CodecLoss

__all__ = ["CRITERIA", "CodecPerceptualLoss", "register"]

logger = logging.getLogger(__name__)


def _frobenius(a: Tensor, b: Tensor) -> Tensor:
    return torch.norm(a - b, p="fro")


#: BasicSR's criteria: ``l1`` = ``nn.L1Loss()``, ``l2`` = mean squared error, ``fro`` = ``torch.norm(x - y, p='fro')``.
CRITERIA: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"l1": F.l1_loss, "l2": F.mse_loss, "fro": _frobenius}


def _weight(argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{argument}: expected a number >= 0, got {value!r}")
    return float(value)


class CodecPerceptualLoss(nn.Module):
    """BasicSR ``PerceptualLoss`` on a learned codec's encoder instead of a VGG.

    Args:
        layer_weights: codec tap -> weight, e.g. ``{"gdn1": 1.0, "gdn3": 1.0}``
            (see :func:`codecloss.list_layers`; VGG names such as ``conv5_4`` do not apply).
        vgg_type: refused: there is no VGG; choose ``backbone``.
        use_input_norm: refused: codec encoders see raw RGB, never ImageNet-normalised input.
        range_norm: inputs are in [-1, 1] (mapped to [0, 1]); ``False``: inputs in [0, 1].
        perceptual_weight: weight of the feature term; 0 returns ``None`` in its place.
        style_weight: weight of the Gram term; 0 returns ``None`` in its place.
        criterion: ``"l1"``, ``"l2"`` (mean squared error) or ``"fro"`` (Frobenius norm over the batch).
        backbone: codecloss backbone id.
        weights: backbone weights, as for :class:`codecloss.CodecPerceptualLoss`.

    Example:
        >>> loss_fn = CodecPerceptualLoss({"gdn1": 1.0, "gdn2": 1.0}, style_weight=1.0)  # doctest: +SKIP
        >>> percep, style = loss_fn(sr, gt)  # doctest: +SKIP
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float],
        vgg_type: str | None = None,
        use_input_norm: bool | None = None,
        range_norm: bool = False,
        perceptual_weight: float = 1.0,
        style_weight: float = 0.0,
        criterion: str = "l1",
        backbone: str = DEFAULT_BACKBONE,
        weights: str | os.PathLike | None = "default",
    ) -> None:
        super().__init__()
        if vgg_type is not None:
            raise ValueError(
                f"vgg_type: got {vgg_type!r}, but CodecPerceptualLoss runs a learned codec's encoder, not a VGG; "
                f"remove vgg_type and choose backbone (default {DEFAULT_BACKBONE!r}, see codecloss.list_backbones())"
            )
        if use_input_norm is not None:
            raise ValueError(
                f"use_input_norm: got {use_input_norm!r}, but codec encoders take raw RGB and are never "
                "ImageNet-normalised; remove use_input_norm (range_norm: true still maps [-1, 1] inputs to [0, 1])"
            )
        if not isinstance(layer_weights, Mapping) or not layer_weights:
            raise TypeError(f"layer_weights: expected a non-empty mapping codec tap -> weight, got {layer_weights!r}")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion: got {criterion!r}, expected one of {list(CRITERIA)}")
        if not isinstance(range_norm, bool):
            raise TypeError(f"range_norm: expected a bool (True: inputs in [-1, 1]), got {range_norm!r}")
        self.perceptual_weight = _weight("perceptual_weight", perceptual_weight)
        self.style_weight = _weight("style_weight", style_weight)
        self.criterion_type = criterion
        self.range_norm = range_norm
        extractor = load_backbone(backbone, weights)
        unknown = [tap for tap in layer_weights if tap not in extractor.tap_names]
        if unknown:
            raise ValueError(
                f"layer_weights: unknown taps {unknown} for backbone {extractor.backbone_id!r}; expected codec taps "
                f"from {extractor.tap_names} (VGG layer names such as 'conv5_4' do not apply)"
            )
        for tap, value in layer_weights.items():
            _weight(f"layer_weights[{tap!r}]", value)
        self.loss = _CodecLoss(extractor, layers=dict(layer_weights), input_range=(-1, 1) if range_norm else (0, 1))
        self.layer_weights = dict(self.loss.layer_weights)

    def forward(self, x: Tensor, gt: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(perceptual, style)`` losses, each a scalar, or ``None`` when its weight is 0.

        Args:
            x: predictions (N, 3, H, W), in [0, 1] (or [-1, 1] with ``range_norm``).
            gt: targets of the same shape (detached, as in BasicSR).
        """
        if isinstance(x, Tensor) and isinstance(gt, Tensor) and x.shape != gt.shape:
            raise ValueError(f"x and gt: expected the same shape, got {tuple(x.shape)} and {tuple(gt.shape)}")
        fx, fy = self.loss.features(x, prediction=True), self.loss.features(gt.detach())
        criterion = CRITERIA[self.criterion_type]
        percep = style = None
        if self.perceptual_weight > 0:
            percep = sum(criterion(fx[t], fy[t]) * w for t, w in self.layer_weights.items()) * self.perceptual_weight
        if self.style_weight > 0:
            style = sum(
                criterion(gram_matrix(fx[t]), gram_matrix(fy[t])) * w for t, w in self.layer_weights.items()
            ) * self.style_weight
        return percep, style

    def extra_repr(self) -> str:
        return (
            f"layer_weights={self.layer_weights}, criterion={self.criterion_type!r}, range_norm={self.range_norm}, "
            f"perceptual_weight={self.perceptual_weight}, style_weight={self.style_weight}"
        )


def register(registry: Any = None) -> bool:
    """Register :class:`CodecPerceptualLoss` in BasicSR's ``LOSS_REGISTRY`` (idempotent).

    Args:
        registry: a BasicSR ``Registry``; ``None`` imports ``basicsr.utils.registry.LOSS_REGISTRY``.

    Returns:
        True when the registry now maps ``"CodecPerceptualLoss"`` to this class; False when basicsr
        cannot be imported or the name is taken by another class.
    """
    if registry is None:
        try:
            import basicsr  # noqa: F401  (the whole package first: a half-imported one leaves submodules behind)
            from basicsr.utils.registry import LOSS_REGISTRY as registry
        except ImportError as err:
            logger.debug("basicsr is not importable (%s); CodecPerceptualLoss is not registered", err)
            return False
    name = CodecPerceptualLoss.__name__
    if name not in registry:
        registry.register(CodecPerceptualLoss)
    owner = dict(iter(registry)).get(name)
    if owner is not CodecPerceptualLoss:
        logger.warning("BasicSR's registry already maps %r to %r; codecloss's loss is not registered", name, owner)
        return False
    return True


register()
