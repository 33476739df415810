"""The definition of a codec training run: :class:`TrainConfig` and the choices it accepts."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

from codecloss._dtype import TASK_DTYPES

__all__ = ["ARCHS", "DISTORTIONS", "MS_SSIM_MIN_SIDE", "SEMANTIC_TAPS", "ZOO_ARCHITECTURE", "TrainConfig"]

#: Supported architectures -> the multiple that crop sizes must respect.
ARCHS: dict[str, int] = {"factorized": 16, "hyperprior": 64, "mean-scale": 64}
#: Supported architectures -> the CompressAI zoo architecture (model class) they build.
ZOO_ARCHITECTURE: dict[str, str] = {
    "factorized": "bmshj2018-factorized",
    "hyperprior": "bmshj2018-hyperprior",
    "mean-scale": "mbt2018-mean",
}
#: Distortion objectives: the MSE term, the MS-SSIM term, or a weighted mix of both.
DISTORTIONS = ("mse", "ms-ssim", "mix")
#: Smallest crop side that 5-scale MS-SSIM with an 11x11 window accepts ((11 - 1) * 2**4 + 1).
MS_SSIM_MIN_SIDE = 161
#: Teachers of the semantic term -> their default codec tap -> teacher layer pairs (equal strides, 4 and 8).
SEMANTIC_TAPS: dict[str, dict[str, str]] = {
    "vgg16": {"gdn2": "relu3_3", "gdn3": "relu4_3"},
    "alexnet": {"gdn2": "relu1", "gdn3": "relu2"},
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    Args:
        data_dirs: folders of training images (searched non-recursively).
        out_dir: where ``checkpoint.pt`` and ``log.jsonl`` go.
        arch: ``"factorized"`` (``FactorizedPrior``), ``"hyperprior"`` (``ScaleHyperprior``) or
            ``"mean-scale"`` (``MeanScaleHyperprior``).
        N, M: channel widths of the CompressAI model.
        lmbda: rate-distortion trade-off of the MSE term; with ``distortion="mse"`` the loss is
            ``lmbda * 255**2 * MSE + bpp``.
        distortion: ``"mse"``; ``"ms-ssim"``: ``ms_ssim_lmbda * (1 - MS-SSIM) + bpp`` (CompressAI's
            objective, ``pytorch_msssim.ms_ssim``, 5 scales); ``"mix"``:
            ``(1 - mix_weight) * lmbda * 255**2 * MSE + mix_weight * ms_ssim_lmbda * (1 - MS-SSIM) + bpp``.
        ms_ssim_lmbda: trade-off of the MS-SSIM term (8.73 is CompressAI's MS-SSIM lambda for quality 3).
        mix_weight: weight of the MS-SSIM term in ``"mix"`` (in [0, 1]).
        init: initial weights of a fresh run: a backbone id (its default weights, e.g.
            ``"codecloss-small-mse"``) or a weights file (export, CompressAI or codecloss checkpoint).
            Every parameter whose name and shape match is copied, the rest keeps its random init
            (so a hyperprior model can start from a factorized model's ``g_a``/``g_s``); ignored
            when resuming. None: random init.
        init_widen: also copy a *narrower* ``init`` (smaller ``N``/``M``) into the leading channels,
            function-preserving (see :func:`codecloss.train.model.initialize_from`).
        batch_size, crop: random crops per step and their side (multiple of 16, or 64 for the
            hyperprior models; at least 161 for objectives with MS-SSIM). Under ``torchrun``
            ``batch_size`` is the *global* batch: each of the W ranks draws ``batch_size / W``
            crops (it must divide), and DDP averages the gradients, so the effective batch, the
            loss scale and the learning rates mean the same as in one process.
        lr, aux_lr: Adam learning rates of the main and the auxiliary (quantiles) optimiser.
        steps: total number of optimisation steps (may be raised when resuming).
        lr_drop_step: from this step on the main lr is ``lr * 0.1`` (None: never).
        clip: max gradient norm of the main parameters (0 or None: no clipping).
        seed: seeds model init, crop sampling and quantisation noise.
        val_dir: folder of validation images (None: no validation).
        val_every, val_images, val_crop: validation period, number of images, centre-crop side.
        ckpt_every, log_every: checkpoint and log periods in steps.
        num_threads: ``torch.set_num_threads`` for the run (None: leave as is; per rank under torchrun).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:K"``; under torchrun each rank uses ``cuda:LOCAL_RANK``.
        cls_dir: ImageFolder-style labelled folder (class = sub-folder name) for the joint
            classification head on ``g_a`` features (None: no head).
        cls_weight: weight of the cross-entropy term.
        progress: tqdm bar on stderr: ``True`` always, ``False`` never, ``None`` only on a terminal.
        semantic_teacher: ImageNet trunk the semantic term distils (a key of :data:`SEMANTIC_TAPS`).
        teacher_weights: the teacher's weights file (None: ``{teacher}_features.pth`` in the folder
            ``CODECLOSS_TRUNKS`` names, see :func:`codecloss.reference.trunk_file`).
        semantic_taps: codec tap -> teacher layer pairs of equal stride, e.g. ``{"gdn2": "relu3_3"}``
            (None: the teacher's defaults in :data:`SEMANTIC_TAPS`).
        semantic_weight: weight beta of the semantic term S, ``loss = R + lmbda * D + beta * S`` (see
            :mod:`codecloss.train.semantic`); 0 turns it off (no teacher, no heads).
        teacher_dtype: compute dtype of the frozen teacher, one of :data:`~codecloss._dtype.TASK_DTYPES`
            (``"auto"``: bfloat16 where the device runs it fast); the codec itself always trains in float32.

    Example:
        >>> TrainConfig(data_dirs=["a"], out_dir="runs/x", crop=64).arch
        'factorized'
    """

    data_dirs: list[str]
    out_dir: str
    arch: str = "factorized"
    N: int = 64
    M: int = 96
    lmbda: float = 0.0067
    distortion: str = "mse"
    ms_ssim_lmbda: float = 8.73
    mix_weight: float = 0.5
    init: str | None = None
    init_widen: bool = False
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-3
    aux_lr: float = 1e-3
    steps: int = 10_000
    lr_drop_step: int | None = None
    clip: float | None = 1.0
    seed: int = 0
    val_dir: str | None = "../shared/data/natural/bsds500/val"
    val_every: int = 1000
    val_images: int = 8
    val_crop: int = 256
    ckpt_every: int = 500
    log_every: int = 50
    num_threads: int | None = None
    device: str = "cpu"
    cls_dir: str | None = None
    cls_weight: float = 0.1
    progress: bool | None = None
    semantic_teacher: str = "vgg16"
    teacher_weights: str | None = None
    semantic_taps: dict[str, str] | None = None
    semantic_weight: float = 0.0
    teacher_dtype: str = "float32"

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field."""
        if isinstance(self.data_dirs, (str, os.PathLike)) or not isinstance(self.data_dirs, Sequence):
            raise TypeError(f"data_dirs must be a list of folders, got {self.data_dirs!r}")
        if not self.data_dirs:
            raise ValueError("data_dirs must name at least one folder, got []")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {self.arch!r}")
        multiple = ARCHS[self.arch]
        for name in ("crop", "val_crop"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0 or value % multiple:
                raise ValueError(
                    f"{name} must be a positive multiple of {multiple} for arch={self.arch!r}, got {value!r}"
                )
        if self.distortion not in DISTORTIONS:
            raise ValueError(f"distortion must be one of {list(DISTORTIONS)}, got {self.distortion!r}")
        if self.uses_ms_ssim and self.crop < MS_SSIM_MIN_SIDE:
            raise ValueError(
                f"crop must be >= {MS_SSIM_MIN_SIDE} for distortion={self.distortion!r} "
                f"(5-scale MS-SSIM, 11x11 window), got {self.crop!r}"
            )
        positive = ("N", "M", "batch_size", "steps", "val_every", "val_images", "ckpt_every", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lmbda", "ms_ssim_lmbda", "lr", "aux_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if self.lr_drop_step is not None and (not isinstance(self.lr_drop_step, int) or self.lr_drop_step < 0):
            raise ValueError(f"lr_drop_step must be None or an integer >= 0, got {self.lr_drop_step!r}")
        if self.clip is not None and not (self.clip >= 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip must be None or a finite number >= 0, got {self.clip!r}")
        if not (isinstance(self.device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", self.device)):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:K', got {self.device!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads <= 0):
            raise ValueError(f"num_threads must be None or a positive integer, got {self.num_threads!r}")
        if not (self.cls_weight >= 0 and math.isfinite(self.cls_weight)):
            raise ValueError(f"cls_weight must be a finite number >= 0, got {self.cls_weight!r}")
        if not (isinstance(self.mix_weight, (int, float)) and 0 <= self.mix_weight <= 1):
            raise ValueError(f"mix_weight must be a number in [0, 1], got {self.mix_weight!r}")
        if self.init is not None and not (isinstance(self.init, str) and self.init):
            raise ValueError(f"init must be None, a backbone id or a weights file path, got {self.init!r}")
        if self.semantic_teacher not in SEMANTIC_TAPS:
            raise ValueError(f"semantic_teacher must be one of {list(SEMANTIC_TAPS)}, got {self.semantic_teacher!r}")
        if self.teacher_weights is not None and not (isinstance(self.teacher_weights, str) and self.teacher_weights):
            raise ValueError(f"teacher_weights must be None or a file path, got {self.teacher_weights!r}")
        taps = self.semantic_taps
        if taps is not None and not (
            isinstance(taps, dict) and taps and all(isinstance(k, str) and isinstance(v, str) for k, v in taps.items())
        ):
            raise ValueError(f"semantic_taps must be None or a non-empty dict codec tap -> teacher layer, got {taps!r}")
        weight = self.semantic_weight
        if not (isinstance(weight, (int, float)) and weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"semantic_weight must be a finite number >= 0, got {weight!r}")
        if self.teacher_dtype not in TASK_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {list(TASK_DTYPES)}, got {self.teacher_dtype!r}")

    @property
    def uses_ms_ssim(self) -> bool:
        """Whether the objective has an MS-SSIM term."""
        return self.distortion in ("ms-ssim", "mix")

    @property
    def uses_semantic(self) -> bool:
        """Whether the objective has a semantic term (``semantic_weight > 0``)."""
        return self.semantic_weight > 0

    @property
    def semantic_pairs(self) -> dict[str, str]:
        """Codec tap -> teacher layer pairs of the semantic term: ``semantic_taps`` or the teacher's defaults."""
        return dict(self.semantic_taps if self.semantic_taps is not None else SEMANTIC_TAPS[self.semantic_teacher])

    def lr_at(self, step: int) -> float:
        """Main learning rate used for optimisation step ``step`` (0-based)."""
        if self.lr_drop_step is not None and step >= self.lr_drop_step:
            return self.lr * 0.1
        return self.lr

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON- and ``weights_only``-safe)."""
        out = dataclasses.asdict(self)
        out["data_dirs"] = [str(d) for d in self.data_dirs]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; expected a subset of {sorted(names)}")
        return cls(**data)
