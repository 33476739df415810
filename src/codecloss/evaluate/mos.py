"""Correlation with subjective scores on MOS/DMOS datasets: SRCC, PLCC (after a 4-parameter logistic), KRCC.

Folder layouts read (the files as the datasets are distributed):

- ``tid2013``: ``mos_with_names.txt`` (``<mos> <file>`` lines), ``distorted_images/``,
  ``reference_images/`` (``i01_02_3.bmp`` -> reference ``I01.BMP``, case-insensitive). MOS: higher is better.
- ``kadid10k``: ``dmos.csv`` (``dist_img,ref_img,dmos,...``), ``images/``. Its ``dmos`` is a
  degradation rating, 1 (very annoying) to 5 (imperceptible): higher is better.
- ``csiq``: a CSV export of the ``all_by_image`` sheet of ``csiq.DMOS.xlsx`` (any ``*.csv`` in ROOT
  with columns ``image, dst_type, dst_lev, dmos``), ``src_imgs/<image>.png``,
  ``dst_imgs/<type>/<image>.<TYPE>.<lev>.png``. DMOS: lower is better.
- ``live``: LIVE Release 2: ``dmos.mat`` (``dmos``, ``orgs``), ``refnames_all.mat``, folders
  ``jp2k, jpeg, wn, gblur, fastfading`` of ``img<k>.bmp`` (scores in that folder order, k = 1..count),
  ``refimgs/``. Entries with ``orgs == 1`` (references) are left out. DMOS: lower is better.

Scores are oriented so that positive correlations mean agreement (metric distances against
"distortion": DMOS as is, MOS negated).
"""

from __future__ import annotations

import csv
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch import Tensor

from codecloss._distributed import shard
from codecloss._progress import progress as progress_bar
from codecloss._validate import check_choice
from codecloss.evaluate.images import read_image
from codecloss.evaluate.report import Row, Table
from codecloss.evaluate.scorers import DistanceCollector, ScorerOrSkipped

__all__ = ["LAYOUTS", "MosItem", "MosSet", "correlations", "evaluate_mos", "logistic4", "read_layout"]

logger = logging.getLogger(__name__)

LAYOUTS = ("tid2013", "kadid10k", "csiq", "live")


@dataclass(frozen=True)
class MosItem:
    """One distorted image, its reference and its subjective score."""

    distorted: Path
    reference: Path
    score: float


@dataclass(frozen=True)
class MosSet:
    """A dataset's items and the direction of its scores."""

    items: list[MosItem]
    higher_is_better: bool


def _index(folder: Path) -> dict[str, Path]:
    """Files under ``folder`` (recursively) by lower-case name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"root: no folder {str(folder)!r}")
    return {p.name.lower(): p for p in folder.rglob("*") if p.is_file()}


def _lookup(index: dict[str, Path], name: str, where: Path) -> Path:
    try:
        return index[name.lower()]
    except KeyError:
        raise FileNotFoundError(f"root: {name!r} not found in {str(where)!r}") from None


def _by_stem(index: dict[str, Path]) -> dict[str, Path]:
    return {Path(name).stem: path for name, path in index.items()}


def _read_tid2013(root: Path) -> MosSet:
    listing = root / "mos_with_names.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"root: no {str(listing)!r} (TID2013 layout)")
    distorted, references = _index(root / "distorted_images"), _by_stem(_index(root / "reference_images"))
    items = []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        score, name = line.split()[:2]
        ref = _lookup(references, f"i{name[1:3]}", root / "reference_images")
        items.append(MosItem(_lookup(distorted, name, root / "distorted_images"), ref, float(score)))
    return MosSet(items, higher_is_better=True)


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip() for f in reader.fieldnames or []]
        missing = [c for c in required if c not in fields]
        if missing:
            raise ValueError(f"root: {str(path)!r} lacks columns {missing} (has {fields})")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _read_kadid10k(root: Path) -> MosSet:
    listing = root / "dmos.csv"
    if not listing.is_file():
        raise FileNotFoundError(f"root: no {str(listing)!r} (KADID-10k layout)")
    images = _index(root / "images")
    rows = _read_csv(listing, ("dist_img", "ref_img", "dmos"))
    items = [
        MosItem(_lookup(images, r["dist_img"], root / "images"), _lookup(images, r["ref_img"], root / "images"),
                float(r["dmos"]))
        for r in rows
    ]
    return MosSet(items, higher_is_better=True)


_CSIQ_TYPES = {"noise": "awgn", "awgn": "awgn", "jpeg": "jpeg", "jpeg 2000": "jpeg2000", "jpeg2000": "jpeg2000",
               "f noise": "fnoise", "fnoise": "fnoise", "blur": "blur", "contrast": "contrast"}
_CSIQ_COLUMNS = ("image", "dst_type", "dst_lev", "dmos")


def _read_csiq(root: Path) -> MosSet:
    candidates = sorted(root.glob("*.csv"))
    listing = None
    for path in candidates:
        with open(path, newline="") as handle:
            header = [h.strip() for h in next(csv.reader(handle), [])]
        if all(c in header for c in _CSIQ_COLUMNS):
            listing = path
            break
    if listing is None:
        raise FileNotFoundError(
            f"root: no CSV with columns {list(_CSIQ_COLUMNS)} in {str(root)!r} "
            "(save the 'all_by_image' sheet of csiq.DMOS.xlsx as CSV there)"
        )
    distorted, references = _index(root / "dst_imgs"), _by_stem(_index(root / "src_imgs"))
    items = []
    for row in _read_csv(listing, _CSIQ_COLUMNS):
        kind = _CSIQ_TYPES.get(row["dst_type"].lower())
        if kind is None:
            raise ValueError(f"root: unknown CSIQ dst_type {row['dst_type']!r} in {str(listing)!r}")
        name = f"{row['image']}.{kind}.{int(float(row['dst_lev']))}.png"
        ref = _lookup(references, row["image"].lower(), root / "src_imgs")
        items.append(MosItem(_lookup(distorted, name, root / "dst_imgs"), ref, float(row["dmos"])))
    return MosSet(items, higher_is_better=False)


_LIVE_FOLDERS = ("jp2k", "jpeg", "wn", "gblur", "fastfading")


def _mat_strings(cell: np.ndarray) -> list[str]:
    return [str(np.asarray(entry).ravel()[0]) for entry in np.asarray(cell, dtype=object).ravel()]


def _read_live(root: Path) -> MosSet:
    from scipy.io import loadmat

    for name in ("dmos.mat", "refnames_all.mat"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"root: no {str(root / name)!r} (LIVE Release 2 layout)")
    scores = loadmat(root / "dmos.mat")
    dmos, orgs = np.asarray(scores["dmos"], dtype=np.float64).ravel(), np.asarray(scores["orgs"]).ravel()
    refnames = _mat_strings(loadmat(root / "refnames_all.mat")["refnames_all"])
    distorted = []
    for folder in _LIVE_FOLDERS:
        files = {name: path for name, path in _index(root / folder).items() if re.fullmatch(r"img\d+\.bmp", name)}
        names = [f"img{k}.bmp" for k in range(1, len(files) + 1)]
        if set(names) != set(files):
            raise FileNotFoundError(f"root: {str(root / folder)!r} must hold img1.bmp..img{len(files)}.bmp")
        distorted += [files[name] for name in names]
    if not len(distorted) == len(dmos) == len(orgs) == len(refnames):
        raise ValueError(
            f"root: {len(distorted)} images in {list(_LIVE_FOLDERS)} but dmos.mat has {len(dmos)} scores, "
            f"{len(orgs)} orgs and refnames_all.mat {len(refnames)} names"
        )
    references = _index(root / "refimgs")
    items = [
        MosItem(path, _lookup(references, ref, root / "refimgs"), float(score))
        for path, ref, score, org in zip(distorted, refnames, dmos, orgs)
        if not org
    ]
    return MosSet(items, higher_is_better=False)


_READERS: dict[str, Callable[[Path], MosSet]] = {
    "tid2013": _read_tid2013,
    "kadid10k": _read_kadid10k,
    "csiq": _read_csiq,
    "live": _read_live,
}


def read_layout(layout: str, root: str | os.PathLike) -> MosSet:
    """List a dataset's (distorted, reference, score) items.

    Args:
        layout: one of :data:`LAYOUTS`.
        root: dataset folder.

    Returns:
        A :class:`MosSet`.
    """
    check_choice("layout", layout, LAYOUTS)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: no such folder {str(root)!r}")
    mos_set = _READERS[layout](root)
    if len(mos_set.items) < 3:
        raise ValueError(f"root: {len(mos_set.items)} scored images found in {str(root)!r}, need at least 3")
    return mos_set


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def correlations(distances: np.ndarray, distortion: np.ndarray) -> dict[str, float | bool]:
    """SRCC, PLCC after the 4-parameter logistic fit, and KRCC (tau-b).

    Args:
        distances: (N,) metric distances.
        distortion: (N,) subjective scores oriented so that higher = worse (e.g. DMOS).

    Returns:
        ``{"srcc", "plcc", "krcc", "logistic_fit"}``; ``logistic_fit`` is False when the fit did
        not converge and PLCC is then the plain linear correlation.

    Example:
        >>> r = correlations(np.arange(5.0), np.array([0.1, 0.2, 0.4, 0.3, 0.9]))
        >>> round(r["srcc"], 2)
        0.9
    """
    from scipy import optimize, stats

    x, y = np.asarray(distances, dtype=np.float64), np.asarray(distortion, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError(f"distances, distortion: expected equal 1-D arrays of >= 3 values, got {x.shape}, {y.shape}")
    srcc = float(stats.spearmanr(x, y).statistic)
    krcc = float(stats.kendalltau(x, y).statistic)
    scale = x.std() or 1.0
    z = (x - x.mean()) / scale
    fitted = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, z, y, p0=[y.max(), y.min(), 0.0, 1.0], maxfev=20000)
        prediction = logistic4(z, *params)
        if not np.all(np.isfinite(prediction)) or prediction.std() == 0:
            raise RuntimeError("degenerate fit")
    except (RuntimeError, ValueError, optimize.OptimizeWarning) as err:
        logger.warning("4-parameter logistic fit failed (%s); PLCC is the linear correlation", err)
        prediction, fitted = x, False
    plcc = float(stats.pearsonr(prediction, y).statistic)
    return {"srcc": srcc, "plcc": plcc, "krcc": krcc, "logistic_fit": fitted}


def evaluate_mos(
    layout: str,
    root: str | os.PathLike,
    scorers: Sequence[ScorerOrSkipped],
    limit: int | None = None,
    progress: bool | None = None,
    distributed: bool = False,
) -> Table:
    """SRCC / PLCC / KRCC of every scorer against the dataset's subjective scores.

    Args:
        layout: one of :data:`LAYOUTS`.
        root: dataset folder.
        scorers: from :func:`codecloss.evaluate.scorers.build_scorers`.
        limit: score only the first ``limit`` images (for quick looks; not comparable to full runs).
        progress: progress bar on stderr: ``True`` always, ``False`` never, ``None`` only on a terminal.
        distributed: every rank of the initialised default process group (torchrun) scores its
            share of the images and all of them return the same table as one process would.

    Returns:
        A :class:`~codecloss.evaluate.report.Table` with columns ``SRCC, PLCC, KRCC``.

    Example:
        >>> from codecloss.evaluate.scorers import build_scorers
        >>> table = evaluate_mos("tid2013", "data/tid2013", build_scorers())  # doctest: +SKIP
    """
    mos_set = read_layout(layout, root)
    items = mos_set.items[:limit]
    collector = DistanceCollector(scorers)
    references: dict[Path, Tensor] = {}
    units = shard(len(items)) if distributed else range(len(items))
    for item in progress_bar([items[i] for i in units], progress, desc=layout, leave=False):
        if item.reference not in references:
            references[item.reference] = read_image(item.reference).unsqueeze(0)
        reference = references[item.reference]
        distorted = read_image(item.distorted).unsqueeze(0)
        if distorted.shape != reference.shape:
            raise ValueError(f"root: {str(item.distorted)!r} and its reference {str(item.reference)!r} differ in size")
        collector.add("d", distorted, reference)
    if distributed:
        collector.gather()
    scores = np.array([item.score for item in items])
    distortion = -scores if mos_set.higher_is_better else scores
    rows, fit_failed = [], []
    for name in collector.names:
        d = collector.get(name, "d")
        if d is None:
            rows.append(Row(name, {"SRCC": None, "PLCC": None, "KRCC": None}, collector.skipped[name]))
            continue
        r = correlations(d, distortion)
        if not r["logistic_fit"]:
            fit_failed.append(name)
        rows.append(Row(name, {"SRCC": r["srcc"], "PLCC": r["plcc"], "KRCC": r["krcc"]},
                        None if r["logistic_fit"] else "PLCC without logistic fit (did not converge)"))
    meta = {"root": str(root), "layout": layout, "count": len(items), "higher_is_better": mos_set.higher_is_better,
            "logistic_fit_failed": fit_failed}
    return Table(f"{layout} ({len(items)} images): correlation with subjective scores", ["SRCC", "PLCC", "KRCC"],
                 rows, meta)
