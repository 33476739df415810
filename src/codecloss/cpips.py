"""CPIPS: an LPIPS-style perceptual distance on the features of a frozen codec analysis transform.

For each tap the features of both images are unit-normalised along channels,
their squared difference is weighted per channel by non-negative linear "heads"
(1x1 convolutions without bias, as LPIPS's ``lin`` layers), averaged over space
and summed over taps (Zhang et al., "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric", CVPR 2018; with the VGG replaced by a codec
encoder as in Huang & Wu, "CPIPS", arXiv 2401.07200).

Heads are either ``"uniform"`` (every channel weight 1: honest, uncalibrated) or
calibrated head files (see :func:`load_head`) trained with
:mod:`codecloss.train.heads`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss._dtype import DtypeArg, check_dtype, compute_context
from codecloss._validate import check_input_range, check_pair, check_values
from codecloss.backbones import DEFAULT_BACKBONE, WeightsArg, is_weights_path, load_backbone
from codecloss.checkpoints import load_torch_file
from codecloss.features import FeatureExtractor
from codecloss.losses import resolve_layer_weights, normalize_channels
from codecloss.tiling import TilePlan, check_tile, map_tiles

__all__ = ["CPIPS", "HEAD_FORMAT", "ImageLike", "as_image_tensor", "clear_metric_cache", "load_head", "metric"]

logger = logging.getLogger(__name__)

#: Value of the ``"format"`` key of a CPIPS head file.
HEAD_FORMAT = "codecloss-cpips-head"

#: What ``heads=`` accepts: ``"uniform"``, a head file path, or a registry name.
HeadsArg = Union[str, os.PathLike]

#: Images accepted by :func:`metric`: float tensors in [0, 1], PIL images, or uint8 HxWx3 numpy arrays.
ImageLike = Union[Tensor, np.ndarray, Any]


def load_head(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a CPIPS head file (``torch.load(..., weights_only=True)``).

    A head file is a ``torch.save``'d dict ``{"format": "codecloss-cpips-head", "backbone": id,
    "layers": [tap, ...], "lin": {tap: (C,) tensor}}`` with optional ``"meta"`` (a dict of plain values).

    Args:
        path: head file.

    Returns:
        The checked dict; ``lin`` values are float32 (C,) tensors, all finite and >= 0.

    Example:
        >>> head = load_head("runs/heads/head.pt")  # doctest: +SKIP
        >>> head["layers"]  # doctest: +SKIP
        ['gdn1', 'gdn2', 'gdn3', 'y']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"heads: no such file {str(path)!r}")
    head = load_torch_file(path, "heads", f"a CPIPS head file ({HEAD_FORMAT!r} dict)")
    if not isinstance(head, Mapping) or head.get("format") != HEAD_FORMAT:
        raise ValueError(f"heads: {str(path)!r} is not a CPIPS head file (expected 'format': {HEAD_FORMAT!r})")
    layers, lin = head.get("layers"), head.get("lin")
    if not isinstance(head.get("backbone"), str) or not isinstance(layers, list) or not isinstance(lin, Mapping):
        raise ValueError(f"heads: {str(path)!r} lacks 'backbone' (str), 'layers' (list) or 'lin' (dict)")
    if set(layers) != set(lin) or not layers:
        raise ValueError(f"heads: {str(path)!r} has layers {layers} but lin weights for {sorted(lin)}")
    checked = {}
    for tap in layers:
        weight = lin[tap]
        if not isinstance(weight, Tensor) or weight.dim() != 1 or not weight.is_floating_point():
            raise ValueError(f"heads: lin[{tap!r}] in {str(path)!r} must be a 1-D float tensor")
        if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
            raise ValueError(f"heads: lin[{tap!r}] in {str(path)!r} must be finite and >= 0")
        checked[tap] = weight.float()
    return {**head, "layers": list(layers), "lin": checked}


def _resolve_head_file(heads: HeadsArg) -> Path:
    if is_weights_path(heads):
        return Path(heads)
    from codecloss.weights import get_weight_spec, get_weights_file  # lazy: only needed for registry names

    spec = get_weight_spec(str(heads))
    if spec.sha256 is None:
        raise ValueError(
            f"heads: registry entry {str(heads)!r} has no full SHA-256; head files must be pinned by their full digest"
        )
    return Path(get_weights_file(str(heads)))


class CPIPS(nn.Module):
    r"""CPIPS distance: LPIPS on the taps of a frozen learned-codec encoder.

    .. math::
        d(x, y) = \sum_{t} \frac{1}{H_t W_t} \sum_{h, w} \sum_c w_{t,c}
        \left(\hat\phi_t(x)_{c,h,w} - \hat\phi_t(y)_{c,h,w}\right)^2,\quad w_{t,c} \ge 0

    where :math:`\hat\phi_t` are channel-unit-normalised features of tap :math:`t`.
    :math:`d(x, x) = 0` exactly, :math:`d` is symmetric, non-negative and differentiable.

    Args:
        backbone: backbone id or a :class:`~codecloss.features.FeatureExtractor`.
        layers: tap names; ``None`` uses the head file's taps, else the backbone's default taps.
        weights: backbone weights (``"default"``, registry name, checkpoint path or ``None``);
            ignored when ``backbone`` is a feature extractor.
        heads: ``"uniform"`` (every channel weight 1: uncalibrated), a head file path, or a
            registry name of a head file (resolved and SHA-256-verified by the registry).
        input_range: value range of the images, ``(0, 1)`` (default) or e.g. ``(-1, 1)``.
        spatial: return per-pixel maps (N, 1, H, W) upsampled (bilinear) to the input size instead
            of (N,). The map's mean equals the scalar distance when H and W are multiples of each
            tap's stride (16 for the GDN family), and approximates it otherwise.
        per_layer: also return a dict tap -> that tap's contribution (same shape as the total).
        tile: ``None`` (whole images) or a tile side in pixels: compute each tap's distance map on
            overlapping tiles of about ``tile`` x ``tile`` owned pixels (rounded down to a multiple of
            the deepest tap's stride, which is the smallest value accepted) and stitch them; the result
            equals the untiled one up to float rounding at any image size, in bounded memory (see
            :mod:`codecloss.tiling`). The attribute may be changed between calls.
        allow_grayscale: accept 1-channel images (repeated to RGB).
        dtype: compute dtype of the features: ``None`` (float32, or the caller's autocast dtype),
            ``torch.float32`` (also under autocast), ``torch.bfloat16`` (as under
            ``torch.autocast(device, torch.bfloat16)``) or ``torch.float16`` (CUDA only); the
            normalisation, heads and means stay in float32.

    Every call checks that the images are finite and lie in ``input_range`` (one reduction per
    image and one host sync; see :func:`codecloss._validate.check_values`).

    Example:
        >>> cpips = CPIPS("bmshj2018-factorized-mse-q1", weights=None)  # doctest: +SKIP
        >>> x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
        >>> cpips(x, y).shape  # doctest: +SKIP
        torch.Size([2])
    """

    def __init__(
        self,
        backbone: str | FeatureExtractor = DEFAULT_BACKBONE,
        layers: Sequence[str] | None = None,
        weights: WeightsArg = "default",
        heads: HeadsArg = "uniform",
        input_range: Sequence[float] = (0, 1),
        spatial: bool = False,
        per_layer: bool = False,
        tile: int | None = None,
        allow_grayscale: bool = False,
        dtype: DtypeArg = None,
    ) -> None:
        super().__init__()
        self.compute_dtype = check_dtype(dtype)
        if not isinstance(heads, (str, os.PathLike)):
            raise TypeError(
                f"heads: expected 'uniform', a head file path or a registry name, got {type(heads).__name__}"
            )
        if isinstance(layers, (str, Mapping)):
            raise TypeError(f"layers: expected a sequence of tap names, got {layers!r}")
        self.input_range = check_input_range(input_range)
        self.spatial = bool(spatial)
        self.per_layer = bool(per_layer)
        self._checks = {"allow_grayscale": allow_grayscale}
        self.extractor = backbone if isinstance(backbone, FeatureExtractor) else load_backbone(backbone, weights)
        head = None if heads == "uniform" else load_head(_resolve_head_file(heads))
        if head is not None and layers is None:
            layers = head["layers"]
        chosen = self.extractor.default_layers if layers is None else list(layers)
        self.layers: list[str] = list(resolve_layer_weights("layers", chosen, self.extractor))
        self.heads_source = "uniform" if head is None else str(heads)
        self.lin = nn.ModuleDict(
            {tap: nn.Conv2d(self.extractor.tap(tap).channels, 1, kernel_size=1, bias=False) for tap in self.layers}
        )
        with torch.no_grad():
            for conv in self.lin.values():
                conv.weight.fill_(1.0)
        if head is not None:
            self._load_lin(head, str(heads))
        self.lin.requires_grad_(False)
        self.tile = check_tile(tile)
        self._tile_plan()  # bad tiles fail here, not at the first call

    def _tile_plan(self) -> "TilePlan | None":
        return None if self.tile is None else self.extractor.tile_plan(self.layers, self.tile)

    def _load_lin(self, head: Mapping[str, Any], source: str) -> None:
        if head["backbone"] != self.extractor.backbone_id:
            raise ValueError(
                f"heads: {source!r} was trained for backbone {head['backbone']!r}, got backbone "
                f"{self.extractor.backbone_id!r}"
            )
        if set(head["layers"]) != set(self.layers):
            raise ValueError(f"heads: {source!r} has taps {head['layers']}, but layers={self.layers} was asked for")
        for tap, weight in head["lin"].items():
            conv = self.lin[tap]
            if weight.numel() != conv.in_channels:
                raise ValueError(
                    f"heads: lin[{tap!r}] in {source!r} has {weight.numel()} weights, tap {tap!r} of backbone "
                    f"{self.extractor.backbone_id!r} has {conv.in_channels} channels"
                )
            with torch.no_grad():
                conv.weight.copy_(weight.view_as(conv.weight))
        logger.info("loaded CPIPS heads from %s", source)

    def head_state(self) -> dict[str, Any]:
        """The current heads as a head-file dict (see :func:`load_head`), tensors on CPU in float32."""
        return {
            "format": HEAD_FORMAT,
            "backbone": self.extractor.backbone_id,
            "layers": list(self.layers),
            "lin": {tap: conv.weight.detach().flatten().float().cpu().clone() for tap, conv in self.lin.items()},
        }

    def features(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """Features of validated images ``x`` (N, 3, H, W) in ``input_range`` at :attr:`layers`, in the compute dtype."""
        with compute_context(self.compute_dtype, x.device):
            return self.extractor.extract(x, self.layers, self.input_range)

    def distance_maps(self, x: Tensor, y: Tensor) -> "OrderedDict[str, Tensor]":
        """Per-position weighted squared differences of the unit-normalised features, per tap.

        Args:
            x: validated images (N, 3, H, W) in ``input_range``.
            y: images of the same shape.

        Returns:
            Ordered dict tap -> (N, 1, h, w) map on the tap's feature grid (its spatial mean is the
            tap's contribution to the distance).
        """
        fx, fy = self.features(x), self.features(y)
        maps: OrderedDict[str, Tensor] = OrderedDict()
        for tap, conv in self.lin.items():
            diff = (normalize_channels(fx[tap]) - normalize_channels(fy[tap])).pow(2)
            with torch.autocast(diff.device.type, enabled=False):  # the heads' weighted sum stays in float32
                maps[tap] = F.conv2d(diff, conv.weight.to(diff.dtype))
        return maps

    def forward(self, x: Tensor, y: Tensor) -> Tensor | tuple[Tensor, "OrderedDict[str, Tensor]"]:
        """Distance between ``x`` and ``y``.

        Args:
            x: images (N, 3, H, W) or (3, H, W) in ``input_range``.
            y: images of the same shape.

        Returns:
            (N,) distances, or (N, 1, H, W) maps when ``spatial``; with ``per_layer`` a tuple
            ``(total, {tap: contribution})``.
        """
        x, y = check_pair(x, y, **self._checks)
        check_values({"x": x, "y": y}, self.input_range)
        return self._reduce(map_tiles(self.distance_maps, (x, y), self._tile_plan()), x.shape[-2:])

    def forward_uint8(self, x: Tensor, y: Tensor) -> Tensor | tuple[Tensor, "OrderedDict[str, Tensor]"]:
        """:meth:`forward` on uint8 images, converted to float (``/ 255``, then to ``input_range``) one tile
        at a time, so that images too large for a float copy (8K and up, with ``tile``) fit in memory.

        Args:
            x: uint8 images (N, 3, H, W) or (3, H, W).
            y: uint8 images of the same shape.

        Returns:
            As :meth:`forward` on ``x.float() / 255`` (bit for bit with ``input_range=(0, 1)``).

        Example:
            >>> d = CPIPS(tile=1024).forward_uint8(read_image_uint8("a.png"), read_image_uint8("b.png"))  # doctest: +SKIP
        """
        for argument, image in (("x", x), ("y", y)):
            if isinstance(image, Tensor) and image.dtype != torch.uint8:
                raise TypeError(f"{argument}: forward_uint8 expects a uint8 tensor, got dtype {image.dtype}")
        x, y = check_pair(x, y, **self._checks, allow_uint8=True)
        low, high = self.input_range

        def maps(x_tile: Tensor, y_tile: Tensor) -> "OrderedDict[str, Tensor]":
            dtype = next(self.extractor.parameters()).dtype
            x_tile, y_tile = (t.to(dtype).div_(255.0) for t in (x_tile, y_tile))
            if (low, high) != (0.0, 1.0):
                x_tile, y_tile = (t.mul_(high - low).add_(low) for t in (x_tile, y_tile))
            return self.distance_maps(x_tile, y_tile)

        return self._reduce(map_tiles(maps, (x, y), self._tile_plan()), x.shape[-2:])

    def _reduce(
        self, maps: "Mapping[str, Tensor]", size: "torch.Size"
    ) -> Tensor | tuple[Tensor, "OrderedDict[str, Tensor]"]:
        """Per-tap distance maps -> (N,) distances or (N, 1, H, W) maps, and the per-tap parts."""
        parts: OrderedDict[str, Tensor] = OrderedDict()
        for tap, weighted in maps.items():
            if self.spatial:
                parts[tap] = F.interpolate(weighted, size=size, mode="bilinear", align_corners=False)
            else:
                parts[tap] = weighted.mean(dim=(1, 2, 3))
        total = torch.stack(list(parts.values())).sum(dim=0)
        return (total, parts) if self.per_layer else total

    def extra_repr(self) -> str:
        return (
            f"layers={self.layers}, heads={self.heads_source!r}, input_range={self.input_range}, "
            f"spatial={self.spatial}, per_layer={self.per_layer}, tile={self.tile}, dtype={self.compute_dtype}"
        )


def as_image_tensor(image: ImageLike, argument: str = "x") -> Tensor:
    """Convert an image to a float tensor in [0, 1].

    Conversions (explicit, nothing else is guessed):

    - ``torch.Tensor``: returned as is (must already be float (N, 3, H, W) or (3, H, W) in [0, 1]).
    - PIL image: ``image.convert("RGB")``, then uint8 / 255 -> (3, H, W) float32.
    - ``numpy.ndarray`` of dtype uint8, shape (H, W, 3) or (N, H, W, 3): / 255, channels moved
      first -> (3, H, W) or (N, 3, H, W) float32.

    Args:
        image: the image.
        argument: name used in error messages.

    Returns:
        A float tensor (CPU for PIL/numpy inputs).
    """
    if isinstance(image, Tensor):
        if not image.is_floating_point():
            raise TypeError(
                f"{argument}: expected a floating point tensor in [0, 1], got dtype {image.dtype}"
                + (" (for uint8 images use x.float() / 255)" if image.dtype == torch.uint8 else "")
            )
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise TypeError(
                f"{argument}: numpy arrays must be uint8 of shape (H, W, 3) or (N, H, W, 3), got dtype "
                f"{image.dtype} and shape {image.shape}; for float arrays use torch.from_numpy(a).permute(2, 0, 1)"
            )
        tensor = torch.tensor(image, dtype=torch.float32).div_(255.0)  # copies (PIL arrays are read-only)
        return tensor.movedim(-1, -3)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return as_image_tensor(np.asarray(image.convert("RGB")), argument)
    raise TypeError(
        f"{argument}: expected a float torch.Tensor, a PIL image or a uint8 numpy array (H, W, 3), "
        f"got {type(image).__name__}"
    )


class _ModelCache:
    """Thread-safe cache of frozen CPIPS models, built once per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[Hashable, CPIPS] = {}

    def get(self, key: Hashable, build: Any) -> CPIPS:
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = build()
                self._models[key] = model
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)


_CACHE = _ModelCache()


def clear_metric_cache() -> None:
    """Drop every model cached by :func:`metric` (frees their memory)."""
    _CACHE.clear()


def _hashable(value: Any) -> Hashable:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def metric(x: ImageLike, y: ImageLike, backbone: str | None = None, **kwargs: Any) -> Tensor:
    """CPIPS distance between two images or batches, with a cached frozen model.

    One model is built per (backbone, heads, layers, weights, other options, device, dtype) and
    reused; the cache is thread-safe and the frozen model may be called from several threads.
    Gradients are tracked only when an input requires them.

    Args:
        x: float tensor (N, 3, H, W) or (3, H, W) in [0, 1], a PIL image, or a uint8 (H, W, 3)
            numpy array (see :func:`as_image_tensor` for the exact conversions).
        y: same kind of image(s), same height and width.
        backbone: backbone id; ``None`` means :data:`codecloss.DEFAULT_BACKBONE`.
        **kwargs: further :class:`CPIPS` arguments (``heads``, ``layers``, ``weights``, ``tile``, ``dtype``, ...).

    Returns:
        (N,) distances (N = 1 for single images), on the device of the tensor input.

    Example:
        >>> d = metric(torch.rand(3, 64, 64), torch.rand(3, 64, 64), weights=None)  # doctest: +SKIP
        >>> d.shape  # doctest: +SKIP
        torch.Size([1])
    """
    backbone = DEFAULT_BACKBONE if backbone is None else backbone
    if not isinstance(backbone, str):
        raise TypeError(
            f"backbone: metric() takes a backbone id (str) or None, got {type(backbone).__name__}; "
            "use CPIPS(backbone=extractor) for a custom feature extractor"
        )
    xt, yt = as_image_tensor(x, "x"), as_image_tensor(y, "y")
    reference = xt if isinstance(x, Tensor) or not isinstance(y, Tensor) else yt
    xt = xt.to(reference.device, reference.dtype)
    yt = yt.to(reference.device, reference.dtype)
    key = (backbone, reference.device, reference.dtype, tuple(sorted((k, _hashable(v)) for k, v in kwargs.items())))

    def build() -> CPIPS:
        logger.debug("building CPIPS for %s", key)
        return CPIPS(backbone, **kwargs).to(device=reference.device, dtype=reference.dtype).requires_grad_(False).eval()

    model = _CACHE.get(key, build)
    grad = xt.requires_grad or yt.requires_grad
    with contextlib.nullcontext() if grad else torch.no_grad():
        return model(xt, yt)
