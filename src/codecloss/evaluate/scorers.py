"""Metrics compared by the evaluation harness: CPIPS and the baselines, as distances.

Every scorer maps two image batches (N, 3, H, W) in [0, 1] to (N,) *distances*
(lower = more similar): similarity metrics (PSNR, SSIM, MS-SSIM) are negated.
PSNR, SSIM and MS-SSIM come from ``piq``; LPIPS-Alex, LPIPS-VGG and DISTS from
:mod:`codecloss.reference` on the ImageNet trunk files of a folder (``--trunks`` or
``CODECLOSS_TRUNKS``), and are reported as skipped without them (never downloaded).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from codecloss.cpips import CPIPS

__all__ = [
    "BASELINES",
    "DistanceCollector",
    "MetricUnavailable",
    "Scorer",
    "Skipped",
    "ScorerOrSkipped",
    "baseline_scorers",
    "build_scorers",
    "cpips_scorer",
    "reference_scorers",
]

logger = logging.getLogger(__name__)

#: Baseline names in table order.
BASELINES = ("PSNR", "SSIM", "MS-SSIM", "LPIPS-Alex", "LPIPS-VGG", "DISTS")

#: Reference rows: name -> (trunk, smallest image side its network takes).
_REFERENCE_ROWS = {"LPIPS-Alex": ("alexnet", 31), "LPIPS-VGG": ("vgg16", 16), "DISTS": ("vgg16", 1)}
_MS_SSIM_MIN_SIDE = 161  # piq: min side must exceed (kernel_size - 1) * 2 ** (scales - 1) = 160


class MetricUnavailable(RuntimeError):
    """A scorer cannot score these inputs (e.g. images too small); the harness reports it as skipped."""


@dataclass
class Scorer:
    """A named distance between image batches.

    Attributes:
        name: row name in result tables.
        fn: ``fn(x, y) -> (N,)`` raw scores for (N, 3, H, W) images in [0, 1].
        higher_is_better: ``fn`` is a similarity (negated by :meth:`distance`).
        device: where inputs are moved before ``fn``.
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    higher_is_better: bool = False
    device: str | torch.device = "cpu"

    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """(N,) float64 CPU distances, lower = more similar."""
        with torch.no_grad():
            scores = self.fn(x.to(self.device), y.to(self.device)).detach().double().flatten().cpu()
        return -scores if self.higher_is_better else scores


@dataclass
class Skipped:
    """A metric that could not be built here, with the reason shown in result tables."""

    name: str
    reason: str


ScorerOrSkipped = Union[Scorer, Skipped]


def cpips_scorer(name: str = "CPIPS", device: str | torch.device = "cpu", **cpips_kwargs: Any) -> Scorer:
    """A frozen :class:`~codecloss.CPIPS` as a scorer.

    Args:
        name: row name.
        device: device of the model.
        **cpips_kwargs: :class:`~codecloss.CPIPS` arguments (backbone, weights, heads, layers).

    Example:
        >>> scorer = cpips_scorer(backbone="bmshj2018-factorized-mse-q1", weights=None)  # doctest: +SKIP
    """
    model = CPIPS(**cpips_kwargs).to(device).requires_grad_(False).eval()
    return Scorer(name, model, higher_is_better=False, device=device)


def _ms_ssim(x: Tensor, y: Tensor) -> Tensor:
    import piq

    if min(x.shape[-2:]) < _MS_SSIM_MIN_SIDE:
        raise MetricUnavailable(
            f"images of {tuple(x.shape[-2:])} are too small for 5-scale MS-SSIM (needs sides >= {_MS_SSIM_MIN_SIDE})"
        )
    return piq.multi_scale_ssim(x.clamp(0, 1), y.clamp(0, 1), data_range=1.0, reduction="none")


def reference_scorers(
    device: str | torch.device = "cpu", trunks: str | os.PathLike[str] | None = None
) -> list[ScorerOrSkipped]:
    """LPIPS-Alex, LPIPS-VGG (:func:`codecloss.reference.lpips`) and DISTS (:func:`codecloss.reference.dists`).

    Args:
        device: device of the models.
        trunks: folder of ``alexnet_features.pth`` / ``vgg16_features.pth``; ``None``: ``CODECLOSS_TRUNKS``.

    Returns:
        One entry per row, a :class:`Skipped` (with the reason) where the trunk file or the package is missing.

    Raises:
        ValueError: a trunk file that does not fit its network.
    """
    from codecloss import reference

    builders = {"LPIPS-Alex": lambda f: reference.lpips("alex", f), "LPIPS-VGG": lambda f: reference.lpips("vgg", f),
                "DISTS": reference.dists}
    rows: list[ScorerOrSkipped] = []
    for name, (trunk_name, min_side) in _REFERENCE_ROWS.items():
        try:
            file = reference.trunk_file(trunk_name, trunks)
        except FileNotFoundError as err:
            rows.append(Skipped(name, str(err)))
            continue
        if file is None:
            rows.append(Skipped(name, f"no ImageNet {trunk_name} trunk ({trunk_name}_features.pth): "
                                      f"pass --trunks DIR or set {reference.TRUNKS_ENV}"))
            continue
        try:
            model = builders[name](file).to(device)
        except ImportError as err:
            rows.append(Skipped(name, str(err)))
            continue
        rows.append(Scorer(name, _sized(name, model, min_side), device=device))
    return rows


def _sized(name: str, model: Callable[[Tensor, Tensor], Tensor], min_side: int) -> Callable[[Tensor, Tensor], Tensor]:
    """``model`` on inputs clamped to [0, 1], unavailable for images with a side below ``min_side``."""

    def fn(x: Tensor, y: Tensor) -> Tensor:
        if min(x.shape[-2:]) < min_side:
            raise MetricUnavailable(f"images of {tuple(x.shape[-2:])} are too small for {name} (needs sides >= {min_side})")
        return model(x.clamp(0, 1), y.clamp(0, 1))

    return fn


def baseline_scorers(
    device: str | torch.device = "cpu", trunks: str | os.PathLike[str] | None = None
) -> list[ScorerOrSkipped]:
    """PSNR, SSIM, MS-SSIM (piq), then :func:`reference_scorers` (LPIPS-Alex, LPIPS-VGG, DISTS).

    Args:
        device: device of every scorer.
        trunks: folder of the ImageNet trunk files; ``None``: ``CODECLOSS_TRUNKS``.

    Returns:
        One entry per name in :data:`BASELINES`, a :class:`Skipped` where unavailable.
    """
    import piq

    def psnr(x: Tensor, y: Tensor) -> Tensor:
        return piq.psnr(x.clamp(0, 1), y.clamp(0, 1), data_range=1.0, reduction="none")

    def ssim(x: Tensor, y: Tensor) -> Tensor:
        return piq.ssim(x.clamp(0, 1), y.clamp(0, 1), data_range=1.0, reduction="none")

    return [
        Scorer("PSNR", psnr, higher_is_better=True, device=device),
        Scorer("SSIM", ssim, higher_is_better=True, device=device),
        Scorer("MS-SSIM", _ms_ssim, higher_is_better=True, device=device),
        *reference_scorers(device, trunks),
    ]


def build_scorers(
    cpips_configs: Sequence[Mapping[str, Any]] = ({},),
    baselines: bool = True,
    device: str | torch.device = "cpu",
    trunks: str | os.PathLike[str] | None = None,
) -> list[ScorerOrSkipped]:
    """CPIPS scorers (one per config) followed by the baselines.

    Args:
        cpips_configs: keyword arguments of :func:`cpips_scorer` per CPIPS row (``name`` included).
        baselines: add :func:`baseline_scorers`.
        device: device for every scorer.
        trunks: folder of the ImageNet trunk files of the LPIPS / DISTS rows; ``None``: ``CODECLOSS_TRUNKS``.

    Returns:
        Scorers in table order.
    """
    scorers: list[ScorerOrSkipped] = [cpips_scorer(device=device, **config) for config in cpips_configs]
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise ValueError(f"cpips_configs: row names must be unique, got {names}")
    return scorers + (baseline_scorers(device, trunks) if baselines else [])


class DistanceCollector:
    """Accumulates each scorer's distances under named keys (e.g. ``"d0"``, ``"d1"``).

    A scorer that raises :class:`MetricUnavailable` is marked skipped with its reason and
    not called again; :class:`Skipped` entries start skipped.

    Example:
        >>> collector = DistanceCollector(baseline_scorers()[:1])
        >>> collector.add("d", torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
        >>> collector.get("PSNR", "d").shape
        (2,)
    """

    def __init__(self, scorers: Sequence[ScorerOrSkipped]) -> None:
        self.names = [s.name for s in scorers]
        self._scorers = [s for s in scorers if isinstance(s, Scorer)]
        self.skipped: dict[str, str] = {s.name: f"skipped: {s.reason}" for s in scorers if isinstance(s, Skipped)}
        self._values: dict[tuple[str, str], list[Tensor]] = {}
        self._added: dict[str, int] = {}

    def add(self, key: str, x: Tensor, y: Tensor) -> None:
        """Score one batch pair with every active scorer and append the distances under ``key``."""
        self._added[key] = self._added.get(key, 0) + 1
        for scorer in self._scorers:
            if scorer.name in self.skipped:
                continue
            try:
                distances = scorer.distance(x, y)
            except MetricUnavailable as err:
                logger.info("%s skipped: %s", scorer.name, err)
                self.skipped[scorer.name] = f"skipped: {err}"
                continue
            self._values.setdefault((scorer.name, key), []).append(distances)

    def gather(self) -> None:
        """Merge the distances of every torchrun rank, in one-process order, on every rank (no-op in one process).

        Each rank must have scored the units of :func:`codecloss._distributed.shard`, one :meth:`add`
        per unit and key. A scorer skipped on any rank is skipped (with the lowest such rank's reason).
        """
        from codecloss._distributed import gather_in_order, rank_and_world

        if rank_and_world()[1] == 1:
            return
        count = max(self._added.values(), default=0)
        units = [
            {k: v[j] for k, v in self._values.items() if k[0] not in self.skipped and j < len(v)} for j in range(count)
        ]
        skipped: dict[str, str] = {}
        for part in gather_in_order([self.skipped]):  # one unit per rank: rank order
            skipped = {**part, **skipped}
        merged = gather_in_order(units)
        self.skipped = skipped
        self._values = {}
        for unit in merged:
            for k, value in unit.items():
                if k[0] not in skipped:
                    self._values.setdefault(k, []).append(value)

    def get(self, name: str, key: str) -> "np.ndarray | None":
        """All distances of scorer ``name`` under ``key`` (float64), or ``None`` if it was skipped."""
        if name in self.skipped:
            return None
        parts = self._values.get((name, key), [])
        return torch.cat(parts).numpy() if parts else np.zeros(0)
