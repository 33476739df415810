"""CPIPS as a ``torchmetrics.Metric``: accumulate over batches, synchronise across DDP ranks.

Needs torchmetrics (``pip install ".[integrations]"`` in the codecloss clone). The metric keeps one score per
sample (list state, concatenated across ranks), so ``reduction="mean"`` over several ranks equals
the mean over every sample seen, as in one process.

Example:
    >>> import torch
    >>> from codecloss.integrations.torchmetrics import CPIPSMetric
    >>> metric = CPIPSMetric()  # embedded default backbone, images in [0, 1]
    >>> metric.update(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    >>> metric.compute().shape
    torch.Size([])
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from torch import Tensor

from codecloss import CPIPS, DEFAULT_BACKBONE
from codecloss._validate import check_values
from codecloss.integrations import NORMALIZE_OPTIONS, require
from codecloss.losses import REDUCTIONS, reduce

_torchmetrics = require("torchmetrics", __name__)
from torchmetrics.utilities import dim_zero_cat  # noqa: E402  (after the friendly import check)

__all__ = ["CPIPSMetric"]


class CPIPSMetric(_torchmetrics.Metric):
    """CPIPS (LPIPS on a codec encoder's taps) as a torchmetrics metric; lower means more similar.

    Args:
        backbone: backbone id (see :func:`codecloss.list_backbones`).
        weights: backbone weights, as for :class:`codecloss.CPIPS` (``"default"``, registry name, path, ``None``).
        heads: ``"uniform"`` (uncalibrated), a head file or a registry name.
        layers: tap names; ``None`` uses the heads' or the backbone's default taps.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (all per-sample scores) over every sample seen.
        normalize: ``True`` (default): images in [0, 1], codecloss's convention; ``False``: images in
            [-1, 1], like torchmetrics' LPIPS default. :meth:`update` rejects values outside the range.
        **kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

    Example:
        >>> metric = CPIPSMetric(normalize=False)  # doctest: +SKIP
        >>> metric(x * 2 - 1, y * 2 - 1)  # doctest: +SKIP
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    feature_network = "net"

    scores: list[Tensor]

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        weights: str | os.PathLike | None = "default",
        heads: str | os.PathLike = "uniform",
        layers: Sequence[str] | None = None,
        reduction: str = "mean",
        normalize: bool = True,
        **kwargs: Any,
    ) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction: got {reduction!r}, expected one of {list(REDUCTIONS)}")
        if not isinstance(normalize, bool):
            raise TypeError(
                f"normalize: expected a bool (True: images in [0, 1], False: in [-1, 1]), got {normalize!r}"
            )
        super().__init__(**kwargs)
        self.reduction = reduction
        self.normalize = normalize
        self.value_range = (0.0, 1.0) if normalize else (-1.0, 1.0)
        self.net = CPIPS(backbone, layers=layers, weights=weights, heads=heads,
                         input_range=self.value_range).requires_grad_(False).eval()
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, img1: Tensor, img2: Tensor) -> None:
        """Score a batch of pairs and keep the per-sample scores.

        Args:
            img1: images (N, 3, H, W) in [0, 1] (``normalize=True``) or [-1, 1].
            img2: images of the same shape and range.
        """
        if all(isinstance(t, Tensor) and t.is_floating_point() for t in (img1, img2)):  # else CPIPS says what is wrong
            check_values({"img1": img1, "img2": img2}, self.value_range, options=NORMALIZE_OPTIONS)
        self.scores.append(self.net(img1, img2))

    def compute(self) -> Tensor:
        """The reduced score over every sample seen (on every rank, when distributed)."""
        return reduce(dim_zero_cat(self.scores), self.reduction)
