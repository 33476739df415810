"""Perceptual fine-tuning sweep of the pretrained x4 network (ESRGAN's second stage), judged per eval set.

Every run starts from the same pretrained model file, trains ``steps`` steps on the same batches in the same
order (:class:`~codecloss.tasks.sr_net.CropSampler`, one seed) with ``pixel + w * feature``: the pixel term is
L1 (weight 1), or AESOP (:class:`~codecloss.tasks.sr_losses.AESOPLoss`) for ``aesop`` names; ``w`` is set at
the start so that the feature loss's input-gradient norm is ``ratio`` times L1's (on the first two training
batches, at the pretrained network's output), for each ratio of ``weight_ratios``. ``l1`` (continued
training, the control) and ``aesop`` have no feature term and run once. Runs are labelled ``loss@ratio``
(``l1``, ``aesop`` alone) and train in interleaved chunks, checkpointed in ``OUT/<label>/checkpoint.pt``
(exact resume); each writes its network as ``OUT/<label>/model.pth``. Then every run, the pretrained network
and bicubic are scored by :class:`~codecloss.tasks.sr_judges.SRJudges` on every eval folder.

Example:
    >>> config = FinetuneConfig(init="runs/sr/pretrain.pth", out="runs/sr/sweep", losses=["l1", "codec"])  # doctest: +SKIP
    >>> result = run_finetune(config)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss import DEFAULT_BACKBONE
from codecloss._data_paths import NATURAL_TRAIN_DIRS, NATURAL_VAL_DIR
from codecloss._dtype import resolve_task_dtype
from codecloss.tasks.sr import (
    _MEMORY_METHOD,
    SCALE,
    _calibrate,
    _evaluate,
    _restore,
    _train_interleaved,
    _Trainee,
    _training_summary,
    dataset_names,
)
from codecloss.tasks.sr_judges import SRJudges
from codecloss.tasks.sr_losses import AESOP, VGG16_TRUNK_LOSSES, AESOPLoss, build_feature_loss, parse_loss
from codecloss.tasks.sr_net import DEGRADATION, CropSampler, load_training_folders, upscale_bicubic
from codecloss.tasks.sr_pretrain import check_patch
from codecloss.tasks.sr_tradeoff import matched_operating_points
from codecloss.tasks.sr_upscaler import load_upscaler, save_upscaler

__all__ = ["DEFAULT_EVAL_DIRS", "DEFAULT_LOSSES", "DEFAULT_RATIOS", "FinetuneConfig", "run_finetune"]

logger = logging.getLogger(__name__)

#: The sweep's losses: the control, the codec family, its random control, the VGG16 anchors, LPIPS-VGG, AESOP.
DEFAULT_LOSSES = ("l1", "codec", "codec-l2n", "codec-small", "codec-random", "vgg16-relu2_2", "vgg16-conv5_3",
                  "lpips-vgg", "aesop", "aesop+codec")
#: Feature-loss input-gradient norm as a multiple of L1's.
DEFAULT_RATIOS = (0.1, 0.3, 1.0)
#: Set5, Set14, BSD100 (held out from training) and Kodak.
DEFAULT_EVAL_DIRS = ("../shared/data/sr/set5/HR", "../shared/data/sr/set14", NATURAL_VAL_DIR, "../shared/data/eval/kodak")


@dataclass
class FinetuneConfig:
    """Settings of the fine-tuning sweep (see ``codecloss sr-study --finetune FILE --help``).

    Args:
        init: pretrained upscaler model file (``RUN/pretrain.pth``).
        out: sweep folder.
        losses: loss names (:func:`~codecloss.tasks.sr_losses.parse_loss`).
        weight_ratios: feature-loss weights as ratios of its input-gradient norm to L1's, each > 0.
        steps: fine-tuning steps of every run.
        eval_dirs: folders of HR evaluation images.
        train_dirs: folders of training photos.
        batch: crops per step.
        patch: HR crop side, a multiple of 16 >= 64.
        lr: Adam learning rate (betas 0.9, 0.99), constant.
        seed: seed of the data order and random loss networks.
        vgg16_weights: ImageNet VGG16 trunk of the ``vgg16-*`` and ``lpips-vgg`` losses (``None``:
            ``$CODECLOSS_TRUNKS/vgg16_features.pth``, required when those losses run).
        trunks: folder of the judges' trunk files (``None``: ``CODECLOSS_TRUNKS``).
        codec_backbone: backbone of ``codec``, ``codec-l2n``, ``codec-random`` and AESOP.
        codec_weights: its weights (``"default"``, a registry name or a file).
        checkpoint_every: steps per interleaved chunk (and between checkpoints).
        save_images: write every SR output as PNG under ``out/<label>/images/<dataset>/``.
        dtype: compute dtype of the feature losses, one of :data:`~codecloss._dtype.TASK_DTYPES` (``"auto"``:
            bfloat16 where the device has fast bfloat16 matrix units); the network trains in float32.
        device: torch device of the training (the judges run on the CPU); not part of the resume check.
    """

    init: str
    out: str
    losses: Sequence[str] = DEFAULT_LOSSES
    weight_ratios: Sequence[float] = DEFAULT_RATIOS
    steps: int = 2000
    eval_dirs: Sequence[str] = DEFAULT_EVAL_DIRS
    train_dirs: Sequence[str] = NATURAL_TRAIN_DIRS
    batch: int = 16
    patch: int = 96
    lr: float = 1e-4
    seed: int = 0
    vgg16_weights: str | None = None
    trunks: str | None = None
    codec_backbone: str = DEFAULT_BACKBONE
    codec_weights: str = "default"
    checkpoint_every: int = 100
    save_images: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    _datasets: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        from codecloss._validate import check_device
        from codecloss.reference import TRUNKS_ENV, trunk_file

        check_device(self.device, "--device")
        self.dtype = str(resolve_task_dtype(self.dtype, self.device)).removeprefix("torch.")
        self.losses, self.weight_ratios = list(self.losses), [float(r) for r in self.weight_ratios]
        self.train_dirs, self.eval_dirs = [str(d) for d in self.train_dirs], [str(d) for d in self.eval_dirs]
        if not self.losses or len(set(self.losses)) != len(self.losses):
            raise ValueError(f"--losses: expected distinct loss names, got {self.losses}")
        parsed = [parse_loss(name) for name in self.losses]
        if not self.weight_ratios or not all(r > 0 for r in self.weight_ratios) or len(set(self.weight_ratios)) != len(self.weight_ratios):
            raise ValueError(f"--weights-ratio: expected distinct numbers > 0, got {self.weight_ratios}")
        for argument, value in (("--steps", self.steps), ("--batch", self.batch), ("--checkpoint-every", self.checkpoint_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{argument}: expected an integer >= 1, got {value!r}")
        check_patch(self.patch)
        if not self.lr > 0:
            raise ValueError(f"--lr: expected a number > 0, got {self.lr!r}")
        load_upscaler(self.init, argument="--finetune")
        for folder in self.train_dirs:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"--train: no such folder {folder!r}")
        self._datasets = dataset_names(self.eval_dirs)
        if any(feature in VGG16_TRUNK_LOSSES for _, feature in parsed):
            found = self.vgg16_weights or trunk_file("vgg16", self.trunks)
            if found is None or not Path(found).is_file():
                raise FileNotFoundError(f"--vgg16-weights: the VGG16 losses need the ImageNet trunk file; got "
                                        f"{self.vgg16_weights!r}; pass --vgg16-weights FILE or set {TRUNKS_ENV}")
            self.vgg16_weights = str(found)

    @property
    def datasets(self) -> dict[str, Path]:
        """Evaluation folders by dataset name (``set5/HR`` is ``set5``, ``bsds500/val`` is ``bsd100``)."""
        return dict(self._datasets)

    def runs(self) -> list[tuple[str, str, float | None]]:
        """``(label, loss, ratio)`` of every run: one per ratio for losses with a feature term, else one."""
        runs: list[tuple[str, str, float | None]] = []
        for name in self.losses:
            ratios: list[float | None] = list(self.weight_ratios) if parse_loss(name)[1] else [None]
            runs += [(name if r is None else f"{name}@{r:g}", name, r) for r in ratios]
        return runs

    def fixed(self) -> dict[str, Any]:
        """The settings a resumed run must share with its checkpoint."""
        keys = ("init", "train_dirs", "batch", "patch", "lr", "seed", "vgg16_weights", "codec_backbone", "codec_weights",
                "dtype")
        return {k: getattr(self, k) for k in keys} | {"scale": SCALE}


def _load_run(config: FinetuneConfig, label: str, loss: str, ratio: float | None, sampler: CropSampler,
              terms: dict[str, tuple[nn.Module | None, dict[str, Any]]]) -> _Trainee:
    """A run's trainee: the pretrained network and its loss terms (built once per name, kept in ``terms``),
    calibrated, or resumed from its checkpoint."""
    pixel, feature = parse_loss(loss)
    for name in (feature, AESOP if pixel == AESOP else None):
        if name is not None and name not in terms:
            terms[name] = ((AESOPLoss(config.codec_backbone, config.codec_weights), {}) if name == AESOP else
                           build_feature_loss(name, config.seed, None, config.codec_backbone, config.codec_weights,
                                              config.vgg16_weights))
            terms[name][0].to(config.device)  # type: ignore[union-attr]
    feature_loss, info = terms[feature] if feature else (None, {"feature_loss": None})
    info = {"loss": loss, "pixel_loss": "AESOP: L1 of g_s(g_a(.)) reconstructions, no quantisation" if pixel == AESOP
            else "L1", "weight_ratio": ratio, **info}
    net = load_upscaler(config.init, config.device, argument="--finetune").train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.99))
    pixel_loss: Callable[[Tensor, Tensor], Tensor] = terms[AESOP][0] if pixel == AESOP else F.l1_loss  # type: ignore[assignment]
    trainee = _Trainee(label, net, optimizer, feature_loss, info, pixel_loss=pixel_loss, dtype=getattr(torch, config.dtype))
    path = Path(config.out) / label / "checkpoint.pt"
    if not path.is_file():
        _calibrate(trainee, sampler, ratio or 1.0)
        return trainee
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("settings") != _run_settings(config, loss, ratio):
        raise ValueError(f"--out: {str(path)!r} was made with other settings ({state.get('settings')}); "
                         f"expected {_run_settings(config, loss, ratio)}; use another --out")
    if state["step"] > config.steps:
        raise ValueError(f"--steps: {str(path)!r} already has {state['step']} steps, more than {config.steps}")
    _restore(trainee, state)
    return trainee


def _run_settings(config: FinetuneConfig, loss: str, ratio: float | None) -> dict[str, Any]:
    """The settings run ``loss`` at ``ratio`` must resume with; the VGG16 trunk only where the loss reads it, so a
    sweep that later adds a VGG16 loss still resumes its other runs."""
    settings = config.fixed() | {"loss": loss, "ratio": ratio}
    if parse_loss(loss)[1] not in VGG16_TRUNK_LOSSES:
        del settings["vgg16_weights"]
    return settings


def run_finetune(config: FinetuneConfig, progress: bool | None = None) -> dict[str, Any]:
    """Fine-tune every (loss, ratio) run of ``config`` to ``config.steps`` (resuming), then judge all of them.

    Args:
        config: the sweep settings.
        progress: show a progress bar; ``None``: only when stderr is a terminal.

    Returns:
        A JSON-ready dict: ``settings``, ``metrics`` (what each score means), ``judges_skipped`` (judge -> why),
        ``runs`` (per label: loss, pixel term, ratio, feature weight, calibration, step time and peak memory),
        ``eval`` (per dataset, per method including ``bicubic`` and ``pretrained``: mean and per-image scores)
        and ``matched`` (:func:`~codecloss.tasks.sr_tradeoff.matched_operating_points`).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    images = load_training_folders(config.train_dirs, config.patch)
    logger.info("decoded %d training images in %.1f s", len(images), time.perf_counter() - t0)
    sampler = CropSampler(images, config.patch, config.batch, SCALE, config.seed)
    terms: dict[str, tuple[nn.Module | None, dict[str, Any]]] = {}
    trainees = [_load_run(config, label, loss, ratio, sampler, terms) for label, loss, ratio in config.runs()]
    settings_of = {label: _run_settings(config, loss, ratio) for label, loss, ratio in config.runs()}
    _train_interleaved(trainees, sampler, config.steps, config.checkpoint_every, out, lambda t: settings_of[t.name], progress)
    judges = SRJudges(SCALE, config.trunks)
    key_extra = {"judges_skipped": sorted(judges.skipped)}
    methods: list[tuple[str, Callable[[Tensor], Tensor], int]] = [
        ("bicubic", lambda lr: upscale_bicubic(lr, SCALE), 0),
        ("pretrained", load_upscaler(config.init, argument="--finetune"), 0),
    ]
    device = torch.device(config.device)
    for trainee in trainees:
        trainee.net.eval()
        save_upscaler(trainee.net, out / trainee.name / "model.pth",
                      {"loss": trainee.info["loss"], "weight_ratio": trainee.info["weight_ratio"], "steps": trainee.step,
                       "init": config.init})
        methods.append((trainee.name, lambda lr, net=trainee.net: net(lr.to(device)).cpu(), trainee.step))
    evaluation: dict[str, dict[str, Any]] = {}
    for name, upscale, step in methods:
        scores = _evaluate(name, upscale, out, config.datasets, step, judges, config.save_images, key_extra)
        for dataset, values in scores.items():
            evaluation.setdefault(dataset, {})[name] = values
        logger.info("evaluated %s", name)
    runs = _training_summary(trainees)
    settings = {k: v for k, v in dataclasses.asdict(config).items() if not k.startswith("_")}
    settings |= {
        "scale": SCALE,
        "network": load_upscaler(config.init, argument="--finetune").config(),
        "optimizer": "Adam(betas=(0.9, 0.99)), constant learning rate",
        "degradation": DEGRADATION,
        "datasets": {k: str(v) for k, v in config.datasets.items()},
        "training_images": len(images),
        "loss_rule": "pixel + w * feature; pixel = L1 (weight 1) or AESOP (weight 1); w = ratio x |grad L1| / "
                     "|grad feature| on the first 2 training batches at the pretrained network's output",
        "memory_method": _MEMORY_METHOD,
        "time_method": "wall time of forward, backward and optimiser step, median over the timed steps, runs trained "
                       "in interleaved chunks in one process",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    result = {"settings": settings, "metrics": judges.notes, "judges_skipped": judges.skipped, "runs": runs,
              "eval": evaluation}
    result["matched"] = matched_operating_points(result)
    return result
