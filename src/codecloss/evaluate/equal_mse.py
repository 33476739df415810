"""Equal-MSE check: at the same mean squared error, benign changes must score closer than harmful ones.

Wang & Bovik's "Einstein" demonstration ("Mean squared error: love it or leave it?", IEEE Signal
Processing Magazine 2009): a brightness shift or a contrast stretch leaves an image's content intact,
while noise, blur and JPEG artefacts damage it, yet all can be made to have the same MSE. A perceptual
distance should rank every benign change closer to the original than every harmful one at that MSE;
PSNR, by construction, cannot (it ties).

For each image and target PSNR, the JPEG quality closest to the target fixes the MSE (JPEG's
quality is discrete); every other distortion's strength is then found by bisection so that its MSE
matches JPEG's to within 0.1 %. A (benign, harmful) pair counts as correct when
``d(clean, benign) < d(clean, harmful)`` (ties count half).

This is a sanity check on held-out images, not a measure of agreement with people.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from typing import Callable, Sequence

import torch
from torch import Tensor

from codecloss.evaluate.images import center_crop, list_images, read_image
from codecloss.evaluate.report import Table
from codecloss.evaluate.sanity import distort, pair_rows
from codecloss.evaluate.scorers import DistanceCollector, ScorerOrSkipped

__all__ = ["BENIGN", "HARMFUL", "evaluate_equal_mse", "match_mse"]

logger = logging.getLogger(__name__)

#: Benign changes -> the range of the strength searched (``distort`` kinds).
BENIGN: dict[str, tuple[float, float]] = {"mean": (0.0, 1.0), "contrast": (1.0, 10.0)}
#: Harmful changes other than JPEG (which sets the MSE) -> the range of the strength searched.
HARMFUL: dict[str, tuple[float, float]] = {"noise": (0.0, 1.0), "blur": (0.05, 12.0)}
_JPEG_QUALITIES = range(1, 96)
_TOLERANCE = 1e-3  # relative MSE mismatch accepted


def _mse(x: Tensor, y: Tensor) -> float:
    return float((x - y).pow(2).mean())


def match_mse(make: Callable[[float], Tensor], clean: Tensor, target: float, low: float, high: float,
              iterations: int = 60) -> Tensor | None:
    """Bisect ``make(level)`` over ``[low, high]`` for an MSE to ``clean`` of ``target``.

    Args:
        make: the distorted image at a strength (its MSE must grow with the strength).
        clean: the clean image.
        target: the wanted MSE.
        low, high: the search range.
        iterations: bisection steps.

    Returns:
        The distorted image, or ``None`` when ``target`` is outside what the range reaches
        (e.g. a brightness shift that saturates) to within the tolerance.

    Example:
        >>> clean = torch.full((3, 8, 8), 0.5)
        >>> out = match_mse(lambda s: clean + s, clean, 0.01, 0.0, 1.0)
        >>> round(float((out - clean).pow(2).mean()), 6)
        0.01
    """
    if _mse(make(high), clean) < target * (1 - _TOLERANCE):
        return None
    for _ in range(iterations):
        middle = (low + high) / 2
        if _mse(make(middle), clean) < target:
            low = middle
        else:
            high = middle
    out = make((low + high) / 2)
    return out if abs(_mse(out, clean) - target) <= _TOLERANCE * target else None


def _jpeg_ladder(clean: Tensor) -> list[tuple[float, Tensor]]:
    """``(PSNR, image)`` of the Pillow JPEG of ``clean`` at every quality, coded once per image."""
    coded = [distort(clean, "jpeg", q) for q in _JPEG_QUALITIES]
    return [(-10 * math.log10(_mse(image, clean)), image) for image in coded]


def evaluate_equal_mse(
    root: str | os.PathLike,
    scorers: Sequence[ScorerOrSkipped],
    images: int | None = 24,
    crop: int | None = 256,
    psnrs: Sequence[float] = (24.0, 28.0),
    seed: int = 0,
) -> Table:
    """Fraction of (benign, harmful) pairs at equal MSE that each scorer ranks correctly.

    Args:
        root: folder of clean images not used in training (e.g. ``../shared/data/eval/kodak``).
        scorers: metrics to compare.
        images: use the first ``images`` files by name (``None``: all).
        crop: centre crop side in pixels (``None``: full images).
        psnrs: the PSNR levels (dB) at which the MSE is matched.
        seed: seed of the noise fields.

    Returns:
        A :class:`~codecloss.evaluate.report.Table` with one column per pair type
        (``"mean<noise"``, ...) and ``overall``; ``meta["pairs"]`` counts the pairs and
        ``meta["unmatched"]`` lists the (image, PSNR, change) that no strength reached.

    Example:
        >>> from codecloss.evaluate.scorers import build_scorers
        >>> table = evaluate_equal_mse("../shared/data/eval/kodak", build_scorers(), images=4)  # doctest: +SKIP
    """
    if not psnrs or any(not (0 < p < 100) for p in psnrs):
        raise ValueError(f"psnrs: expected PSNR levels in (0, 100) dB, got {list(psnrs)}")
    files = list(list_images(root).values())[:images]
    if not files:
        raise FileNotFoundError(f"root: no images in {str(root)!r}")
    generator = torch.Generator().manual_seed(seed)
    harmful_kinds = [*HARMFUL, "jpeg"]
    columns = [f"{b}<{h}" for b, h in itertools.product(BENIGN, harmful_kinds)]
    collector = DistanceCollector(scorers)
    groups: dict[str, list[tuple[str, Sequence[float]]]] = {c: [] for c in columns}
    unmatched: list[str] = []
    for path in files:
        clean = center_crop(read_image(path), crop)
        noise = torch.randn(clean.shape, generator=generator)
        ladder = _jpeg_ladder(clean)
        for psnr in psnrs:
            jpeg = min(ladder, key=lambda rung: abs(rung[0] - psnr))[1]  # the quality closest to the level
            target = _mse(jpeg, clean)
            found = {"jpeg": jpeg}
            for kind, (low, high) in {**BENIGN, **HARMFUL}.items():
                if kind == "blur":  # the blur kernel's reflect padding, ceil(3 sigma), must stay inside the image
                    high = min(high, (min(clean.shape[-2:]) - 1) / 3)
                image = match_mse(lambda s, k=kind: distort(clean, k, s, noise), clean, target, low, high)
                if image is None:
                    unmatched.append(f"{path.name}@{psnr:g}dB/{kind}")
                else:
                    found[kind] = image
            for benign, harmful in itertools.product(BENIGN, harmful_kinds):
                if benign in found and harmful in found:
                    key = f"{path.name}@{psnr:g}/{benign}<{harmful}"
                    pair = torch.stack([found[benign], found[harmful]])
                    collector.add(key, clean.expand_as(pair), pair)
                    groups[f"{benign}<{harmful}"].append((key, (0, 1)))
        logger.info("scored %s", path.name)
    table = Table(
        f"equal-MSE check on {len(files)} images at {', '.join(f'{p:g}' for p in psnrs)} dB: fraction of "
        "(benign, harmful) pairs with the benign change closer",
        [*columns, "overall"], pair_rows(collector, groups, [*columns, "overall"]))
    table.meta = {"root": str(root), "images": [p.name for p in files], "crop": crop, "psnrs": list(psnrs),
                  "seed": seed, "pairs": sum(len(v) for v in groups.values()), "unmatched": unmatched}
    return table
