"""Perceptual losses on codec features: content (per tap), Gram style, and their weighted sum.

The content and style terms follow Johnson et al., "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution" (ECCV 2016) and Gatys et al.,
"Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016), with
the VGG replaced by a codec analysis transform as in Huang & Wu, "CPIPS:
Learning to Preserve Perceptual Distances in End-to-End Image Compression"
(arXiv 2401.07200).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Mapping, Sequence, Union

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from codecloss._dtype import DtypeArg, check_dtype, compute_context
from codecloss._layout import chunks, dense, memory_format_of, pixel_rows
from codecloss._validate import check_choice, check_image, check_input_range, check_pair, check_values
from codecloss.backbones import DEFAULT_BACKBONE, WeightsArg, load_backbone
from codecloss.features import TappedNetwork

__all__ = [
    "CHECK_MODES",
    "CONTENT_KINDS",
    "REDUCTIONS",
    "CodecPerceptualLoss",
    "content_loss",
    "gram_matrix",
    "normalize_channels",
    "reduce",
    "style_loss",
]

CONTENT_KINDS = ("l2", "l1", "normalized_l2")
REDUCTIONS = ("mean", "sum", "none")
#: When :class:`CodecPerceptualLoss` checks input values (one host sync per checked call).
CHECK_MODES = ("first", "always", "never")

#: Tap names, or a mapping tap name -> weight.
LayersArg = Union[Sequence[str], Mapping[str, float], None]


def _at_least_float32(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def normalize_channels(features: Tensor, eps: float = 1e-10) -> Tensor:
    """Unit-normalise a feature map along channels, with ``eps`` inside the square root.

    Zero feature vectors map to zero with finite gradients (LPIPS puts eps outside
    the root, whose gradient is infinite at zero).

    Args:
        features: (N, C, H, W) features.
        eps: added to the squared norm before the square root.

    Returns:
        Features divided by their per-position channel norm, in at least float32.
    """
    features = _at_least_float32(features)
    return features * torch.rsqrt(features.pow(2).sum(dim=1, keepdim=True) + eps)


def content_loss(fx: Tensor, fy: Tensor, kind: str = "l2") -> Tensor:
    """Per-sample content distance between two feature maps.

    Args:
        fx: (N, C, H, W) features of the prediction.
        fy: (N, C, H, W) features of the target.
        kind: ``"l2"`` (mean squared difference), ``"l1"`` (mean absolute difference) or
            ``"normalized_l2"`` (channel-unit-normalise, squared difference summed over
            channels, averaged over positions, as LPIPS without learned weights).

    Returns:
        (N,) distances, in at least float32.

    Example:
        >>> f = torch.rand(2, 8, 4, 4)
        >>> content_loss(f, f).tolist()
        [0.0, 0.0]
    """
    check_choice("content", kind, CONTENT_KINDS)
    if kind == "normalized_l2":
        return (normalize_channels(fx) - normalize_channels(fy)).pow(2).sum(dim=1).mean(dim=(1, 2))
    if kind == "l2":
        dtype = torch.promote_types(fx.dtype, fy.dtype)  # bfloat16 features stay so; sums are in float32
        fx = dense(fx.to(dtype))
        return _MeanSquaredError.apply(fx, fy.to(dtype).expand_as(fx).contiguous(memory_format=memory_format_of(fx)))
    diff = _at_least_float32(fx) - _at_least_float32(fy)
    return diff.abs().mean(dim=(1, 2, 3))


class _MeanSquaredError(torch.autograd.Function):
    """Per-sample mean of ``(a - b)^2`` for dense (N, C, H, W) maps of one dtype and memory format.

    The forward sums over pixel chunks in at least float32 without materialising ``a - b``; the
    backward allocates only the gradients it returns, in the dtype of ``a`` (first-order gradients only).
    bfloat16 maps (float32's exponent range) subtract and square in bfloat16: each term is then off by
    at most 2^-8 relative, unbiased, far below the features' own rounding against float32, and the
    sum still accumulates in float32; a mixed bfloat16/float32 operation instead costs 3x the time on CPU.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> Tensor:
        a_rows, b_rows = pixel_rows(a), pixel_rows(b)
        total = a.new_zeros(a.shape[0], dtype=torch.promote_types(a.dtype, torch.float32))
        work = a.dtype if a.dtype == torch.bfloat16 else total.dtype
        for part in chunks(a_rows):
            diff = a_rows[:, part].to(work) - b_rows[:, part].to(work)
            total += torch.sum(diff.mul_(diff), dim=(1, 2), dtype=total.dtype)
        ctx.save_for_backward(a, b)
        return total / a[0].numel()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        a, b = ctx.saved_tensors
        grad_a = torch.sub(a, b)
        # One 0-dim scale per sample: it multiplies in float32 arithmetic without a mixed-dtype
        # broadcast, which on CPU converts a whole bfloat16 map (15x slower than this loop).
        for sample, scale in zip(grad_a, grad * (2 / a[0].numel())):
            sample.mul_(scale)
        return (grad_a if ctx.needs_input_grad[0] else None, -grad_a if ctx.needs_input_grad[1] else None)


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrix normalised by C*H*W, computed in at least float32 (also under autocast).

    Args:
        features: (N, C, H, W) features.

    Returns:
        (N, C, C) Gram matrices.

    Example:
        >>> gram_matrix(torch.ones(1, 2, 3, 3)).tolist()
        [[[0.5, 0.5], [0.5, 0.5]]]
    """
    n, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        rows = pixel_rows(dense(_at_least_float32(features)))  # a view, no copy, in either memory format
        return torch.baddbmm(rows.new_zeros(()), rows.transpose(1, 2), rows, beta=0.0, alpha=1.0 / (c * h * w))


def style_loss(fx: Tensor, fy: Tensor) -> Tensor:
    """Per-sample Gram (style) distance: mean squared difference of Gram matrices.

    ``fx`` and ``fy`` may differ in height and width; ``fy`` may have batch size 1
    (one style image for the whole batch).

    Args:
        fx: (N, C, H, W) features of the prediction.
        fy: (N or 1, C, H', W') features of the style target.

    Returns:
        (N,) distances in at least float32.
    """
    return (gram_matrix(fx) - gram_matrix(fy)).pow(2).mean(dim=(1, 2))


def reduce(values: Tensor, reduction: str) -> Tensor:
    """Reduce per-sample values (N,) by ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def resolve_layer_weights(
    argument: str, layers: LayersArg, extractor: TappedNetwork, *, allow_empty: bool = False
) -> dict[str, float]:
    """Validate ``layers`` (tap names or tap -> weight) against ``extractor``; return them in forward order.

    Args:
        argument: the argument's name, for error messages.
        layers: a sequence of tap names (weight 1 each) or a mapping tap -> finite weight >= 0.
        extractor: the feature extractor whose taps are valid.
        allow_empty: accept no taps, or only zero weights (a term that is switched off).

    Returns:
        Ordered ``{tap: weight}``.
    """
    if isinstance(layers, str):
        raise TypeError(f"{argument}: expected a sequence of tap names or a mapping tap -> weight, got the string {layers!r}")
    weights = dict(layers) if isinstance(layers, Mapping) else {name: 1.0 for name in layers}  # type: ignore[union-attr]
    for name, weight in weights.items():
        extractor.tap(name)  # raises for unknown names, listing valid ones
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{argument}: weight of {name!r} must be a finite number >= 0, got {weight!r}")
    if not allow_empty and not any(weights.values()):
        raise ValueError(
            f"{argument}: expected at least one tap with a weight > 0, got {weights}; choose from {extractor.tap_names}"
        )
    order = {name: i for i, name in enumerate(extractor.tap_names)}
    return {name: float(weights[name]) for name in sorted(weights, key=order.__getitem__)}


class CodecPerceptualLoss(nn.Module):
    r"""Perceptual loss on the features of a frozen learned-codec analysis transform.

    .. math::
        L(x, y) = \sum_{t \in \text{layers}} w_t\, d_t(\phi_t(x), \phi_t(y))
        + \lambda_s \sum_{s \in \text{style\_layers}} w_s \lVert G(\phi_s(x)) - G(\phi_s(y_s)) \rVert^2

    Args:
        backbone: backbone id (see :func:`codecloss.list_backbones`), a
            :class:`~codecloss.features.FeatureExtractor` (e.g. from :func:`codecloss.from_compressai`) or a
            reference trunk (:func:`codecloss.reference.trunk`, e.g. the ImageNet VGG16 as a baseline).
        layers: content taps, a sequence of names or a mapping name -> weight; ``None`` uses the
            backbone's default taps (each nonlinearity's output and ``y``).
        weights: ``"default"``, a registry name, a checkpoint path, or ``None`` (random init, warns).
            Ignored when ``backbone`` is a feature extractor.
        content: ``"l2"``, ``"l1"`` or ``"normalized_l2"``.
        style_layers: Gram taps (sequence or mapping); ``None`` uses ``layers`` when ``style_weight > 0``.
        style_weight: weight of the style term; 0 skips it.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample values, shape (N,)).
        input_range: value range of the images, ``(0, 1)`` (default) or e.g. ``(-1, 1)``.
        allow_grayscale: accept 1-channel images (repeated to RGB).
        dtype: compute dtype of the feature path: ``None`` (float32, or the caller's autocast dtype),
            ``torch.float32`` (also under autocast), ``torch.bfloat16`` (the same as calling under
            ``torch.autocast(device, torch.bfloat16)``) or ``torch.float16`` (CUDA only). Gram matrices
            and reductions stay in float32.
        check_inputs: when to check input values: ``"first"`` (default: the first call only, so the
            training hot path has no host sync), ``"always"`` (every call, one sync each) or ``"never"``.
            Every image is checked for NaN/Inf; targets (``y``, ``style_target``, the images given to
            :meth:`features`) must also lie in ``input_range`` (predictions of a model under training
            may overshoot it).

    Example:
        >>> loss_fn = CodecPerceptualLoss(layers={"gdn1": 1.0, "y": 0.5})  # doctest: +SKIP
        >>> x = torch.rand(4, 3, 64, 64, requires_grad=True)
        >>> loss = loss_fn(x, torch.rand(4, 3, 64, 64))  # doctest: +SKIP
        >>> loss.backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str | TappedNetwork = DEFAULT_BACKBONE,
        layers: LayersArg = None,
        weights: WeightsArg = "default",
        content: str = "l2",
        style_layers: LayersArg = None,
        style_weight: float = 0.0,
        reduction: str = "mean",
        input_range: Sequence[float] = (0, 1),
        allow_grayscale: bool = False,
        check_inputs: str = "first",
        dtype: DtypeArg = None,
    ) -> None:
        super().__init__()
        self.compute_dtype = check_dtype(dtype)
        self.content = check_choice("content", content, CONTENT_KINDS)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.input_range = check_input_range(input_range)
        self.check_inputs = check_choice("check_inputs", check_inputs, CHECK_MODES)
        if not isinstance(style_weight, (int, float)) or not math.isfinite(style_weight) or style_weight < 0:
            raise ValueError(f"style_weight: expected a finite number >= 0, got {style_weight!r}")
        if style_layers is not None and style_weight == 0:
            raise ValueError(
                f"style_layers: got {style_layers!r}, but style_weight=0 switches the style term off; "
                "pass style_weight > 0 (e.g. style_weight=1.0) or drop style_layers"
            )
        self.style_weight = float(style_weight)
        self.extractor = backbone if isinstance(backbone, TappedNetwork) else load_backbone(backbone, weights)
        default = self.extractor.default_layers
        self.layer_weights = resolve_layer_weights(
            "layers", default if layers is None else layers, self.extractor, allow_empty=self.style_weight > 0
        )
        if self.style_weight > 0:
            chosen = self.layer_weights if style_layers is None else style_layers
            self.style_layer_weights = resolve_layer_weights("style_layers", chosen, self.extractor)
        else:
            self.style_layer_weights = {}
        self._checks = {"allow_grayscale": allow_grayscale}
        self._values_checked = False
        self._taps = list(dict.fromkeys([*self.layer_weights, *self.style_layer_weights]))

    def _check_values(self, images: dict[str, Tensor], ranged: tuple[str, ...]) -> None:
        """:func:`~codecloss._validate.check_values` on ``images`` when ``check_inputs`` asks for it."""
        if self.check_inputs == "never" or (self.check_inputs == "first" and self._values_checked):
            return
        check_values(images, self.input_range, ranged=ranged)
        self._values_checked = self._values_checked or bool(ranged)

    def features(self, x: Tensor, *, prediction: bool = False) -> "OrderedDict[str, Tensor]":
        """Features of ``x`` at every tap this loss uses, in forward order.

        Args:
            x: images (N, 3, H, W) or (3, H, W) in ``input_range``.
            prediction: ``x`` is a model's output: its values are checked for NaN/Inf only, not for range.

        Returns:
            Ordered dict tap name -> (N, C, H/stride, W/stride) feature map.
        """
        x = check_image(x, "x", **self._checks)
        self._check_values({"x": x}, () if prediction else ("x",))
        return self._extract(x, self._taps)

    def _extract(self, images: Tensor, taps: Sequence[str]) -> "OrderedDict[str, Tensor]":
        """The extractor's features of validated ``images`` at ``taps``, in the compute dtype."""
        with compute_context(self.compute_dtype, images.device):
            return self.extractor.extract(images, taps, self.input_range)

    def forward(self, x: Tensor, y: Tensor, style_target: Tensor | None = None) -> Tensor:
        """Loss between prediction ``x`` and target ``y``.

        Args:
            x: predictions (N, 3, H, W) in ``input_range`` (values checked for NaN/Inf only: they may overshoot).
            y: targets of the same shape, in ``input_range``.
            style_target: optional style images for the Gram term, (N or 1, 3, H', W');
                defaults to ``y``; only with a style term (``style_weight > 0``).

        Returns:
            Scalar for ``"mean"``/``"sum"``, (N,) for ``"none"``.
        """
        if style_target is not None and not self.style_layer_weights:
            raise ValueError(
                "style_target: given, but this loss has no style term (style_weight=0); build it with "
                "style_weight > 0 (and style_layers=...) to use a style target"
            )
        x, y = check_pair(x, y, **self._checks)
        images = {"x": x, "y": y}
        if style_target is not None:
            images["style_target"] = style_target = check_image(style_target, "style_target", **self._checks)
        self._check_values(images, ("y", "style_target"))
        fx = self._extract(x, self._taps)
        fy = self._extract(y, self._taps if style_target is None else list(self.layer_weights))
        total = sum(w * content_loss(fx[t], fy[t], self.content) for t, w in self.layer_weights.items())
        if self.style_layer_weights:
            fs = fy
            if style_target is not None:
                fs = self._extract(style_target, list(self.style_layer_weights))
            style = sum(w * style_loss(fx[t], fs[t]) for t, w in self.style_layer_weights.items())
            total = total + self.style_weight * style
        return reduce(total, self.reduction)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return (
            f"layers={self.layer_weights}, content={self.content!r}, style_layers={self.style_layer_weights}, "
            f"style_weight={self.style_weight}, reduction={self.reduction!r}, input_range={self.input_range}, "
            f"check_inputs={self.check_inputs!r}, dtype={self.compute_dtype}"
        )
