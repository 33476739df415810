"""BAPPS evaluation (Zhang et al., CVPR 2018): 2AFC agreement and JND mAP, in LPIPS's scoring.

Reads the official folder layout::

    ROOT/2afc/{train,val}/<category>/{ref,p0,p1}/<id>.png  and  judge/<id>.npy
    ROOT/jnd/val/<category>/{p0,p1}/<id>.png  and  same/<id>.npy

``judge`` is the fraction of people who found p1 closer to ref; ``same`` the fraction who
found p0 and p1 identical.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from codecloss._distributed import gather_in_order, shard
from codecloss._progress import progress as progress_bar
from codecloss._validate import check_choice
from codecloss.evaluate.images import IMAGE_SUFFIXES, read_image
from codecloss.evaluate.report import Row, Table
from codecloss.evaluate.scorers import DistanceCollector, ScorerOrSkipped

__all__ = [
    "CATEGORIES_2AFC",
    "CATEGORIES_JND",
    "BappsDataset",
    "evaluate_2afc",
    "evaluate_bapps",
    "evaluate_jnd",
    "find_categories",
    "score_2afc",
    "score_jnd",
    "voc_ap",
]

logger = logging.getLogger(__name__)

#: 2AFC validation categories in the paper's order.
CATEGORIES_2AFC = ("traditional", "cnn", "superres", "deblur", "color", "frameinterp")
#: JND validation categories.
CATEGORIES_JND = ("traditional", "cnn")

_LAYOUT = {"2afc": (("ref", "p0", "p1"), "judge"), "jnd": (("p0", "p1"), "same")}


def score_2afc(d0: np.ndarray, d1: np.ndarray, judge: np.ndarray) -> float:
    """2AFC score: agreement with the human judgements, as LPIPS computes it.

    Each triplet counts ``1 - judge`` when ``d0 < d1``, ``judge`` when ``d1 < d0`` and 0.5 on ties.

    Args:
        d0: (N,) distances ref-p0.
        d1: (N,) distances ref-p1.
        judge: (N,) fraction of people who chose p1 as closer.

    Returns:
        Mean score in [0, 1].

    Example:
        >>> score_2afc(np.array([0.1, 0.5]), np.array([0.2, 0.2]), np.array([0.0, 0.25]))
        0.625
    """
    d0, d1, judge = (np.asarray(a, dtype=np.float64) for a in (d0, d1, judge))
    if not d0.shape == d1.shape == judge.shape or d0.ndim != 1 or d0.size == 0:
        raise ValueError(
            f"d0, d1, judge: expected equal non-empty 1-D arrays, got {d0.shape}, {d1.shape}, {judge.shape}"
        )
    scores = (d0 < d1) * (1.0 - judge) + (d1 < d0) * judge + (d0 == d1) * 0.5
    return float(scores.mean())


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve, PASCAL VOC style (non-interpolated, all points).

    The precision envelope is made monotone from the right, then summed over recall steps
    (py-faster-rcnn's ``voc_ap(use_07_metric=False)``, which LPIPS uses).
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def score_jnd(distances: np.ndarray, same: np.ndarray) -> float:
    """JND mAP: rank pairs by distance (closest first) and score how well that retrieves "same" pairs.

    Args:
        distances: (N,) distances p0-p1.
        same: (N,) fraction of people who judged the pair identical.

    Returns:
        VOC average precision in [0, 1].
    """
    distances, same = np.asarray(distances, dtype=np.float64), np.asarray(same, dtype=np.float64)
    if distances.shape != same.shape or distances.ndim != 1 or distances.size == 0:
        raise ValueError(f"distances, same: expected equal non-empty 1-D arrays, got {distances.shape}, {same.shape}")
    if same.sum() <= 0:
        raise ValueError("same: no pair was judged the same by anyone; mAP is undefined")
    order = np.argsort(distances, kind="stable")
    sames = same[order]
    tp = np.cumsum(sames)
    fp = np.cumsum(1.0 - sames)
    fn = sames.sum() - tp
    return voc_ap(tp / (tp + fn), tp / (tp + fp))


@dataclass(frozen=True)
class _Item:
    images: tuple[Path, ...]
    label: Path


class BappsDataset(Dataset):
    """One BAPPS category folder: 2AFC (``ref, p0, p1, judge``) or JND (``p0, p1, same``).

    Items are dicts of (3, H, W) float tensors in [0, 1] plus the label as a float tensor.

    Args:
        folder: e.g. ``ROOT/2afc/val/cnn``.
        mode: ``"2afc"`` or ``"jnd"``.
        limit: keep only the first ``limit`` items (sorted by id).

    Example:
        >>> data = BappsDataset("dataset/2afc/val/cnn", "2afc")  # doctest: +SKIP
        >>> sorted(data[0])  # doctest: +SKIP
        ['judge', 'p0', 'p1', 'ref']
    """

    def __init__(self, folder: str | os.PathLike, mode: str, limit: int | None = None) -> None:
        check_choice("mode", mode, _LAYOUT)
        self.folder, self.mode = Path(folder), mode
        self.image_dirs, self.label_dir = _LAYOUT[mode]
        self.items = self._match()[:limit]

    def _match(self) -> list[_Item]:
        first = self.folder / self.image_dirs[0]
        if not first.is_dir():
            raise FileNotFoundError(
                f"root: no folder {str(first)!r}; expected the BAPPS layout "
                f"{'/'.join(self.image_dirs)}/<id>.png and {self.label_dir}/<id>.npy"
            )
        items = []
        for path in sorted(p for p in first.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            images = tuple(self.folder / d / path.name for d in self.image_dirs)
            label = self.folder / self.label_dir / f"{path.stem}.npy"
            missing = [str(p) for p in (*images, label) if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"root: {str(path)!r} has no counterpart {missing[0]!r}")
            items.append(_Item(images, label))
        if not items:
            raise FileNotFoundError(f"root: no images in {str(first)!r}")
        return items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = self.items[index]
        out = {name: read_image(path) for name, path in zip(self.image_dirs, item.images)}
        label = np.load(item.label, allow_pickle=False)
        out[self.label_dir] = torch.as_tensor(float(np.asarray(label, dtype=np.float64).reshape(-1)[0]))
        return out


def find_categories(
    root: str | os.PathLike, mode: str, split: str = "val", categories: Sequence[str] | None = None
) -> list[str]:
    """Category folders present under ``root/<mode>/<split>``: known ones in the paper's order, then the rest.

    Raises ``FileNotFoundError`` when the split folder or an asked category is missing.
    """
    base = Path(root) / mode / split
    if not base.is_dir():
        raise FileNotFoundError(f"root: no folder {str(base)!r} (expected ROOT/{mode}/{split}/<category>/)")
    present = sorted(p.name for p in base.iterdir() if p.is_dir())
    if categories is not None:
        missing = [c for c in categories if c not in present]
        if missing:
            raise FileNotFoundError(f"categories: {missing} not found in {str(base)!r}; present: {present}")
        return list(categories)
    known = CATEGORIES_2AFC if mode == "2afc" else CATEGORIES_JND
    return [c for c in known if c in present] + [c for c in present if c not in known]


def _batches(dataset: BappsDataset, batch_size: int, num_workers: int, units: range) -> Iterator[dict[str, Tensor]]:
    """Batches number ``units`` of ``dataset`` cut in order into ``batch_size`` items."""
    end = len(dataset)
    sampler = [list(range(b * batch_size, min(end, (b + 1) * batch_size))) for b in units]
    return iter(DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers))


def _evaluate(
    root: str | os.PathLike,
    mode: str,
    scorers: Sequence[ScorerOrSkipped],
    split: str,
    categories: Sequence[str] | None,
    batch_size: int,
    num_workers: int,
    limit: int | None,
    progress: bool | None,
    distributed: bool = False,
) -> Table:
    chosen = find_categories(root, mode, split, categories)
    results: dict[str, dict[str, float | None]] = {s.name: {} for s in scorers}
    notes: dict[str, str] = {}
    counts = {}
    for category in chosen:
        dataset = BappsDataset(Path(root) / mode / split / category, mode, limit)
        counts[category] = len(dataset)
        collector = DistanceCollector(scorers)
        labels = []
        count = -(-len(dataset) // batch_size)
        units = shard(count) if distributed else range(count)  # whole batches: the same numbers as one process
        bar = progress_bar(_batches(dataset, batch_size, num_workers, units), progress,
                           total=len(units), desc=f"{mode}/{category}", leave=False)
        for batch in bar:
            if mode == "2afc":
                collector.add("d0", batch["ref"], batch["p0"])
                collector.add("d1", batch["ref"], batch["p1"])
                labels.append(batch["judge"])
            else:
                collector.add("d", batch["p0"], batch["p1"])
                labels.append(batch["same"])
        if distributed:
            collector.gather()
            labels = gather_in_order(labels)
        label = torch.cat(labels).double().numpy()
        for name in collector.names:
            if mode == "2afc":
                d0, d1 = collector.get(name, "d0"), collector.get(name, "d1")
                results[name][category] = None if d0 is None else score_2afc(d0, d1, label)
            else:
                d = collector.get(name, "d")
                results[name][category] = None if d is None else score_jnd(d, label)
            if name in collector.skipped:
                notes[name] = collector.skipped[name]
        logger.info("%s/%s: %d items scored", mode, category, len(dataset))
    rows = []
    for name, values in results.items():
        scored = [v for v in values.values() if v is not None]
        values["mean"] = float(np.mean(scored)) if len(scored) == len(chosen) else None
        rows.append(Row(name, values, notes.get(name)))
    title = f"BAPPS {'2AFC score' if mode == '2afc' else 'JND mAP'} ({split})"
    meta = {"root": str(root), "mode": mode, "split": split, "counts": counts}
    return Table(title, [*chosen, "mean"], rows, meta)


def evaluate_2afc(
    root: str | os.PathLike,
    scorers: Sequence[ScorerOrSkipped],
    split: str = "val",
    categories: Sequence[str] | None = None,
    batch_size: int = 50,
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool | None = None,
    distributed: bool = False,
) -> Table:
    """2AFC score per category (and their unweighted mean) for every scorer.

    Args:
        root: BAPPS root (holding ``2afc/``).
        scorers: from :func:`codecloss.evaluate.scorers.build_scorers`.
        split: ``"val"`` or ``"train"``.
        categories: category folder names; default every one present.
        batch_size: patches per forward pass.
        num_workers: image-decoding worker processes.
        limit: score only the first ``limit`` triplets of each category.
        progress: progress bar on stderr: ``True`` always, ``False`` never, ``None`` only on a terminal.
        distributed: every rank of the initialised default process group (torchrun) scores its
            share of the batches and all of them return the same table as one process would.

    Returns:
        A :class:`~codecloss.evaluate.report.Table` (columns: categories, ``mean``).
    """
    return _evaluate(root, "2afc", scorers, split, categories, batch_size, num_workers, limit, progress, distributed)


def evaluate_jnd(
    root: str | os.PathLike,
    scorers: Sequence[ScorerOrSkipped],
    split: str = "val",
    categories: Sequence[str] | None = None,
    batch_size: int = 50,
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool | None = None,
    distributed: bool = False,
) -> Table:
    """JND mAP per category (and their mean) for every scorer; arguments as :func:`evaluate_2afc`."""
    return _evaluate(root, "jnd", scorers, split, categories, batch_size, num_workers, limit, progress, distributed)


def evaluate_bapps(
    root: str | os.PathLike,
    scorers: Sequence[ScorerOrSkipped],
    modes: Sequence[str] = ("2afc", "jnd"),
    **kwargs: object,
) -> list[Table]:
    """2AFC and/or JND tables for the modes whose folders exist under ``root``.

    Args:
        root: BAPPS root.
        scorers: scorers to compare.
        modes: subset of ``("2afc", "jnd")``.
        **kwargs: :func:`evaluate_2afc` options.

    Returns:
        One table per mode found.

    Example:
        >>> from codecloss.evaluate.scorers import build_scorers
        >>> tables = evaluate_bapps("dataset", build_scorers())  # doctest: +SKIP
    """
    for mode in modes:
        check_choice("modes", mode, _LAYOUT)
    split = str(kwargs.get("split", "val"))
    found = [m for m in modes if (Path(root) / m / split).is_dir()]
    if not found:
        raise FileNotFoundError(
            f"root: {str(root)!r} holds none of {[f'{m}/{split}/' for m in modes]} (expected the BAPPS layout)"
        )
    runners = {"2afc": evaluate_2afc, "jnd": evaluate_jnd}
    return [runners[m](root, scorers, **kwargs) for m in found]  # type: ignore[arg-type]
