"""Train a feed-forward stylizer (Johnson et al., ECCV 2016) with a codec or a reference loss network.

Each step draws a batch of random crops (with flips) from photos decoded once into memory, stylizes them, and
minimises the relative content and Gram errors of :class:`~codecloss.tasks.style_terms.StyleObjective` against the
crops themselves (content) and one style image (style) with Adam. Checkpoints hold the network, the optimiser, the
step and the crop generator's state, written atomically, so a run resumes exactly where it stopped.

Example:
    >>> from codecloss.tasks.train_style import StyleTrainConfig, train_stylizer
    >>> summary = train_stylizer(StyleTrainConfig(style="starry_night.jpg", out_dir="runs/starry"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from codecloss._dtype import compute_context, resolve_task_dtype
from codecloss._io import append_jsonl, atomic_torch_save
from codecloss._progress import progress as progress_bar
from codecloss._validate import check_choice
from codecloss.bench.measure import peak_memory_mb
from codecloss.tasks.gatys import read_single_image, resize_shorter
from codecloss.tasks.style_terms import LayersArg, StyleObjective, layer_weights
from codecloss.tasks.stylizer_net import Stylizer, save_stylizer
from codecloss._data_paths import NATURAL_TRAIN_DIRS
from codecloss.train.data import ImageBank

__all__ = ["LOSSES", "StyleTrainConfig", "build_loss_network", "train_stylizer"]

logger = logging.getLogger(__name__)

#: Loss networks: the codec backbone, the same architecture at random init (the control), ImageNet VGG16.
LOSSES = ("codec", "codec-random", "vgg16")

#: Default (content taps, Gram taps) per loss: the codec's are the stylize recipe's; VGG16's are pytorch/examples'.
DEFAULT_TAPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "codec": (("gdn3",), ("conv1", "gdn1", "conv2", "gdn2", "conv3", "gdn3")),
    "vgg16": (("relu2_2",), ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
}

CHECKPOINT_NAME, LOG_NAME, MODEL_NAME = "checkpoint.pth", "log.jsonl", "stylizer.pth"

#: Settings that must match the checkpoint for ``resume``.
_FIXED_ON_RESUME = ("style", "loss", "backbone", "weights", "width", "blocks", "size", "batch", "seed",
                    "content_layers", "style_layers", "content_weight", "style_weight", "tv_weight", "lr", "dtype")


@dataclass
class StyleTrainConfig:
    """Everything a stylizer training run depends on (JSON-ready with :func:`dataclasses.asdict`).

    Attributes:
        style: the style image's path.
        out_dir: run folder (checkpoint, log, final model ``stylizer.pth``).
        data_dirs: folders of training photos (never the style or judging images).
        loss: one of :data:`LOSSES`.
        backbone: codec backbone id for ``codec`` and ``codec-random`` (``None``: :data:`codecloss.DEFAULT_BACKBONE`,
            resolved here, so that a checkpoint names its backbone and never resumes on another default).
        weights: codec weights (``"default"``, registry name or file) for ``codec``; the VGG16 trunk file for
            ``vgg16`` (``None``: ``codecloss.reference.trunk_file("vgg16")``, i.e. ``$CODECLOSS_TRUNKS``).
        content_layers, style_layers: taps (names or name -> weight); ``None``: :data:`DEFAULT_TAPS`.
        content_weight, style_weight, tv_weight: weights of the relative content error, the relative Gram error
            and total variation.
        size: side of the square training crops.
        batch: crops per step.
        steps: total optimiser steps (raise it and ``resume`` to train on).
        lr: Adam's learning rate.
        width, blocks: the :class:`~codecloss.tasks.stylizer_net.Stylizer`'s size.
        seed: seed of the network's initialisation, the crop order and a random-init loss network.
        device: torch device.
        dtype: compute dtype of the loss network, one of :data:`~codecloss._dtype.TASK_DTYPES` (``"auto"``: bfloat16
            where the device has fast bfloat16 matrix units; Gram matrices and reductions stay float32); the
            stylizer trains in float32.
        checkpoint_every: steps between checkpoints (and log lines).
    """

    style: str
    out_dir: str
    data_dirs: list[str] = field(default_factory=lambda: list(NATURAL_TRAIN_DIRS))
    loss: str = "codec"
    backbone: str | None = None
    weights: str | None = "default"
    content_layers: LayersArg = None
    style_layers: LayersArg = None
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    size: int = 128
    batch: int = 4
    steps: int = 3500
    lr: float = 2e-3
    width: int = 16
    blocks: int = 3
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, LOSSES)
        if self.backbone is None and _loss_family(self.loss) == "codec":
            import codecloss

            self.backbone = codecloss.DEFAULT_BACKBONE
        self.dtype = str(resolve_task_dtype(self.dtype, self.device, "dtype")).removeprefix("torch.")
        for name in ("size", "batch", "steps", "width", "blocks", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        for name in ("content_weight", "style_weight", "tv_weight", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if self.size < 32:
            raise ValueError(f"size: expected crops of at least 32 px (the loss networks downsample 16x), got {self.size}")
        if self.content_layers is not None and not isinstance(self.content_layers, dict):
            self.content_layers = list(self.content_layers)
        if self.style_layers is not None and not isinstance(self.style_layers, dict):
            self.style_layers = list(self.style_layers)


def build_loss_network(loss: str, backbone: str | None = None, weights: Any = "default", seed: int = 0) -> Any:
    """The frozen loss network of ``loss`` (see :data:`LOSSES`), with ``extract(images, layers)``.

    Args:
        loss: ``"codec"``, ``"codec-random"`` (same architecture, random init with ``seed``) or ``"vgg16"``.
        backbone: codec backbone id (``None``: :data:`codecloss.DEFAULT_BACKBONE`).
        weights: codec weights, or the VGG16 trunk file (``None``: from ``$CODECLOSS_TRUNKS``).
        seed: seed of a random initialisation.
    """
    import codecloss

    check_choice("loss", loss, LOSSES)
    if loss == "vgg16":
        from codecloss import reference

        trunk = weights if weights not in (None, "default") else reference.trunk_file("vgg16")
        if trunk is None:
            raise ValueError("weights: the vgg16 loss needs the ImageNet trunk file (vgg16_features.pth); pass "
                             "--weights FILE or set CODECLOSS_TRUNKS to its folder")
        return reference.trunk("vgg16", weights=trunk)
    backbone = backbone or codecloss.DEFAULT_BACKBONE
    if loss == "codec-random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return codecloss.load_backbone(backbone, weights=None)
    return codecloss.load_backbone(backbone, weights=weights)


def _loss_family(loss: str) -> str:
    return "vgg16" if loss == "vgg16" else "codec"


def _objective(config: StyleTrainConfig, device: torch.device) -> StyleObjective:
    network = build_loss_network(config.loss, config.backbone, config.weights, config.seed).to(device)
    default_content, default_style = DEFAULT_TAPS[_loss_family(config.loss)]
    content = layer_weights("content_layers", config.content_layers or list(default_content), network)
    style_taps = layer_weights("style_layers", config.style_layers or list(default_style), network)
    style = resize_shorter(read_single_image(config.style, "style"), config.size).to(device)
    return StyleObjective(network, style, content, style_taps,
                          (config.content_weight, config.style_weight, config.tv_weight))


def _resume_state(config: StyleTrainConfig, path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state["config"]
    for name in _FIXED_ON_RESUME:
        mine = dataclasses.asdict(config)[name]
        if saved.get(name) != mine:
            raise ValueError(f"{name}: got {mine!r}, but the checkpoint in {str(path.parent)!r} was trained with "
                             f"{saved.get(name)!r}; use a new --out for different settings")
    return state


def train_stylizer(config: StyleTrainConfig, resume: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) a stylizer; write ``stylizer.pth`` into ``config.out_dir``.

    Args:
        config: the run's settings.
        resume: continue from ``out_dir/checkpoint.pth`` (settings must match, ``steps`` may grow).
        progress: a progress bar on stderr: ``True``, ``False``, or ``None`` (only on a terminal).

    Returns:
        A JSON-ready summary: settings, steps, final terms, seconds per step, peak memory and the model's path.
    """
    out = Path(config.out_dir)
    checkpoint = out / CHECKPOINT_NAME
    if checkpoint.exists() and not resume:
        raise ValueError(f"out: {str(out)!r} already holds a run; pass --resume to continue it or choose a new --out")
    device = torch.device(config.device)
    dtype = getattr(torch, config.dtype)
    objective = _objective(config, device)
    bank = ImageBank.from_folders(config.data_dirs, min_side=config.size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Stylizer(config.width, config.blocks).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    step, seconds = 0, 0.0
    peak_mib: float | None = None
    measure_peak = True
    if resume and checkpoint.exists():
        state = _resume_state(config, checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, seconds, peak_mib = state["step"], state["seconds"], state.get("peak_memory_mib")
        measure_peak = peak_mib is None
        logger.info("train-style: resumed %s at step %d", out, step)
    out.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.asdict(config)
    terms: dict[str, float] = {}
    bar = progress_bar(total=config.steps, initial=step, enabled=progress, desc="train-style", unit="step")
    while step < config.steps:
        crops = bank.sample(config.batch, config.size, generator)[0].to(device)

        def train_step() -> dict[str, torch.Tensor]:
            optimizer.zero_grad(set_to_none=True)
            stylized = model(crops)
            with compute_context(dtype, device):
                result = objective.terms(stylized, objective.content_targets(crops))
            result["total"].backward()
            optimizer.step()
            return result

        start = time.perf_counter()
        if measure_peak:  # the first step of this process also measures peak memory
            ran: list[dict[str, torch.Tensor]] = []
            peak_mib = peak_memory_mb(lambda: ran.append(train_step()), device)
            result, measure_peak = (ran[0] if ran else train_step()), False
        else:
            result = train_step()
        seconds += time.perf_counter() - start
        step += 1
        bar.update(1)
        if step % config.checkpoint_every == 0 or step == config.steps:
            terms = {name: float(value.detach()) for name, value in result.items()}
            append_jsonl(out / LOG_NAME, {"step": step, "seconds": round(seconds, 3), **terms})
            atomic_torch_save({"config": settings, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "generator": generator.get_state(), "step": step, "seconds": seconds,
                               "peak_memory_mib": peak_mib}, checkpoint)
    bar.close()
    meta = {"style": Path(config.style).name, "loss": config.loss, "backbone": config.backbone,
            "steps": step, "size": config.size}
    model_path = save_stylizer(model, out / MODEL_NAME, meta)
    summary = {"settings": settings, "steps": step, "terms": terms, "train_seconds": round(seconds, 2),
               "seconds_per_step": round(seconds / max(step, 1), 4), "peak_memory_mib": peak_mib,
               "model": str(model_path), "parameters": sum(p.numel() for p in model.parameters())}
    logger.info("train-style: %d steps in %.0f s, model %s", step, seconds, model_path)
    return summary
