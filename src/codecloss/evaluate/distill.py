"""Held-out evaluation of distilled CPIPS heads: 2AFC agreement with independent judges and the tiny human sets.

The heads are distilled from LPIPS-VGG on natural training crops (:mod:`codecloss.train.triplets`); here they are
scored on triplets made the same way from **Kodak** (never trained on), split into the distortion kinds seen in
training and kinds held out of it, by how often their 2AFC choice agrees with **LPIPS-Alex** and **DISTS** (never
teachers) and with the teacher itself; plus, on ``csiq_1600_subset``, the fraction of pairs ordered as DMOS and,
on ``tid2013_calibration`` (5 pairs, no human scores there), the Spearman correlation with the official
LPIPS-Alex and DISTS values.

Example:
    >>> result = evaluate_distilled_heads({"uniform": "uniform", "distilled": "runs/d/head.pt"},
    ...                                   "../shared/data/eval/kodak", trunks="trunks")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from scipy.stats import spearmanr
from torch import Tensor

from codecloss.evaluate.images import read_image
from codecloss.evaluate.sanity import evaluate_ordered_subset
from codecloss.evaluate.scorers import Scorer, Skipped, cpips_scorer, reference_scorers
from codecloss.train.data import ImageBank
from codecloss.train.triplets import TRAIN_KINDS, make_triplets, teacher_distances

__all__ = ["HELD_OUT_KINDS", "JUDGES", "evaluate_distilled_heads", "twoafc_agreement"]

logger = logging.getLogger(__name__)

#: Distortion kinds left out of distillation by default and used for the held-out triplets.
HELD_OUT_KINDS = ("codec", "warp")
#: Rows of :func:`~codecloss.evaluate.scorers.reference_scorers` that judge (the teacher is reported too).
JUDGES = ("LPIPS-Alex", "DISTS", "LPIPS-VGG")
#: ``results_official.csv`` rows of the tid2013_calibration folder -> judge they hold.
_TID_OFFICIAL = {"lpips": "LPIPS-Alex", "dists": "DISTS"}


def twoafc_agreement(d0: Tensor, d1: Tensor, judge0: Tensor, judge1: Tensor) -> float:
    """Fraction of triplets where a metric picks the same closer image as a judge (a tie on either side: 0.5).

    Args:
        d0, d1: the metric's distances ref-p0 and ref-p1, (N,).
        judge0, judge1: the judge's distances, (N,).

    Example:
        >>> one, two = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 1.0])
        >>> twoafc_agreement(one, two, torch.ones(2), torch.full((2,), 2.0))
        0.5
    """
    mine, theirs = torch.sign(d0 - d1), torch.sign(judge0 - judge1)
    scores = torch.where((mine == 0) | (theirs == 0), 0.5, (mine == theirs).double())
    return float(scores.mean())


def _agreements(scorers: Sequence[Scorer], triplets: dict, judges: Sequence[str]) -> dict[str, dict[str, float]]:
    distances = {s.name: teacher_distances(s.distance, triplets, batch_size=50) for s in scorers}
    return {name: {judge: twoafc_agreement(*distances[name], *distances[judge]) for judge in judges if judge != name}
            for name in distances}


def _tid2013(root: Path, scorers: Sequence[Scorer]) -> dict[str, Any]:
    with open(root / "results_official.csv", newline="") as handle:
        rows = {row["Method"]: row for row in csv.DictReader(handle)}
    names = [column for column in rows["lpips"] if column != "Method"]
    ref = torch.stack([read_image(root / "ref_dir" / n) for n in names])
    dist = torch.stack([read_image(root / "dist_dir" / n) for n in names])
    result: dict[str, Any] = {"images": names}
    for scorer in scorers:
        ours = scorer.distance(ref, dist).tolist()
        official = {judge: [float(rows[key][n]) for n in names] for key, judge in _TID_OFFICIAL.items()}
        result[scorer.name] = {f"srcc_vs_official_{judge}": float(spearmanr(ours, values)[0])
                               for judge, values in official.items()}
    return result


def evaluate_distilled_heads(
    heads: Mapping[str, str],
    kodak: str | os.PathLike[str],
    trunks: str | os.PathLike[str] | None = None,
    count: int = 1000,
    crop: int = 64,
    held_out_kinds: Sequence[str] = HELD_OUT_KINDS,
    seen_kinds: Sequence[str] = TRAIN_KINDS,
    seed: int = 1234,
    csiq: str | os.PathLike[str] | None = None,
    tid2013: str | os.PathLike[str] | None = None,
    codec: Callable[[Tensor], Tensor] | None = None,
    **cpips_kwargs: Any,
) -> dict[str, Any]:
    """Compare CPIPS heads (e.g. uniform vs distilled) against LPIPS-Alex, DISTS and LPIPS-VGG on held-out data.

    Args:
        heads: row name -> ``heads=`` of :class:`~codecloss.CPIPS` (``"uniform"`` or a head file).
        kodak: folder of the evaluation photos (the triplets' crops come from here only).
        trunks: folder of the ImageNet trunk files (``None``: ``CODECLOSS_TRUNKS``).
        count: triplets per set (held-out kinds, seen kinds); 0 skips both sets.
        crop: crop side.
        held_out_kinds: kinds of the held-out set (not trained on).
        seen_kinds: kinds of the second set (those trained on, new images).
        seed: seed of both sets.
        csiq: ``csiq_1600_subset`` folder, or ``None`` to skip.
        tid2013: ``tid2013_calibration`` folder, or ``None`` to skip.
        codec: ``codec(x) -> x_hat`` when a set has the ``"codec"`` kind.
        **cpips_kwargs: further CPIPS arguments of every row (backbone, weights, layers).

    Returns:
        ``{"sets": {set: {"kinds", "count", "agreement": {metric: {judge: fraction}}}}, "csiq": table dict,
        "tid2013": {metric: {...}}}``; a judge that cannot be built raises.
    """
    judges: list[Scorer] = []
    for row in reference_scorers(trunks=trunks):
        if isinstance(row, Skipped):
            raise FileNotFoundError(f"trunks: {row.name} is unavailable ({row.reason})")
        judges.append(row)
    scorers = [cpips_scorer(name, heads=value, **cpips_kwargs) for name, value in heads.items()] + judges
    result: dict[str, Any] = {"sets": {}}
    sets = (("kodak_held_out_kinds", held_out_kinds), ("kodak_seen_kinds", seen_kinds)) if count else ()
    bank = ImageBank.from_folders([kodak], min_side=crop) if sets else None
    for name, kinds in sets:
        triplets = make_triplets(bank, count, crop, kinds, seed, codec=codec)
        result["sets"][name] = {"kinds": list(kinds), "count": count, "crop": crop, "seed": seed,
                                "agreement": _agreements(scorers, triplets, JUDGES)}
        logger.info("%s: %s", name, result["sets"][name]["agreement"])
    if csiq is not None:
        result["csiq"] = evaluate_ordered_subset(csiq, scorers).to_dict()
    if tid2013 is not None:
        result["tid2013"] = _tid2013(Path(tid2013), scorers)
    return result
