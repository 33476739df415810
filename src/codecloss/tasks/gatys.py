"""Style transfer and texture synthesis by optimising the image (Gatys et al., CVPR 2016) on codec features.

The objective at each scale is :class:`~codecloss.tasks.style_terms.StyleObjective`'s relative content and
Gram errors (plus total variation). Optimisation runs coarse to fine (``scales``), each scale starting from the
previous result upsampled, so the deep taps' receptive field covers a larger part of the image.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from codecloss import DEFAULT_BACKBONE, load_backbone
from codecloss._dtype import compute_context, resolve_task_dtype
from codecloss._progress import progress as progress_bar
from codecloss._validate import check_choice, check_image
from codecloss.cpips import ImageLike, as_image_tensor
from codecloss.tasks.style_terms import LayersArg, StyleObjective, layer_weights

__all__ = ["OPTIMIZERS", "INITS", "VGG_BACKBONES", "StylizeResult", "default_layers", "read_single_image", "resize_shorter", "run_stylize", "stylize"]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")

#: Default (content taps, style taps) per loss-network family.
_DEFAULT_LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gdn": (("gdn3",), ("conv1", "gdn1", "conv2", "gdn2", "conv3", "gdn3")),
    "rb": (("rb3",), ("rb1", "rb2", "rb3")),
    "vgg": (("relu4_2",), ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")),
}

#: Reference trunks (:func:`codecloss.reference.trunk`) :func:`stylize` accepts as ``backbone``.
VGG_BACKBONES = ("vgg16", "vgg19")


@dataclass
class StylizeResult:
    """What :func:`run_stylize` returns.

    Attributes:
        image: (1, 3, H, W) result in [0, 1], on the device it was computed on.
        terms: final objective terms at the finest scale (``content``, ``style``, ``tv``, ``total``).
        history: total objective after each optimiser step, per scale (for checking convergence).
        seconds: wall time of the optimisation.
        settings: every setting used, JSON-ready.
    """

    image: Tensor
    terms: dict[str, float]
    history: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


def default_layers(backbone: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Default (content taps, style taps) of :func:`stylize` for ``backbone``."""
    if backbone in VGG_BACKBONES:
        return _DEFAULT_LAYERS["vgg"]
    family = "rb" if backbone.startswith("cheng2020") else "gdn"
    return _DEFAULT_LAYERS[family]


def _load_network(backbone: str, weights: Any, seed: int) -> Any:
    if backbone in VGG_BACKBONES:
        from codecloss.reference import trunk

        return trunk(backbone, weights=None if weights in (None, "default") else weights, seed=seed)
    return load_backbone(backbone, weights)


def resize_shorter(image: Tensor, size: int) -> Tensor:
    """``image`` (N, 3, H, W) resized (bicubic, antialiased when shrinking) so its shorter side is ``size``."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    target = (max(1, round(h * scale)), max(1, round(w * scale)))
    if target == (h, w):
        return image
    return F.interpolate(image, size=target, mode="bicubic", align_corners=False, antialias=scale < 1).clamp(0, 1)


def read_single_image(image: ImageLike, argument: str) -> Tensor:
    """One image (tensor, PIL image, array or file path) as a validated (1, 3, H, W) float tensor; errors name ``argument``."""
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        from codecloss.evaluate.images import read_image

        try:
            image = read_image(image)  # type: ignore[arg-type]
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"{argument}: {err}") from None
    tensor = check_image(as_image_tensor(image, argument), argument).float()
    if tensor.shape[0] != 1:
        raise ValueError(f"{argument}: expected one image, got a batch of {tensor.shape[0]}")
    return tensor


def _optimise(objective: StyleObjective, targets: dict[str, Tensor], x: Tensor, steps: int, optimizer: str, lr: float,
              bar: Any, dtype: torch.dtype) -> list[float]:
    """Minimise ``objective`` (its network in ``dtype``) over the pixels of ``x`` (in place, kept in [0, 1]);
    return the totals."""
    x.requires_grad_(True)
    history: list[float] = []
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, history_size=50, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-12, tolerance_change=1e-12)

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            with compute_context(dtype, x.device):
                total = objective.terms(x, targets)["total"]
            total.backward()
            history.append(float(total.detach()))
            bar.update(1)
            return total

        opt.step(closure)
    else:
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with compute_context(dtype, x.device):
                total = objective.terms(x, targets)["total"]
            total.backward()
            opt.step()
            history.append(float(total.detach()))
            bar.update(1)
            with torch.no_grad():
                x.clamp_(0, 1)
    x.requires_grad_(False)
    with torch.no_grad():
        x.clamp_(0, 1)
    return history


def run_stylize(
    content: ImageLike | None,
    style: ImageLike,
    *,
    size: int = 256,
    backbone: str = DEFAULT_BACKBONE,
    weights: Any = "default",
    content_layers: LayersArg = None,
    style_layers: LayersArg = None,
    content_weight: float = 1.0,
    style_weight: float = 1000.0,
    tv_weight: float = 0.0,
    steps: int = 80,
    optimizer: str = "lbfgs",
    lr: float = 0.02,
    init: str | None = None,
    scales: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    progress: bool | None = False,
) -> StylizeResult:
    """Gatys-style transfer of ``style`` onto ``content``, or texture synthesis when ``content`` is ``None``.

    Args:
        content: content image (float tensor in [0, 1], PIL image, HxWx3 uint8 array or file path), or
            ``None`` to synthesise a texture of ``size`` x ``size`` from noise.
        style: style image, any size; it is resized so its shorter side equals the output's at each scale.
        size: shorter side of the output (the content is resized to it, keeping its aspect ratio).
        backbone: codec backbone id (see :func:`codecloss.list_backbones`), or ``"vgg16"`` / ``"vgg19"``
            (torchvision's, :func:`codecloss.reference.trunk`).
        weights: backbone weights (``"default"``, registry name, file, or ``None`` for random init);
            for VGG ``"default"``/``None`` mean random init with ``seed``, else a torchvision file
            (e.g. ``$CODECLOSS_TRUNKS/vgg16_features.pth``) or ``"torchvision"``.
        content_layers: content taps (names or name -> weight); ``None``: :func:`default_layers`.
        style_layers: Gram taps (names or name -> weight); ``None``: :func:`default_layers`.
        content_weight: weight of the relative content error (ignored without content).
        style_weight: weight of the relative Gram error.
        tv_weight: weight of the total-variation term (mean absolute neighbour difference).
        steps: optimiser iterations per scale.
        optimizer: ``"lbfgs"`` (strong-Wolfe line search) or ``"adam"``.
        lr: Adam's learning rate (L-BFGS takes unit steps with a line search).
        init: ``"content"`` or ``"noise"``; ``None``: content when there is one, else noise.
        scales: number of coarse-to-fine scales, each half the size of the next (1 = full size only).
        seed: seed of the noise initialisation (and of a random-init VGG).
        device: torch device to optimise on.
        dtype: compute dtype of the loss network, one of :data:`~codecloss._dtype.TASK_DTYPES` (``"auto"``:
            bfloat16 where ``device`` has fast bfloat16 matrix units); Gram matrices, the terms and the image
            stay float32.
        progress: a progress bar on stderr: ``True``, ``False``, or ``None`` (only on a terminal).

    Returns:
        A :class:`StylizeResult` whose ``image`` is (1, 3, H, W) in [0, 1] with the content's (resized) size.

    Example:
        >>> result = run_stylize("photo.jpg", "starry_night.jpg")  # doctest: +SKIP
        >>> result.image.shape  # doctest: +SKIP
        torch.Size([1, 3, 256, 341])
    """
    settings = {
        "size": size, "backbone": backbone, "weights": None if weights is None else str(weights),
        "content_weight": content_weight, "style_weight": style_weight, "tv_weight": tv_weight, "steps": steps,
        "optimizer": optimizer, "lr": lr, "scales": scales, "seed": seed, "device": str(device),
        "dtype": str(resolve_task_dtype(dtype, device, "dtype")).removeprefix("torch."),
    }
    for name in ("size", "steps", "scales"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    for name in ("content_weight", "style_weight", "tv_weight", "lr"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    check_choice("optimizer", optimizer, OPTIMIZERS)
    init = init or ("content" if content is not None else "noise")
    check_choice("init", init, INITS)
    if content is None and init == "content":
        raise ValueError("init: 'content' needs a content image, got content=None (texture synthesis starts from noise)")
    if size >> (scales - 1) < 16:
        raise ValueError(f"scales: {scales} scales of size {size} make a coarsest side < 16 px; use fewer scales")

    device = torch.device(device)
    compute_dtype = getattr(torch, settings["dtype"])
    logger.info("stylize: loss network in %s (dtype=%r)", settings["dtype"], dtype)
    style_image = read_single_image(style, "style").to(device)
    content_image = None if content is None else resize_shorter(read_single_image(content, "content"), size).to(device)
    shape = (size, size) if content_image is None else tuple(content_image.shape[-2:])
    network = _load_network(backbone, weights, seed).to(device)
    default_content, default_style = default_layers(backbone)
    content_taps = layer_weights("content_layers", default_content if content_layers is None else content_layers, network)
    style_taps = layer_weights("style_layers", default_style if style_layers is None else style_layers, network)
    settings.update(init=init, content_layers=content_taps, style_layers=style_taps, output_size=list(shape))

    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    x: Tensor | None = None
    history: list[list[float]] = []
    bar = progress_bar(total=steps * scales, enabled=progress, desc="stylize", unit="step")
    for level in reversed(range(scales)):
        level_shape = (max(16, round(shape[0] / 2**level)), max(16, round(shape[1] / 2**level)))
        level_content = None if content_image is None else F.interpolate(
            content_image, size=level_shape, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        if x is None:
            if init == "content":
                x = level_content.clone()  # type: ignore[union-attr]
            else:
                x = torch.rand((1, 3, *level_shape), generator=generator).to(device)
        else:
            x = F.interpolate(x, size=level_shape, mode="bicubic", align_corners=False).clamp(0, 1)
        x = x.contiguous()  # LBFGS views the gradient flat
        level_style = resize_shorter(style_image, min(level_shape))
        with compute_context(compute_dtype, device):  # targets in the dtype of the optimised image's features
            objective = StyleObjective(network, level_style, content_taps, style_taps,
                                       (content_weight, style_weight, tv_weight))
            targets = objective.content_targets(level_content)
        history.append(_optimise(objective, targets, x, steps, optimizer, lr, bar, compute_dtype))
        logger.info("stylize: scale %s done, objective %.4g", level_shape, history[-1][-1] if history[-1] else float("nan"))
    bar.close()
    assert x is not None
    with torch.no_grad(), compute_context(compute_dtype, device):
        terms = {name: float(value) for name, value in objective.terms(x, targets).items()}
    seconds = time.perf_counter() - start
    return StylizeResult(image=x.detach(), terms=terms, history=history, seconds=seconds, settings=settings)


def stylize(content: ImageLike | None, style: ImageLike, **options: Any) -> Tensor:
    """The image of :func:`run_stylize` (same arguments): (1, 3, H, W) in [0, 1].

    Example:
        >>> out = stylize("photo.jpg", "starry_night.jpg", steps=50)  # doctest: +SKIP
        >>> texture = stylize(None, "starry_night.jpg", size=128)  # doctest: +SKIP
    """
    return run_stylize(content, style, **options).image
