"""The judges of the SR fine-tuning sweep: the study's metrics plus LPIPS-Alex and DISTS on the ImageNet trunks.

LPIPS-Alex (:func:`codecloss.reference.lpips`) is the standard perceptual SR judge, DISTS
(:func:`codecloss.reference.dists`) a second one; both run on the trunk files of ``trunks`` or
``CODECLOSS_TRUNKS`` and are skipped (their scores ``None``, the reason in :attr:`SRJudges.skipped`)
without them. No training loss of the sweep uses the AlexNet trunk (``lpips-alex`` is refused as a loss);
DISTS shares its VGG16 trunk with the ``vgg16-*`` and ``lpips-vgg`` losses, which the notes say.

Example:
    >>> judges = SRJudges(scale=4)  # doctest: +SKIP
    >>> judges(sr, hr)["lpips_alex"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import Tensor

from codecloss import CPIPS
from codecloss.tasks.sr_metrics import METRIC_NOTES, score_sr, shave

__all__ = ["JUDGE_NOTES", "SRJudges"]

logger = logging.getLogger(__name__)

#: What the reference judges mean; copied into the JSON output with :data:`~codecloss.tasks.sr_metrics.METRIC_NOTES`.
JUDGE_NOTES = {
    "lpips_alex": "LPIPS v0.1 on the ImageNet AlexNet trunk (codecloss.reference.lpips('alex')), SR quantised to "
                  "8 bits, border shaved; lower is better; null when skipped",
    "dists": "DISTS (codecloss.reference.dists) on the ImageNet VGG16 trunk, SR quantised to 8 bits, border shaved; "
             "lower is better; shares its trunk with the vgg16-* and lpips-vgg losses; null when skipped",
}

_TRUNK_OF = {"lpips_alex": "alexnet", "dists": "vgg16"}


class SRJudges:
    """Score one SR output against its HR image with every judge available.

    Args:
        scale: SR factor, the shaved border.
        trunks: folder of ``alexnet_features.pth`` / ``vgg16_features.pth`` (``None``: ``CODECLOSS_TRUNKS``).

    Attributes:
        skipped: judge name -> why it is skipped (empty when all run).
        notes: metric name -> what it means.
    """

    def __init__(self, scale: int, trunks: str | os.PathLike[str] | None = None) -> None:
        from codecloss import reference

        self.scale = scale
        self.cpips = CPIPS().requires_grad_(False).eval()
        self.models: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        for name, trunk in _TRUNK_OF.items():
            file = reference.trunk_file(trunk, trunks)
            if file is None:
                self.skipped[name] = f"no {trunk}_features.pth (pass --trunks DIR or set {reference.TRUNKS_ENV})"
                logger.info("%s judge skipped: %s", name, self.skipped[name])
                continue
            self.models[name] = reference.lpips("alex", file) if name == "lpips_alex" else reference.dists(file)
        self.notes = {**METRIC_NOTES, **JUDGE_NOTES}

    def __call__(self, sr: Tensor, hr: Tensor) -> dict[str, float | None]:
        """Every metric of :attr:`notes` for a (1, 3, H, W) SR output and its HR image (``None``: skipped)."""
        scores: dict[str, float | None] = dict(score_sr(sr, hr, self.scale, self.cpips))
        sr_s = shave(sr.clamp(0, 1).mul(255).round().div(255), self.scale)
        hr_s = shave(hr, self.scale)
        for name in JUDGE_NOTES:
            model = self.models.get(name)
            with torch.no_grad():
                scores[name] = None if model is None else float(model(sr_s, hr_s)[0])
        return scores
