"""Judges of style transfer and texture synthesis that share nothing with any codecloss loss.

A loss must never be scored by its own features. These measures use no codec feature:

- :func:`texture_distance`: Portilla & Simoncelli texture statistics ("A Parametric Texture Model
  Based on Joint Statistics of Complex Wavelet Coefficients", IJCV 2000) from the maintained
  ``plenoptic`` package, per colour channel; relative error per statistic group, averaged.
- :func:`random_vgg_gram_distance`: relative Gram-matrix error of a randomly initialised VGG19 whose
  seed (:data:`JUDGE_SEED`) no loss uses.
- :func:`colour_distance`: sliced Wasserstein-1 distance between the two images' RGB pixel
  distributions (palette, no spatial structure).
- :func:`content_ssim`: SSIM (piq) of the result to the content image (how much content is kept).
- :func:`lpips_distance` and :func:`dists_distance`: LPIPS-Alex and DISTS (:mod:`codecloss.reference`,
  ImageNet trunks) to the content or style image; :func:`judge_style` adds them only when the trunk
  files are found (``trunks`` or ``CODECLOSS_TRUNKS``).

All take images in [0, 1]; distances are 0 for identical images, lower is closer.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from codecloss import gram_matrix
from codecloss._validate import check_image
from codecloss.evaluate.images import center_crop
from codecloss.tasks.gatys import resize_shorter

__all__ = [
    "JUDGE_SEED",
    "colour_distance",
    "content_ssim",
    "dists_distance",
    "judge_style",
    "lpips_distance",
    "random_vgg_gram_distance",
    "texture_distance",
]

logger = logging.getLogger(__name__)

#: Seed of the judge's random VGG19; no loss, control or test in codecloss uses it.
JUDGE_SEED = 7919

_VGG_JUDGE_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
_PS_MIN_SIDE = 128  # 4 scales down to 8 px, more than the 7x7 autocorrelation window


@functools.lru_cache(maxsize=4)
def _ps_model(side: int) -> Any:
    try:
        import plenoptic
    except ImportError as err:  # pragma: no cover - plenoptic is a dependency of the [tasks] extra
        raise ImportError('texture_distance needs plenoptic: pip install "codecloss[tasks]"') from err
    return plenoptic.models.PortillaSimoncelli((side, side))


def texture_distance(x: Tensor, reference: Tensor) -> Tensor:
    """Portilla-Simoncelli texture-statistics distance between ``x`` and ``reference``.

    The reference is resized so its shorter side equals ``x``'s; both are centre-cropped to the largest
    common square whose side is a multiple of 32 (texture statistics are stationary). For each of
    plenoptic's statistic groups the relative error ``||s(x) - s(r)|| / ||s(r)||`` is taken over the
    three colour channels; the distance is the mean over groups.

    Args:
        x: (1, 3, H, W) image in [0, 1].
        reference: (1, 3, H', W') texture or style image in [0, 1].

    Returns:
        0-dim tensor, 0 for identical images.

    Example:
        >>> t = torch.rand(1, 3, 128, 128)
        >>> float(texture_distance(t, t))
        0.0
    """
    x, reference = _judge_pair(x, reference)
    side = min(*x.shape[-2:], *reference.shape[-2:]) // 32 * 32
    if side < _PS_MIN_SIDE:
        raise ValueError(f"x: texture_distance needs images of at least {_PS_MIN_SIDE} px, got {tuple(x.shape[-2:])}")
    model = _ps_model(side)
    with torch.no_grad():
        stats_x = model.convert_to_dict(model(center_crop(x[0], side)[None].double()))
        stats_r = model.convert_to_dict(model(center_crop(reference[0], side)[None].double()))
    errors = []
    for name, ref in stats_r.items():
        valid = ~torch.isnan(ref)
        diff = (stats_x[name] - ref)[valid]
        errors.append(diff.norm() / ref[valid].norm().clamp_min(1e-12))
    return torch.stack(errors).mean().float()


@functools.lru_cache(maxsize=1)
def _judge_vgg() -> Any:
    from codecloss.reference import trunk

    return trunk("vgg19", weights=None, seed=JUDGE_SEED)


def random_vgg_gram_distance(x: Tensor, reference: Tensor) -> Tensor:
    """Mean relative Gram error of a random-init VGG19 (seed :data:`JUDGE_SEED`) at relu1_1 ... relu5_1.

    Args:
        x: (1, 3, H, W) image in [0, 1].
        reference: (1, 3, H', W') style image in [0, 1], resized to ``x``'s shorter side.

    Returns:
        0-dim tensor, 0 for identical images.
    """
    x, reference = _judge_pair(x, reference)
    vgg = _judge_vgg()
    with torch.no_grad():
        fx = vgg.extract(x.cpu(), _VGG_JUDGE_TAPS)
        fr = vgg.extract(reference.cpu(), _VGG_JUDGE_TAPS)
    errors = [(gram_matrix(fx[t]) - gram_matrix(fr[t])).pow(2).sum() / gram_matrix(fr[t]).pow(2).sum().clamp_min(1e-30) for t in fx]
    return torch.stack(errors).mean()


def colour_distance(x: Tensor, reference: Tensor, projections: int = 64, quantiles: int = 256) -> Tensor:
    """Sliced Wasserstein-1 distance between the RGB pixel distributions of two images.

    Pixels are projected on ``projections`` fixed unit directions (seed :data:`JUDGE_SEED`); each
    projection's distribution is compared at ``quantiles`` evenly spaced levels, so the images may
    differ in size.

    Args:
        x: (1, 3, H, W) image in [0, 1].
        reference: (1, 3, H', W') image in [0, 1].
        projections: number of random directions.
        quantiles: number of quantile levels compared per direction.

    Returns:
        0-dim tensor in [0, sqrt(3)], 0 for identical images.
    """
    x = check_image(x, "x", min_size=1).float().cpu()
    reference = check_image(reference, "reference", min_size=1).float().cpu()
    directions = F.normalize(torch.randn(3, projections, generator=torch.Generator().manual_seed(JUDGE_SEED)), dim=0)
    levels = torch.linspace(0, 1, quantiles)

    def profile(image: Tensor) -> Tensor:
        return torch.quantile(image.flatten(2)[0].T @ directions, levels, dim=0)

    return (profile(x) - profile(reference)).abs().mean()


def content_ssim(x: Tensor, content: Tensor) -> Tensor:
    """SSIM (piq, Gaussian 11x11 window, on RGB) of ``x`` to the content image, resized to ``x``'s size.

    Args:
        x: (1, 3, H, W) result in [0, 1].
        content: (1, 3, H', W') content image in [0, 1].

    Returns:
        0-dim tensor in [-1, 1]; 1 for identical images.
    """
    import piq

    x = check_image(x, "x").float().cpu()
    content = check_image(content, "content").float().cpu()
    if content.shape[-2:] != x.shape[-2:]:
        content = F.interpolate(content, size=x.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
    return piq.ssim(x.clamp(0, 1), content.clamp(0, 1), data_range=1.0)


@functools.lru_cache(maxsize=4)
def _reference_metric(kind: str, file: str) -> Any:
    from codecloss import reference

    return reference.lpips("alex", file) if kind == "lpips" else reference.dists(file)


def _reference_distance(kind: str, x: Tensor, reference: Tensor, trunks: str | os.PathLike[str] | None) -> Tensor:
    from codecloss.reference import trunk_file

    name = "alexnet" if kind == "lpips" else "vgg16"
    file = trunk_file(name, trunks)
    if file is None:
        raise FileNotFoundError(f"trunks: no {name}_features.pth found (pass trunks=DIR or set CODECLOSS_TRUNKS)")
    x = check_image(x, "x").float().cpu()
    reference = check_image(reference, "reference").float().cpu()
    if reference.shape[-2:] != x.shape[-2:]:
        reference = F.interpolate(reference, size=x.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
    with torch.no_grad():
        return _reference_metric(kind, str(file))(x.clamp(0, 1), reference.clamp(0, 1)).mean()


def lpips_distance(x: Tensor, reference: Tensor, trunks: str | os.PathLike[str] | None = None) -> Tensor:
    """LPIPS-Alex (:func:`codecloss.reference.lpips`) of ``x`` to ``reference``, resized (bicubic) to ``x``'s size.

    Args:
        x: (1, 3, H, W) image in [0, 1].
        reference: (1, 3, H', W') content (or style) image in [0, 1].
        trunks: folder holding ``alexnet_features.pth`` (``None``: ``CODECLOSS_TRUNKS``).

    Returns:
        0-dim tensor, 0 for identical images.

    Raises:
        FileNotFoundError: no AlexNet trunk file found.
    """
    return _reference_distance("lpips", x, reference, trunks)


def dists_distance(x: Tensor, reference: Tensor, trunks: str | os.PathLike[str] | None = None) -> Tensor:
    """DISTS (:func:`codecloss.reference.dists`) of ``x`` to ``reference``, resized (bicubic) to ``x``'s size.

    Args:
        x: (1, 3, H, W) image in [0, 1].
        reference: (1, 3, H', W') style (or content) image in [0, 1].
        trunks: folder holding ``vgg16_features.pth`` (``None``: ``CODECLOSS_TRUNKS``).

    Returns:
        0-dim tensor, 0 for identical images.

    Raises:
        FileNotFoundError: no VGG16 trunk file found.
    """
    return _reference_distance("dists", x, reference, trunks)


def _judge_pair(x: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    x = check_image(x, "x").float().cpu()
    reference = check_image(reference, "reference").float().cpu()
    if x.shape[0] != 1 or reference.shape[0] != 1:
        raise ValueError(f"x and reference: judges score one image each, got batches {x.shape[0]} and {reference.shape[0]}")
    return x, resize_shorter(reference, min(x.shape[-2:]))


def judge_style(
    x: Tensor, style: Tensor, content: Tensor | None = None, trunks: str | os.PathLike[str] | None = None
) -> dict[str, float]:
    """Every judge of a stylised image (or a synthesised texture when ``content`` is ``None``).

    Args:
        x: (1, 3, H, W) result in [0, 1].
        style: the style image.
        content: the content image, if any.
        trunks: folder of ImageNet trunk files (``None``: ``CODECLOSS_TRUNKS``); without them the
            LPIPS and DISTS judges are left out (logged).

    Returns:
        ``{"texture_ps": ..., "gram_random_vgg": ..., "colour_swd": ...}`` plus ``"content_ssim"`` with content;
        with the trunks also ``"dists_style"``, and with content ``"lpips_alex_content"`` and ``"dists_content"``.

    Example:
        >>> scores = judge_style(out, style_image, content_image)  # doctest: +SKIP
    """
    from codecloss.reference import trunk_file

    scores = {
        "texture_ps": float(texture_distance(x, style)),
        "gram_random_vgg": float(random_vgg_gram_distance(x, style)),
        "colour_swd": float(colour_distance(x, style)),
    }
    if content is not None:
        scores["content_ssim"] = float(content_ssim(x, content))
    if trunk_file("vgg16", trunks) is not None:
        scores["dists_style"] = float(dists_distance(x, style, trunks))
        if content is not None:
            scores["dists_content"] = float(dists_distance(x, content, trunks))
    else:
        logger.info("DISTS judges left out: no vgg16_features.pth (pass trunks=DIR or set CODECLOSS_TRUNKS)")
    if content is not None and trunk_file("alexnet", trunks) is not None:
        scores["lpips_alex_content"] = float(lpips_distance(x, content, trunks))
    elif content is not None:
        logger.info("LPIPS judge left out: no alexnet_features.pth (pass trunks=DIR or set CODECLOSS_TRUNKS)")
    return scores
