"""PSNR-oriented pretraining of the x4 network (L1) until validation PSNR-Y plateaus (ESRGAN's first stage).

The network trains with L1 on crops of the training folders (:class:`~codecloss.tasks.sr_net.CropSampler`:
batch ``k`` depends only on the seed and ``k``) and is validated every ``val_every`` steps on held-out HR
images (BSD100 by default): mean PSNR-Y, border shaved. Training stops at the plateau, when the best of the
last ``patience`` validations is less than ``min_gain`` dB above the best before them, or at ``steps``.
``OUT/pretrain_state.pt`` (atomic, every validation) holds the network, optimiser, torch RNG state, step and
validation history, so an interrupted run resumes exactly; ``OUT/pretrain.pth`` is the best-validated
network as an upscaler model file (:func:`~codecloss.tasks.sr_upscaler.load_upscaler`).

Example:
    >>> result = run_pretrain(PretrainConfig(out="runs/sr"))  # doctest: +SKIP
    >>> net = load_upscaler("runs/sr/pretrain.pth")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from codecloss._data_paths import NATURAL_TRAIN_DIRS, NATURAL_VAL_DIR
from codecloss._io import atomic_torch_save
from codecloss._progress import progress as progress_bar
from codecloss.evaluate.images import list_images, read_image
from codecloss.tasks.sr import SCALE, _restore, _time_summary, _train_chunk, _Trainee
from codecloss.tasks.sr_metrics import psnr_y
from codecloss.tasks.sr_net import DEGRADATION, CropSampler, SRNet, downscale, load_training_folders, mod_crop
from codecloss.tasks.sr_upscaler import save_upscaler

__all__ = ["PRETRAIN_FORMAT", "PretrainConfig", "plateaued", "run_pretrain", "validation_psnr"]

logger = logging.getLogger(__name__)

#: ``"format"`` of ``OUT/pretrain_state.pt``.
PRETRAIN_FORMAT = "codecloss-sr-pretrain"


@dataclass
class PretrainConfig:
    """Settings of the L1 pretraining (see ``codecloss sr-study --pretrain --help``).

    Args:
        out: run folder (``pretrain_state.pt``, ``pretrain.pth``, ``pretrain_log.jsonl``).
        train_dirs: folders of training photos (searched recursively).
        val_dir: held-out HR validation images (BSD100).
        steps: the most training steps.
        batch: crops per step.
        patch: HR crop side, a multiple of 16 >= 64.
        channels: network width (EDSR-baseline: 64).
        blocks: residual blocks (EDSR-baseline: 16).
        lr: Adam learning rate (betas 0.9, 0.99), constant.
        seed: seed of the network init and the data order.
        val_every: steps between validations (and checkpoints).
        patience: K of the plateau rule: validations without a gain of ``min_gain``.
        min_gain: dB a validation must gain over the best before the last ``patience`` ones.
        device: torch device of the training (``"cpu"``, ``"cuda"``, ...); not part of the resume check.
    """

    out: str
    train_dirs: Sequence[str] = NATURAL_TRAIN_DIRS
    val_dir: str = NATURAL_VAL_DIR
    steps: int = 10_000  # about 0.45-0.65 s per step on one CPU thread: <= 2 h with validations
    batch: int = 16
    patch: int = 96
    channels: int = 32
    blocks: int = 8
    lr: float = 5e-4
    seed: int = 0
    val_every: int = 500
    patience: int = 5
    min_gain: float = 0.02
    device: str = "cpu"

    def __post_init__(self) -> None:
        from codecloss._validate import check_device

        check_device(self.device, "--device")
        self.train_dirs = [str(d) for d in self.train_dirs]
        for argument, value, low in (("--steps", self.steps, 1), ("--batch", self.batch, 1), ("--channels", self.channels, 1),
                                     ("--blocks", self.blocks, 0), ("--val-every", self.val_every, 1),
                                     ("--patience", self.patience, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{argument}: expected an integer >= {low}, got {value!r}")
        check_patch(self.patch)
        if not self.lr > 0:
            raise ValueError(f"--lr: expected a number > 0, got {self.lr!r}")
        if not self.min_gain >= 0:
            raise ValueError(f"--min-gain: expected a number >= 0, got {self.min_gain!r}")
        for folder in self.train_dirs:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"--train: no such folder {folder!r}")
        if not Path(self.val_dir).is_dir() or not list_images(self.val_dir):
            raise FileNotFoundError(f"--val: no such folder, or no images in {self.val_dir!r}")

    def fixed(self) -> dict[str, Any]:
        """The settings a resumed run must share with its checkpoint (``steps`` may grow)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("out", "steps", "device")} | {"scale": SCALE}


def check_patch(patch: object) -> int:
    """``--patch``: a multiple of 16 (the codec stride) >= 64, or a one-line ``ValueError``."""
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 64 or patch % 16:
        raise ValueError(f"--patch: expected a multiple of 16 >= 64 (codec and VGG taps need it), got {patch!r}")
    return patch


def load_validation(folder: str) -> list[torch.Tensor]:
    """HR validation images, cropped to multiples of the scale, as (1, 3, H, W) uint8 tensors (sorted by name)."""
    return [(mod_crop(read_image(p), SCALE) * 255).round().to(torch.uint8).unsqueeze(0) for p in list_images(folder).values()]


def validation_psnr(net: SRNet, images: Sequence[torch.Tensor]) -> float:
    """Mean PSNR-Y (border of the scale shaved, SR quantised to 8 bits) of ``net`` on uint8 HR ``images``."""
    net.eval()
    values = []
    device = next(net.parameters()).device
    with torch.no_grad():
        for image in images:
            hr = image.to(device).float() / 255
            sr = net(downscale(hr, SCALE)).clamp(0, 1).mul(255).round().div(255)
            values.append(float(psnr_y(sr, hr, SCALE)[0]))
    net.train()
    return statistics.fmean(values)


def plateaued(history: Sequence[float], patience: int, min_gain: float) -> bool:
    """Whether the best of the last ``patience`` validations gains less than ``min_gain`` over the best before.

    Example:
        >>> plateaued([20.0, 21.0, 21.01, 21.015], patience=2, min_gain=0.02)
        True
    """
    if len(history) <= patience:
        return False
    return max(history[-patience:]) < max(history[:-patience]) + min_gain


def run_pretrain(config: PretrainConfig, progress: bool | None = None) -> dict[str, Any]:
    """Train (or resume) the L1 network until the validation plateau or ``config.steps``.

    Args:
        config: the settings.
        progress: show a progress bar; ``None``: only when stderr is a terminal.

    Returns:
        A JSON-ready dict: ``settings``, ``network``, ``history`` (step, PSNR-Y per validation), ``best``,
        ``stopped`` (``"plateau"`` or ``"steps"``), ``model`` (the model file), ``step_time`` and
        ``peak_memory_mib``.
    """
    out = Path(config.out)
    state_path, model_path = out / "pretrain_state.pt", out / "pretrain.pth"
    torch.manual_seed(config.seed)
    net = SRNet(config.channels, config.blocks, SCALE).to(config.device)
    trainee = _Trainee("l1", net, torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.99)), None, {})
    history: list[dict[str, float]] = []
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("format") != PRETRAIN_FORMAT or state.get("settings") != config.fixed():
            raise ValueError(f"--out: {str(state_path)!r} was made with other settings ({state.get('settings')}); "
                             f"expected {config.fixed()}; use another --out")
        _restore(trainee, state)
        history = list(state["history"])
    psnrs = [h["psnr_y"] for h in history]
    stopped = "plateau" if plateaued(psnrs, config.patience, config.min_gain) else None
    if stopped is None and trainee.step < config.steps:
        t0 = time.perf_counter()
        sampler = CropSampler(load_training_folders(config.train_dirs, config.patch), config.patch, config.batch, SCALE,
                              config.seed)
        val = load_validation(config.val_dir)
        logger.info("decoded the training and %d validation images in %.1f s", len(val), time.perf_counter() - t0)
        with progress_bar(total=config.steps, initial=trainee.step, enabled=progress, desc="sr pretrain", unit="step",
                          leave=False) as bar:
            while stopped is None and trainee.step < config.steps:
                until = min(config.steps, (trainee.step // config.val_every + 1) * config.val_every)
                _train_chunk(trainee, sampler, until, out / "pretrain_log.jsonl", bar.update)
                psnr = validation_psnr(net, val)
                if not psnrs or psnr > max(psnrs):
                    save_upscaler(net, model_path, {"loss": "l1", "step": trainee.step, "val_psnr_y": psnr,
                                                    "val_dir": config.val_dir, "degradation": DEGRADATION})
                psnrs.append(psnr)
                history.append({"step": trainee.step, "psnr_y": psnr})
                logger.info("pretrain: step %d, validation PSNR-Y %.3f dB (best %.3f)", trainee.step, psnr, max(psnrs))
                stopped = "plateau" if plateaued(psnrs, config.patience, config.min_gain) else None
                atomic_torch_save(trainee.state(config.fixed()) | {"format": PRETRAIN_FORMAT, "history": history},
                                  state_path)
    best = max(history, key=lambda h: h["psnr_y"]) if history else None
    return {
        "settings": dataclasses.asdict(config) | {"scale": SCALE, "degradation": DEGRADATION,
                                                  "plateau_rule": f"stop when the best of the last {config.patience} "
                                                  f"validations gains < {config.min_gain} dB over the best before"},
        "network": {"channels": config.channels, "blocks": config.blocks, "parameters": net.num_parameters()},
        "history": history, "best": best, "steps": trainee.step, "stopped": stopped or "steps",
        "model": str(model_path), "step_time": _time_summary(trainee.times), "peak_memory_mib": trainee.peak_memory_mib,
    }
