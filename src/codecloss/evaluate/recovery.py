"""Reference recovery: does minimising a distance to a reference bring an image back to it?

The blind-spot test of Ding, Ma, Wang & Simoncelli, "Comparison of Full-Reference Image
Quality Models for Optimization of Image Processing Systems" (IJCV 2021): start from an
image ``x_0`` far from the reference ``y``, minimise ``d(x, y)`` over the pixels of ``x``
with Adam for K steps, and measure how close ``x_K`` is to ``y`` with PSNR and SSIM (piq).
A distance without blind spots brings ``x`` back to ``y`` (MSE does, by construction); one
with blind spots stalls at an image it scores as close that still differs visibly.

Pixels are the parameters (no reparametrisation): after every Adam step they are clamped
to [0, 1] (projected gradient descent). Every metric starts from the same ``x_0`` for a
given seed. This is a sanity check on a few images, not a measure of agreement with people.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from codecloss._progress import progress as progress_bar
from codecloss._validate import check_choice, check_image
from codecloss.evaluate.images import center_crop, list_images, read_image
from codecloss.evaluate.report import Row, Table
from codecloss.evaluate.sanity import distort
from codecloss.evaluate.scorers import (
    MetricUnavailable,
    Scorer,
    ScorerOrSkipped,
    Skipped,
    build_scorers,
    reference_scorers,
)
from codecloss.losses import CodecPerceptualLoss

__all__ = [
    "COLUMNS",
    "DEFAULT_INITS",
    "INITS",
    "RecoveryResult",
    "evaluate_recovery",
    "feature_l2_scorer",
    "initial_image",
    "mse_scorer",
    "recover",
    "recovery_scorers",
]

logger = logging.getLogger(__name__)

NOISY_STD = 0.3  # std of the Gaussian noise of the "noisy" start
BLUR_SIGMA = 4.0  # Gaussian blur sigma (px) of the "blur" start, the strongest level of the sanity check

#: Starting image name -> what it is.
INITS: dict[str, str] = {
    "uniform": "i.i.d. uniform noise in [0, 1], no information about the reference",
    "noisy": f"reference + Gaussian noise of std {NOISY_STD}, clamped to [0, 1]",
    "blur": f"reference blurred by a Gaussian of sigma {BLUR_SIGMA:g} px",
}
DEFAULT_INITS: tuple[str, ...] = tuple(INITS)

#: Columns of the tables of :func:`evaluate_recovery` (means over images).
COLUMNS = ["PSNR", "SSIM", "d_0", "d_K", "log10(d_K/d_0)"]

_RATIO_FLOOR = 1e-12  # d_K/d_0 below this (e.g. d_K == 0 exactly) counts as this in the log column

_START_ROW = "x_0 (start)"


def initial_image(reference: Tensor, init: str, generator: torch.Generator) -> Tensor:
    """The starting image ``x_0`` for references (N, 3, H, W) in [0, 1].

    Args:
        reference: the references (on the CPU).
        init: a key of :data:`INITS`.
        generator: source of the noise (seeded for reproducible starts).

    Returns:
        ``x_0`` of the references' shape, in [0, 1].

    Example:
        >>> x0 = initial_image(torch.rand(1, 3, 32, 32), "uniform", torch.Generator().manual_seed(0))
        >>> tuple(x0.shape), bool(x0.min() >= 0), bool(x0.max() <= 1)
        ((1, 3, 32, 32), True, True)
    """
    check_choice("init", init, INITS)
    if init == "uniform":
        return torch.rand(reference.shape, generator=generator, dtype=reference.dtype)
    if init == "noisy":
        noise = torch.randn(reference.shape, generator=generator, dtype=reference.dtype)
        return torch.stack([distort(image, "noise", NOISY_STD, field) for image, field in zip(reference, noise)])
    return torch.stack([distort(image, "blur", BLUR_SIGMA) for image in reference])


def _check_settings(inits: Sequence[str], steps: int, lr: float) -> None:
    for init in inits:
        check_choice("init", init, INITS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr: expected a positive finite number, got {lr!r}")


def _quality(x: Tensor, reference: Tensor) -> tuple[list[float], list[float]]:
    """Per-image PSNR (dB) and SSIM of ``x`` against ``reference`` (piq, data range 1)."""
    import piq

    x, reference = x.detach().double().cpu(), reference.detach().double().cpu()
    psnr = piq.psnr(x, reference, data_range=1.0, reduction="none")
    ssim = piq.ssim(x, reference, data_range=1.0, reduction="none")
    return psnr.tolist(), ssim.tolist()


@dataclass
class RecoveryResult:
    """Outcome of :func:`recover` for N references (each list has one value per image).

    Attributes:
        image: ``x_K``, (N, 3, H, W) in [0, 1], on the CPU.
        psnr: PSNR(x_K, reference) in dB (piq; 80 dB means identical).
        ssim: SSIM(x_K, reference) (piq).
        psnr_start: PSNR(x_0, reference).
        ssim_start: SSIM(x_0, reference).
        distance_start: d(x_0, reference) as the scorer's distance (similarities negated).
        distance_final: d(x_K, reference).
    """

    image: Tensor
    psnr: list[float]
    ssim: list[float]
    psnr_start: list[float]
    ssim_start: list[float]
    distance_start: list[float]
    distance_final: list[float]

    def to_dict(self) -> dict[str, list[float]]:
        """The per-image numbers, without the image (JSON-ready)."""
        return {"psnr": self.psnr, "ssim": self.ssim, "psnr_start": self.psnr_start, "ssim_start": self.ssim_start,
                "distance_start": self.distance_start, "distance_final": self.distance_final}


def recover(
    reference: Tensor,
    scorer: Scorer,
    init: str = "uniform",
    steps: int = 300,
    lr: float = 0.05,
    seed: int = 0,
    progress: bool | None = False,
) -> RecoveryResult:
    """Minimise ``scorer``'s distance to ``reference`` over the pixels of ``x``, starting from ``init``.

    Adam on the pixels (the per-image distances are summed, so the images of a batch are
    optimised independently), clamping ``x`` to [0, 1] after every step.

    Args:
        reference: (N, 3, H, W) or (3, H, W) images in [0, 1].
        scorer: a differentiable distance (``scorer.fn``; similarities are negated).
        init: starting image, a key of :data:`INITS`.
        steps: Adam steps K (> 0).
        lr: Adam learning rate (> 0).
        seed: seed of the starting image's noise.
        progress: progress bar over the steps on stderr: ``True`` always, ``False`` (default) never,
            ``None`` only on a terminal.

    Returns:
        A :class:`RecoveryResult`.

    Example:
        >>> mse = mse_scorer()
        >>> result = recover(torch.rand(1, 3, 32, 32), mse, steps=200, lr=0.02)
        >>> result.psnr[0] > 35
        True
    """
    if not isinstance(scorer, Scorer):
        raise TypeError(f"scorer: expected a Scorer, got {type(scorer).__name__}")
    _check_settings([init], steps, lr)
    reference = check_image(reference, "reference").detach().float().cpu()
    start = initial_image(reference, init, torch.Generator().manual_seed(seed))
    target = reference.to(scorer.device)
    x = start.to(scorer.device).clone().requires_grad_(True)
    sign = -1.0 if scorer.higher_is_better else 1.0
    optimizer = torch.optim.Adam([x], lr=lr)
    for _ in progress_bar(range(steps), progress, desc=f"{scorer.name} / {init}", leave=False):
        optimizer.zero_grad(set_to_none=True)
        distance = sign * scorer.fn(x, target)
        if not distance.requires_grad:
            raise ValueError(f"scorer: {scorer.name!r} gives no gradient with respect to the image")
        distance.sum().backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    final = x.detach().cpu()
    psnr, ssim = _quality(final, reference)
    psnr_start, ssim_start = _quality(start, reference)
    return RecoveryResult(
        image=final, psnr=psnr, ssim=ssim, psnr_start=psnr_start, ssim_start=ssim_start,
        distance_start=scorer.distance(start, target).tolist(), distance_final=scorer.distance(final, target).tolist(),
    )


def mse_scorer(device: str | torch.device = "cpu") -> Scorer:
    """Plain pixel MSE as a scorer: the sanity baseline, which must recover any reference.

    Example:
        >>> mse_scorer().distance(torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)).tolist()
        [1.0]
    """
    return Scorer("MSE", lambda x, y: (x - y).pow(2).mean(dim=(1, 2, 3)), device=device)


def feature_l2_scorer(name: str, device: str | torch.device = "cpu", **loss_kwargs: Any) -> Scorer:
    """The unnormalised feature L2 (:class:`~codecloss.CodecPerceptualLoss` with ``content="l2"``) as a scorer.

    Args:
        name: row name.
        device: device of the model.
        **loss_kwargs: :class:`~codecloss.CodecPerceptualLoss` arguments (backbone, weights, layers);
            ``content`` and ``reduction`` are fixed.

    Example:
        >>> scorer = feature_l2_scorer("feature L2", weights=None)  # doctest: +SKIP
    """
    model = CodecPerceptualLoss(content="l2", reduction="none", **loss_kwargs)
    return Scorer(name, model.to(device).requires_grad_(False).eval(), device=device)


def recovery_scorers(
    cpips_configs: Sequence[Mapping[str, Any]] = ({},),
    baselines: bool = True,
    device: str | torch.device = "cpu",
    trunks: str | os.PathLike[str] | None = None,
) -> list[ScorerOrSkipped]:
    """CPIPS rows, then MSE, per CPIPS row the unnormalised feature L2 on the same encoder, and LPIPS / DISTS.

    The feature-L2 row shares the CPIPS row's feature extractor and taps (the same random draw
    for ``weights=None``); its name is the CPIPS row's with ``CPIPS`` replaced by ``feature L2``.

    Args:
        cpips_configs: keyword arguments of :func:`~codecloss.evaluate.scorers.cpips_scorer` per row.
        baselines: add MSE, the feature-L2 rows and :func:`~codecloss.evaluate.scorers.reference_scorers`.
        device: device for every scorer.
        trunks: folder of the ImageNet trunk files of the LPIPS / DISTS rows; ``None``: ``CODECLOSS_TRUNKS``.

    Returns:
        Scorers in table order.

    Example:
        >>> scorers = recovery_scorers([{"weights": None}])  # doctest: +SKIP
        >>> [s.name for s in scorers]  # doctest: +SKIP
        ['CPIPS', 'MSE', 'feature L2', 'LPIPS-Alex', 'LPIPS-VGG', 'DISTS']
    """
    scorers = build_scorers(cpips_configs, baselines=False, device=device)
    if not baselines:
        return scorers
    extra: list[ScorerOrSkipped] = [mse_scorer(device)]
    for scorer in scorers:
        model = scorer.fn  # a CPIPS module (build_scorers makes CPIPS scorers only here)
        extra.append(feature_l2_scorer(scorer.name.replace("CPIPS", "feature L2", 1), device,
                                       backbone=model.extractor, layers=model.layers))  # type: ignore[union-attr]
    return scorers + extra + reference_scorers(device, trunks)


def _save_png(image: Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


def evaluate_recovery(
    root: str | os.PathLike,
    scorers: Sequence[ScorerOrSkipped],
    images: int | None = 3,
    crop: int | None = 128,
    inits: Sequence[str] = DEFAULT_INITS,
    steps: int = 300,
    lr: float = 0.05,
    seed: int = 0,
    save_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> list[Table]:
    """Reference recovery for every scorer from every starting image: one table per start.

    Columns (means over images): PSNR and SSIM of ``x_K`` against the reference, the distance
    at the start ``d_0`` and at the end ``d_K``, and ``log10(d_K/d_0)`` (how far the optimiser
    brought its own distance down; ratios floored at 1e-12). The first row, ``x_0 (start)``,
    gives PSNR and SSIM of the starting image. Per-image values are in each table's ``meta``.

    Args:
        root: folder of reference images (e.g. ``../shared/data/eval/kodak``).
        scorers: distances to minimise (differentiable; see :func:`recovery_scorers`).
        images: use the first ``images`` files by name (``None``: all).
        crop: centre crop side in pixels (``None``: full images, which must then share one size).
        inits: keys of :data:`INITS`.
        steps: Adam steps per run.
        lr: Adam learning rate.
        seed: seed of the starting images (the same ``x_0`` for every scorer).
        save_dir: if given, write ``<init>/<metric>/<image>.png`` for every ``x_K`` and
            ``<init>/x_0/<image>.png`` for the start.
        progress: progress bars on stderr: ``True`` always, ``False`` never, ``None`` only on a terminal.

    Returns:
        One :class:`~codecloss.evaluate.report.Table` per start, in the order of ``inits``.

    Example:
        >>> tables = evaluate_recovery("../shared/data/eval/kodak", recovery_scorers())  # doctest: +SKIP
        >>> print(tables[0].format())  # doctest: +SKIP
    """
    _check_settings(inits, steps, lr)
    if crop is not None and crop <= 0:
        raise ValueError(f"crop: expected a positive side or None, got {crop!r}")
    if images is not None and images <= 0:
        raise ValueError(f"images: expected a positive count or None, got {images!r}")
    files = list(list_images(root).values())[:images]
    if not files:
        raise FileNotFoundError(f"root: no images in {str(root)!r}")
    references = [center_crop(read_image(path), crop) for path in files]
    sizes = sorted({tuple(r.shape[-2:]) for r in references})
    if len(sizes) > 1:
        raise ValueError(f"crop: the images have different sizes {sizes}; give a crop side that fits them all")
    reference = torch.stack(references)
    names = [path.name for path in files]
    shape = "full" if crop is None else f"{crop}x{crop} centre crops"
    tables = []
    for init in inits:
        start = initial_image(reference, init, torch.Generator().manual_seed(seed))
        psnr_start, ssim_start = _quality(start, reference)
        rows = [Row(_START_ROW, {"PSNR": _mean(psnr_start), "SSIM": _mean(ssim_start)})]
        per_image: dict[str, Any] = {_START_ROW: {"psnr": psnr_start, "ssim": ssim_start}}
        seconds: dict[str, float] = {}
        for scorer in scorers:
            if isinstance(scorer, Skipped):
                rows.append(Row(scorer.name, {}, f"skipped: {scorer.reason}"))
                continue
            began = time.perf_counter()
            try:
                result = recover(reference, scorer, init, steps=steps, lr=lr, seed=seed, progress=progress)
            except MetricUnavailable as err:
                logger.info("%s skipped: %s", scorer.name, err)
                rows.append(Row(scorer.name, {}, f"skipped: {err}"))
                continue
            seconds[scorer.name] = round(time.perf_counter() - began, 2)
            log_ratios = [math.log10(max(f / s, _RATIO_FLOOR)) if s > 0 else math.nan
                          for s, f in zip(result.distance_start, result.distance_final)]
            rows.append(Row(scorer.name, {
                "PSNR": _mean(result.psnr), "SSIM": _mean(result.ssim), "d_0": _mean(result.distance_start),
                "d_K": _mean(result.distance_final), "log10(d_K/d_0)": _mean(log_ratios),
            }))
            per_image[scorer.name] = result.to_dict()
            logger.info("%s from %s: PSNR %.2f dB, SSIM %.4f (%.1f s)", scorer.name, init, _mean(result.psnr),
                        _mean(result.ssim), seconds[scorer.name])
            if save_dir is not None:
                for name, image in zip(names, result.image):
                    _save_png(image, Path(save_dir) / init / _slug(scorer.name) / f"{Path(name).stem}.png")
        if save_dir is not None:
            for name, image in zip(names, start):
                _save_png(image, Path(save_dir) / init / "x_0" / f"{Path(name).stem}.png")
        table = Table(f"reference recovery from {init} ({INITS[init]}); {len(files)} images ({shape}), "
                      f"{steps} Adam steps, lr {lr:g}", list(COLUMNS), rows)
        table.meta = {"root": str(root), "images": names, "crop": crop, "init": init, "init_description": INITS[init],
                      "steps": steps, "lr": lr, "seed": seed, "parametrisation": "pixels, clamped to [0, 1] after "
                      "every Adam step", "per_image": per_image, "seconds": seconds}
        tables.append(table)
    return tables
