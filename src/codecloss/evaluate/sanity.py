"""Sanity checks without human data: does a metric order known distortion strengths correctly?

These are checks that a distance grows with the amount of a distortion, not
measures of agreement with people (use :mod:`codecloss.evaluate.bapps` and
:mod:`codecloss.evaluate.mos` for that).

- :func:`evaluate_synthetic`: images (e.g. Kodak) under five synthetic distortions at five
  increasing levels; reports the fraction of level pairs (i < j) with d(level i) < d(level j).
- :func:`evaluate_ordered_subset`: a folder of distorted images with DMOS in an ``example.json``
  (e.g. ``csiq_1600_subset``); reports per distortion type the fraction of pairs ordered as DMOS.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import Tensor

from codecloss.cpips import as_image_tensor
from codecloss.evaluate.images import center_crop, list_images, read_image
from codecloss.evaluate.report import Row, Table
from codecloss.evaluate.scorers import DistanceCollector, ScorerOrSkipped

__all__ = ["DISTORTIONS", "distort", "evaluate_ordered_subset", "evaluate_synthetic", "pair_agreement", "pair_rows"]

logger = logging.getLogger(__name__)

#: Distortion -> its five levels, mildest first.
DISTORTIONS: dict[str, tuple[float, ...]] = {
    "noise": (0.02, 0.04, 0.08, 0.12, 0.20),  # std of additive Gaussian noise (same field, scaled)
    "blur": (0.5, 1.0, 1.5, 2.5, 4.0),  # Gaussian blur sigma in pixels
    "jpeg": (90, 70, 50, 30, 10),  # Pillow JPEG quality
    "color": (0.02, 0.04, 0.08, 0.12, 0.20),  # offset along (+R, -B) / sqrt(2)
    "contrast": (0.9, 0.75, 0.6, 0.45, 0.3),  # factor towards each channel's mean
}

_COLOR_DIRECTION = torch.tensor([1.0, 0.0, -1.0]).div(math.sqrt(2.0)).view(3, 1, 1)


def _jpeg(image: Tensor, quality: int) -> Tensor:
    from PIL import Image

    array = image.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return as_image_tensor(decoded)


def distort(image: Tensor, kind: str, level: float, noise: Tensor | None = None) -> Tensor:
    """Apply one synthetic distortion to a (3, H, W) image in [0, 1].

    Args:
        image: the clean image.
        kind: a key of :data:`DISTORTIONS`, or ``"mean"`` (the same offset ``level`` added to
            every channel, a brightness change).
        level: its strength (see :data:`DISTORTIONS` for the meaning per kind; ``"contrast"``
            levels above 1 stretch instead of reduce).
        noise: standard normal field of the image's shape for ``"noise"`` (reusing one field makes
            the levels nested); drawn fresh when ``None``.

    Returns:
        The distorted image, clamped to [0, 1].

    Example:
        >>> distort(torch.full((3, 32, 32), 0.5), "contrast", 0.5).unique().tolist()
        [0.5]
    """
    if kind == "noise":
        field = torch.randn_like(image) if noise is None else noise
        out = image + level * field
    elif kind == "blur":
        size = 2 * math.ceil(3 * level) + 1
        out = TF.gaussian_blur(image.unsqueeze(0), [size, size], [level, level]).squeeze(0)
    elif kind == "jpeg":
        out = _jpeg(image, int(level))
    elif kind == "color":
        out = image + level * _COLOR_DIRECTION.to(image)
    elif kind == "mean":
        out = image + level
    elif kind == "contrast":
        mean = image.mean(dim=(1, 2), keepdim=True)
        out = mean + level * (image - mean)
    else:
        raise ValueError(f"kind: got {kind!r}, expected one of {[*DISTORTIONS, 'mean']}")
    return out.clamp(0, 1)


def pair_agreement(distances: Sequence[float], targets: Sequence[float]) -> tuple[float, int]:
    """Count pairs a metric orders like ``targets`` (ties in the metric count 0.5).

    Args:
        distances: metric distances.
        targets: the true order (distortion levels or DMOS); pairs with equal targets are ignored.

    Returns:
        ``(agreeing pairs, compared pairs)``.

    Example:
        >>> pair_agreement([0.1, 0.3, 0.2], [1, 2, 3])
        (2.0, 3)
    """
    d, t = np.asarray(distances, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    agree, total = 0.0, 0
    for i in range(len(d)):
        for j in range(i + 1, len(d)):
            if t[i] == t[j]:
                continue
            total += 1
            agree += 0.5 if d[i] == d[j] else float((d[i] < d[j]) == (t[i] < t[j]))
    return agree, total


def pair_rows(
    collector: DistanceCollector, groups: dict[str, list[tuple[str, Sequence[float]]]], columns: list[str]
) -> list[Row]:
    """Rows of pair-agreement fractions: per group (column) and overall, from keys -> targets."""
    rows = []
    for name in collector.names:
        if name in collector.skipped:
            rows.append(Row(name, {c: None for c in columns}, collector.skipped[name]))
            continue
        values: dict[str, float | None] = {}
        all_agree, all_total = 0.0, 0
        for group, keyed in groups.items():
            agree, total = 0.0, 0
            for key, targets in keyed:
                a, t = pair_agreement(collector.get(name, key), targets)  # type: ignore[arg-type] (not skipped)
                agree, total = agree + a, total + t
            values[group] = agree / total if total else None
            all_agree, all_total = all_agree + agree, all_total + total
        values["overall"] = all_agree / all_total if all_total else None
        rows.append(Row(name, values))
    return rows


def evaluate_synthetic(
    root: str | os.PathLike,
    scorers: Sequence[ScorerOrSkipped],
    images: int | None = 6,
    crop: int | None = 256,
    distortions: Sequence[str] | None = None,
    seed: int = 0,
) -> Table:
    """Fraction of correctly ordered level pairs per synthetic distortion (and overall).

    Each image gets every distortion at the five levels of :data:`DISTORTIONS`; for each
    (image, distortion) the 10 pairs of levels i < j count as correct when
    ``d(clean, level i) < d(clean, level j)``.

    Args:
        root: folder of clean images (e.g. ``../shared/data/eval/kodak``).
        scorers: metrics to compare.
        images: use the first ``images`` files by name (``None``: all).
        crop: centre crop side in pixels (``None``: full images).
        distortions: subset of :data:`DISTORTIONS` keys.
        seed: seed of the noise fields.

    Returns:
        A :class:`~codecloss.evaluate.report.Table` (columns: distortions, ``overall``).

    Example:
        >>> from codecloss.evaluate.scorers import build_scorers
        >>> table = evaluate_synthetic("../shared/data/eval/kodak", build_scorers(), images=4)  # doctest: +SKIP
    """
    kinds = list(DISTORTIONS) if distortions is None else list(distortions)
    for kind in kinds:
        if kind not in DISTORTIONS:
            raise ValueError(f"distortions: unknown {kind!r}, expected some of {list(DISTORTIONS)}")
    files = list(list_images(root).values())[:images]
    if not files:
        raise FileNotFoundError(f"root: no images in {str(root)!r}")
    generator = torch.Generator().manual_seed(seed)
    collector = DistanceCollector(scorers)
    groups: dict[str, list[tuple[str, Sequence[float]]]] = {kind: [] for kind in kinds}
    for path in files:
        clean = center_crop(read_image(path), crop)
        noise = torch.randn(clean.shape, generator=generator)
        for kind in kinds:
            levels = DISTORTIONS[kind]
            batch = torch.stack([distort(clean, kind, level, noise) for level in levels])
            key = f"{path.name}/{kind}"
            collector.add(key, clean.expand_as(batch), batch)
            groups[kind].append((key, range(len(levels))))
        logger.info("scored %s", path.name)
    shape = "full" if crop is None else f"{crop}x{crop} centre crops"
    table = Table(f"synthetic distortions on {len(files)} images ({shape}): fraction of level pairs ordered correctly",
                  [*kinds, "overall"], pair_rows(collector, groups, [*kinds, "overall"]))
    table.meta = {"root": str(root), "images": [p.name for p in files], "crop": crop, "seed": seed,
                  "levels": {k: list(DISTORTIONS[k]) for k in kinds}}
    return table


def _subset_entries(root: Path) -> list[tuple[Path, float]]:
    listing = root / "example.json"
    if not listing.is_file():
        raise FileNotFoundError(f"root: no {str(listing)!r}")
    examples = json.loads(listing.read_text())
    for example in examples:
        if "DMOS" not in str(example.get("Remark", "")):
            continue
        entries = [(root / "ISPP" / Path(path).name, float(score)) for path, score in example.get("ISPP", [])]
        if entries and all(path.is_file() for path, _ in entries):
            return entries
    raise FileNotFoundError(f"root: no DMOS example in {str(listing)!r} whose ISPP images are all present")


def evaluate_ordered_subset(root: str | os.PathLike, scorers: Sequence[ScorerOrSkipped]) -> Table:
    """Within each distortion type, the fraction of image pairs a metric orders as DMOS does.

    Reads ``root/example.json`` (the first example whose remark says DMOS and whose
    ``ISPP/<image>.<TYPE>.<level>.png`` files exist). The CSIQ reference image is not in such a
    subset, so each type is compared against a *pseudo-reference*: the lowest-DMOS image of the
    other types (e.g. BLUR level 1 for the AWGN series). Distances then include a small constant
    offset, and only their order within a type is used.

    Args:
        root: e.g. ``../shared/data/iqa/csiq_1600_subset``.
        scorers: metrics to compare.

    Returns:
        A :class:`~codecloss.evaluate.report.Table` (columns: distortion types, ``overall``).
    """
    root = Path(root)
    entries = _subset_entries(root)
    by_type: dict[str, list[tuple[Path, float]]] = {}
    for path, score in entries:
        parts = path.name.split(".")
        if len(parts) < 4:
            raise ValueError(f"root: {path.name!r} is not named <image>.<TYPE>.<level>.<ext>")
        by_type.setdefault(parts[1], []).append((path, score))
    if len(by_type) < 2:
        raise ValueError(f"root: need at least two distortion types for pseudo-references, got {sorted(by_type)}")
    collector = DistanceCollector(scorers)
    groups: dict[str, list[tuple[str, Sequence[float]]]] = {}
    references = {}
    for kind, items in by_type.items():
        others = [item for other, group in by_type.items() if other != kind for item in group]
        reference_path = min(others, key=lambda item: item[1])[0]
        references[kind] = reference_path.name
        reference = read_image(reference_path)
        batch = torch.stack([read_image(path) for path, _ in items])
        collector.add(kind, reference.expand_as(batch), batch)
        groups[kind] = [(kind, [score for _, score in items])]
    columns = [*by_type, "overall"]
    table = Table(f"{root.name}: fraction of pairs ordered as DMOS within each distortion type", columns,
                  pair_rows(collector, groups, columns))
    table.meta = {"root": str(root), "pseudo_references": references,
                  "counts": {kind: len(items) for kind, items in by_type.items()}}
    return table
