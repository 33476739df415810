"""The x4 super-resolution study: one network trained with each loss on the same data, then scored.

Every loss trains the same :class:`~codecloss.tasks.sr_net.SRNet` from the same initial weights on the
same batches in the same order (batch ``k`` depends only on the seed and ``k``). Losses train in
interleaved chunks of ``checkpoint_every`` steps, so step times are measured under the same machine load
and an interrupted study resumes with every loss at a checkpoint. Each loss's checkpoint
(``OUT/<loss>/checkpoint.pt``, written atomically) holds the model, optimiser, torch RNG state, step and
the measurements so far.

Example:
    >>> config = StudyConfig(losses=["l1", "codec"], steps=500, eval_dirs=["set5/HR"], out="runs/sr")  # doctest: +SKIP
    >>> result = run_study(config)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss import CPIPS, DEFAULT_BACKBONE
from codecloss._dtype import compute_context
from codecloss._io import append_jsonl, atomic_torch_save
from codecloss._progress import progress as progress_bar
from codecloss.bench.measure import peak_memory_mb
from codecloss.evaluate.images import list_images, read_image
from codecloss.tasks.sr_losses import LOSS_NAMES, build_feature_loss, gradient_profile
from codecloss.tasks.sr_metrics import METRIC_NOTES, score_sr
from codecloss.tasks.sr_net import DEGRADATION, CropSampler, SRNet, downscale, load_training_images, mod_crop, upscale_bicubic

__all__ = ["CHECKPOINT_FORMAT", "StudyConfig", "run_study"]

logger = logging.getLogger(__name__)

#: ``"format"`` of a study checkpoint.
CHECKPOINT_FORMAT = "codecloss-sr-study"
SCALE = 4
_CALIBRATION_BATCHES = 2
_DATASET_ALIASES = {("bsds500", "val"): "bsd100"}  # (parent, folder) -> dataset name
_MEMORY_METHOD = ("RSS high-water-mark increase over one training step (gc + malloc_trim, VmHWM reset through "
                  "/proc/self/clear_refs; codecloss.bench.measure.peak_memory_mb), MiB")


@dataclass
class StudyConfig:
    """Settings of an SR study (see ``codecloss sr-study --help``).

    Args:
        losses: loss names (keys of :data:`codecloss.tasks.sr_losses.LOSS_NAMES`).
        steps: training steps of every loss.
        eval_dirs: folders of HR evaluation images (LR made with :func:`~codecloss.tasks.sr_net.downscale`).
        out: run folder (checkpoints, logs, evaluation caches, saved images).
        train_dir: folder of training photos (searched recursively).
        batch: crops per step.
        patch: HR crop side.
        channels: network width.
        blocks: residual blocks.
        lr: Adam learning rate (betas 0.9, 0.99, as BasicSR).
        seed: seed of the network init, the data order and random feature networks.
        balance: feature-loss weight = ``balance`` x (L1 gradient norm / feature-loss gradient norm) at init.
        vgg_weights: torchvision VGG19 ImageNet state dict for ``vgg19`` (``None``: random init).
        vgg16_weights: torchvision VGG16 ImageNet state dict for ``vgg16`` (``None``: random init), e.g.
            ``$CODECLOSS_TRUNKS/vgg16_features.pth``.
        codec_backbone: backbone id of the ``codec`` and ``codec-random`` losses.
        codec_weights: weights of the ``codec`` loss: ``"default"``, a registry name or a file.
        checkpoint_every: steps per interleaved chunk (and between checkpoints).
        save_images: write every SR output as PNG under ``out/<loss>/images/<dataset>/``.
    """

    losses: Sequence[str]
    steps: int
    eval_dirs: Sequence[str]
    out: str
    train_dir: str = "../shared/data/natural"
    batch: int = 8
    patch: int = 96
    channels: int = 32
    blocks: int = 6
    lr: float = 5e-4
    seed: int = 0
    balance: float = 1.0
    vgg_weights: str | None = None
    vgg16_weights: str | None = None
    codec_backbone: str = DEFAULT_BACKBONE
    codec_weights: str = "default"
    checkpoint_every: int = 25
    save_images: bool = False
    _names: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.losses = list(self.losses)
        if not self.losses:
            raise ValueError("--losses: expected at least one loss")
        for name in self.losses:
            if name not in LOSS_NAMES:
                raise ValueError(f"--losses: unknown loss {name!r}; expected some of {list(LOSS_NAMES)}")
        if len(set(self.losses)) != len(self.losses):
            raise ValueError(f"--losses: each loss at most once, got {self.losses}")
        for argument, value, low in (("--steps", self.steps, 1), ("--batch", self.batch, 1), ("--channels", self.channels, 1),
                                     ("--blocks", self.blocks, 0), ("--checkpoint-every", self.checkpoint_every, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{argument}: expected an integer >= {low}, got {value!r}")
        if not isinstance(self.patch, int) or self.patch < 64 or self.patch % SCALE:
            raise ValueError(f"--patch: expected a multiple of {SCALE} >= 64 (VGG19 conv5_4 and codec y need it), got {self.patch!r}")
        if not self.lr > 0 or not self.balance > 0:
            raise ValueError(f"--lr, --balance: expected numbers > 0, got {self.lr!r}, {self.balance!r}")
        self._names.update(dataset_names(self.eval_dirs))
        if not Path(self.train_dir).is_dir():
            raise FileNotFoundError(f"--train: no such folder {self.train_dir!r}")
        for argument, file in (("--vgg-weights", self.vgg_weights), ("--vgg16-weights", self.vgg16_weights)):
            if file is not None and not Path(file).is_file():
                raise FileNotFoundError(f"{argument}: no such file {str(file)!r}")

    @property
    def datasets(self) -> dict[str, Path]:
        """Evaluation folders by dataset name (``set5/HR`` is ``set5``)."""
        return dict(self._names)

    def fixed(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoints it continues."""
        keys = ("train_dir", "batch", "patch", "channels", "blocks", "lr", "seed", "balance", "vgg_weights",
                "codec_backbone", "codec_weights")
        extra = {"vgg16_weights": self.vgg16_weights} if self.vgg16_weights else {}  # older runs lack the key
        return {k: getattr(self, k) for k in keys} | extra | {"scale": SCALE}


def dataset_names(folders: Sequence[str | os.PathLike[str]], argument: str = "--eval") -> dict[str, Path]:
    """Evaluation folders by dataset name (``set5/HR`` is ``set5``, ``bsds500/val`` is ``bsd100``; repeated names
    get ``_`` appended).

    Raises:
        ValueError, FileNotFoundError: no folder, a missing folder or one without images (naming ``argument``).
    """
    if not folders:
        raise ValueError(f"{argument}: expected at least one folder")
    names: dict[str, Path] = {}
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise FileNotFoundError(f"{argument}: no such folder {str(folder)!r}")
        if not list_images(path):
            raise FileNotFoundError(f"{argument}: no image files in {str(folder)!r}")
        parent, leaf = path.resolve().parent.name, path.resolve().name
        name = parent if leaf.lower() == "hr" else _DATASET_ALIASES.get((parent, leaf), leaf)
        while name in names:
            name += "_"
        names[name] = path
    return names


@dataclass
class _Trainee:
    """One loss's network, optimiser and measurements (``pixel_loss`` + ``weight`` x ``feature_loss``)."""

    name: str
    net: SRNet
    optimizer: torch.optim.Optimizer
    feature_loss: nn.Module | None
    info: dict[str, Any]
    weight: float = 0.0
    calibration: dict[str, float] = field(default_factory=dict)
    step: int = 0
    times: list[float] = field(default_factory=list)
    peak_memory_mib: float | None = None
    measured_memory: bool = False
    pixel_loss: Callable[[Tensor, Tensor], Tensor] = F.l1_loss
    #: Compute dtype of the feature loss (float32 islands as in :mod:`codecloss._dtype`); the network stays float32.
    dtype: torch.dtype = torch.float32

    @property
    def device(self) -> torch.device:
        """Where the network is."""
        return next(self.net.parameters()).device

    def batch(self, sampler: CropSampler, step: int) -> tuple[Tensor, Tensor]:
        """Batch ``step`` of ``sampler`` on the network's device."""
        lr, hr = sampler(step)
        return lr.to(self.device), hr.to(self.device)

    def loss(self, lr: Tensor, hr: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        sr = self.net(lr)
        l1 = self.pixel_loss(sr, hr)
        if self.feature_loss is None:
            return l1, l1, None
        with compute_context(self.dtype, sr.device):
            feature = self.feature_loss(sr, hr).float()
        return l1 + self.weight * feature, l1, feature

    def state(self, fixed: dict[str, Any]) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "loss": self.name, "settings": fixed, "step": self.step,
                "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": torch.get_rng_state(), "weight": self.weight, "calibration": self.calibration,
                "times": self.times, "peak_memory_mib": self.peak_memory_mib}


def _checkpoint_path(config: StudyConfig, name: str) -> Path:
    return Path(config.out) / name / "checkpoint.pt"


def _new_net(config: StudyConfig) -> SRNet:
    torch.manual_seed(config.seed)
    return SRNet(config.channels, config.blocks, SCALE)


def _calibrate(trainee: _Trainee, sampler: CropSampler, balance: float) -> None:
    """Set the feature-loss weight from the gradient norms at initialisation (network output = bicubic)."""
    if trainee.feature_loss is None:
        trainee.weight = 0.0
        return
    profiles = []
    for step in range(_CALIBRATION_BATCHES):
        lr, hr = trainee.batch(sampler, step)
        with torch.no_grad():
            sr = trainee.net(lr)
        with compute_context(trainee.dtype, sr.device):
            profiles.append(gradient_profile(trainee.feature_loss, sr, hr))
    trainee.calibration = {k: statistics.fmean(p[k] for p in profiles) for k in profiles[0]}
    trainee.weight = balance * trainee.calibration["grad_norm_l1"] / trainee.calibration["grad_norm"]
    logger.info("%s: feature-loss weight %.4g (gradient norms: L1 %.3g, feature %.3g)", trainee.name, trainee.weight,
                trainee.calibration["grad_norm_l1"], trainee.calibration["grad_norm"])


def _load_trainee(config: StudyConfig, name: str, sampler: CropSampler) -> _Trainee:
    feature_loss, info = build_feature_loss(name, config.seed, config.vgg_weights,
                                            config.codec_backbone, config.codec_weights, config.vgg16_weights)
    net = _new_net(config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.99))
    trainee = _Trainee(name, net, optimizer, feature_loss, info)
    path = _checkpoint_path(config, name)
    if not path.is_file():
        _calibrate(trainee, sampler, config.balance)
        return trainee
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("settings") != config.fixed():
        raise ValueError(f"--out: {str(path)!r} was made with other settings ({state.get('settings')}); "
                         f"expected {config.fixed()}; use another --out")
    if state["step"] > config.steps:
        raise ValueError(f"--steps: {str(path)!r} already has {state['step']} steps, more than {config.steps}")
    _restore(trainee, state)
    return trainee


def _restore(trainee: _Trainee, state: dict[str, Any]) -> None:
    """Put a checkpoint's network, optimiser, torch RNG state, step, weight and measurements into ``trainee``."""
    trainee.net.load_state_dict(state["model"])
    trainee.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    trainee.step, trainee.weight, trainee.calibration = state["step"], state["weight"], state["calibration"]
    trainee.times, trainee.peak_memory_mib = list(state["times"]), state["peak_memory_mib"]
    logger.info("%s: resumed at step %d", trainee.name, trainee.step)


def _train_chunk(trainee: _Trainee, sampler: CropSampler, until: int, log: Path, advance: Callable[[int], Any]) -> None:
    """Train ``trainee`` up to step ``until``; one step per call of ``sampler``, timed and (once per process) memory-measured."""
    trainee.net.train()
    sums = {"loss": 0.0, "l1": 0.0, "feature": 0.0}
    start = trainee.step
    while trainee.step < until:
        lr, hr = trainee.batch(sampler, trainee.step)
        record: dict[str, Tensor | None] = {}

        def step() -> None:
            total, l1, feature = trainee.loss(lr, hr)
            trainee.optimizer.zero_grad(set_to_none=True)
            total.backward()
            trainee.optimizer.step()
            record.update(loss=total.detach(), l1=l1.detach(), feature=None if feature is None else feature.detach())

        if not trainee.measured_memory:  # this step's time includes the measurement: not timed
            trainee.peak_memory_mib = peak_memory_mb(step, trainee.device)
            trainee.measured_memory = True
        else:
            t0 = time.perf_counter()
            step()
            if trainee.device.type == "cuda":
                torch.cuda.synchronize(trainee.device)
            trainee.times.append(time.perf_counter() - t0)
        for key in sums:
            sums[key] += 0.0 if record[key] is None else float(record[key])  # type: ignore[arg-type]
        trainee.step += 1
        advance(1)
    done = trainee.step - start
    if done:
        log.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(log, {"step": trainee.step, **{k: v / done for k, v in sums.items()}, "time": time.time()})


def _save_png(image: Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = image[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


def _evaluate(name: str, upscale: Callable[[Tensor], Tensor], out: Path, datasets: dict[str, Path], step: int,
              score: Callable[[Tensor, Tensor], dict[str, float | None]], save_images: bool = False,
              key_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scores of one method on every dataset (cached in ``out/<name>/eval.json`` for this step, these folders and
    ``key_extra``).

    ``score(sr, hr)`` gives one image's scores; the dataset means are taken over its keys.
    """
    cache = out / name / "eval.json"
    key = {"step": step, "datasets": {k: str(v) for k, v in datasets.items()}, **(key_extra or {})}
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached["result"]
    result: dict[str, Any] = {}
    for dataset, folder in datasets.items():
        per_image: dict[str, dict[str, float | None]] = {}
        for file_name, path in list_images(folder).items():
            hr = mod_crop(read_image(path), SCALE).unsqueeze(0)
            with torch.no_grad():
                sr = upscale(downscale(hr, SCALE))
            per_image[file_name] = score(sr, hr)
            if save_images:
                _save_png(sr, out / name / "images" / dataset / f"{Path(file_name).stem}.png")
        means = {metric: _mean([v[metric] for v in per_image.values()]) for metric in next(iter(per_image.values()))}
        result[dataset] = {"images": len(per_image), **means, "per_image": per_image}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".eval.json.{os.getpid()}.tmp")  # several processes may evaluate one run
    tmp.write_text(json.dumps({"key": key, "result": result}))
    tmp.replace(cache)
    return result


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _time_summary(times: list[float]) -> dict[str, float | int | None]:
    if not times:
        return {"median_s": None, "iqr_s": None, "timed_steps": 0}
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (times[0],) * 3
    return {"median_s": statistics.median(times), "iqr_s": q3 - q1, "timed_steps": len(times)}


def _train_interleaved(trainees: Sequence[_Trainee], sampler: CropSampler, steps: int, every: int, out: Path,
                       fixed: Callable[[_Trainee], dict[str, Any]], progress: bool | None) -> None:
    """Train every trainee to ``steps`` in interleaved chunks of ``every`` steps, checkpointing
    ``out/<name>/checkpoint.pt`` (with the settings ``fixed(trainee)``) after each chunk."""
    with progress_bar(total=steps * len(trainees), initial=sum(t.step for t in trainees), enabled=progress,
                      desc="sr-study", unit="step", leave=False) as bar:
        while any(t.step < steps for t in trainees):
            for trainee in trainees:
                until = min(steps, (trainee.step // every + 1) * every)
                if trainee.step >= until:
                    continue
                _train_chunk(trainee, sampler, until, out / trainee.name / "log.jsonl", bar.update)
                atomic_torch_save(trainee.state(fixed(trainee)), out / trainee.name / "checkpoint.pt")
                logger.info("%s: step %d, median step %.3f s", trainee.name, trainee.step,
                            _time_summary(trainee.times)["median_s"] or float("nan"))


def _training_summary(trainees: Sequence[_Trainee]) -> dict[str, dict[str, Any]]:
    """Per trainee: its description, weights, calibration, steps, step time (also relative to ``l1``) and peak memory."""
    l1_time = next((_time_summary(t.times)["median_s"] for t in trainees if t.name == "l1"), None)
    losses = {}
    for t in trainees:
        timing = _time_summary(t.times)
        ratio = timing["median_s"] / l1_time if l1_time and timing["median_s"] else None
        losses[t.name] = {**t.info, "l1_weight": 1.0, "feature_weight": t.weight, "calibration": t.calibration,
                          "steps": t.step, "step_time": {**timing, "relative_to_l1": ratio},
                          "peak_memory_mib": t.peak_memory_mib}
    return losses


def run_study(config: StudyConfig, progress: bool | None = None) -> dict[str, Any]:
    """Train every loss of ``config`` to ``config.steps`` (resuming from checkpoints), then evaluate all of them.

    Args:
        config: the study settings.
        progress: show a progress bar; ``None``: only when stderr is a terminal.

    Returns:
        A JSON-ready dict: ``settings``, ``metrics`` (what each score means), ``losses`` (per loss: its feature
        loss, weight, calibration, step time and peak memory) and ``eval`` (per dataset, per method including
        ``bicubic``: mean scores and per-image scores).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    images = load_training_images(config.train_dir, config.patch)
    logger.info("decoded %d training images in %.1f s", len(images), time.perf_counter() - t0)
    sampler = CropSampler(images, config.patch, config.batch, SCALE, config.seed)
    trainees = [_load_trainee(config, name, sampler) for name in config.losses]
    _train_interleaved(trainees, sampler, config.steps, config.checkpoint_every, out, lambda _: config.fixed(), progress)
    cpips = CPIPS().requires_grad_(False).eval()
    evaluation: dict[str, dict[str, Any]] = {}
    methods: list[tuple[str, Callable[[Tensor], Tensor]]] = [("bicubic", lambda lr: upscale_bicubic(lr, SCALE))]
    for trainee in trainees:
        trainee.net.eval()
        methods.append((trainee.name, trainee.net))
    for name, upscale in methods:
        step = 0 if name == "bicubic" else config.steps
        scores_of = _evaluate(name, upscale, out, config.datasets, step, lambda sr, hr: score_sr(sr, hr, SCALE, cpips),
                              config.save_images)
        for dataset, scores in scores_of.items():
            evaluation.setdefault(dataset, {})[name] = scores
        logger.info("evaluated %s", name)
    losses = _training_summary(trainees)
    net = _new_net(config)
    settings = {k: v for k, v in dataclasses.asdict(config).items() if not k.startswith("_")}
    settings |= {
        "scale": SCALE,
        "network": {"kind": "EDSR-baseline-style, global bicubic skip, zero-initialised tail (starts as bicubic)",
                    "channels": config.channels, "blocks": config.blocks, "parameters": net.num_parameters()},
        "optimizer": "Adam(betas=(0.9, 0.99)), constant learning rate",
        "degradation": DEGRADATION + "; evaluation LR images are made from HR the same way (not the datasets' "
                       "MATLAB-made LR files); HR images are cropped to multiples of the scale",
        "datasets": {k: str(v) for k, v in config.datasets.items()},
        "training_images": len(images),
        "feature_weight_rule": f"balance x |grad L1| / |grad feature loss| at init, mean over {_CALIBRATION_BATCHES} "
                               "training batches, input gradients w.r.t. the SR output",
        "memory_method": _MEMORY_METHOD,
        "time_method": "wall time of forward, backward and optimiser step (data preparation excluded), median over "
                       "the steps timed, losses trained in interleaved chunks in one process",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    return {"settings": settings, "metrics": METRIC_NOTES, "losses": losses, "eval": evaluation}
