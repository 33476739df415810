"""Rate-distortion training of CompressAI codecs (optionally with a joint classification head or semantic term).

The recipe: every training image is decoded once into memory as a uint8 tensor; each step
draws ``batch_size`` random crops with random horizontal flips from a seeded
:class:`torch.Generator`, and minimises ``lmbda * 255**2 * MSE + bpp`` (or an MS-SSIM or mixed
distortion, see :class:`TrainConfig`) with Adam, while a
second Adam optimises the entropy bottleneck's quantiles on ``model.aux_loss()`` every step
(CompressAI's parameter split: names ending in ``.quantiles`` go to the auxiliary optimiser).
With ``semantic_weight`` beta > 0 the loss gains ``beta * S``, the distillation of a frozen ImageNet
teacher into ``g_a`` through linear heads trained with the codec (:mod:`codecloss.train.semantic`).
Checkpoints hold the model, both optimisers, the step, the config and the RNG states, and
are written atomically, so a run can be stopped and resumed (with more ``steps``) at will.

Example:
    >>> from codecloss.train.codec import TrainConfig, train
    >>> cfg = TrainConfig(data_dirs=["photos"], out_dir="runs/demo", steps=1000)
    >>> summary = train(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from codecloss._io import append_jsonl, atomic_torch_save
from codecloss._progress import progress as progress_bar
from codecloss.train.checkpoints import (
    CHECKPOINT_NAME,
    LOG_NAME,
    ExportInfo,
    export_analysis_transform,
    export_codec,
    load_checkpoint,
    load_config,
    load_model,
)
from codecloss.train import distributed, objective, semantic
from codecloss.train.config import ARCHS, DISTORTIONS, MS_SSIM_MIN_SIDE, ZOO_ARCHITECTURE, TrainConfig
from codecloss.train.data import ImageBank, center_crops
from codecloss.train.model import ClassificationHead, build_model, initialize_from, split_parameters

logger = logging.getLogger(__name__)

# The training loop lives here; the names re-exported below keep ``codecloss.train.codec`` the one
# import for the whole recipe (config, data, models, checkpoints, export).
__all__ = [
    "ARCHS",
    "CHECKPOINT_NAME",
    "DISTORTIONS",
    "ZOO_ARCHITECTURE",
    "ClassificationHead",
    "ExportInfo",
    "ImageBank",
    "TrainConfig",
    "build_model",
    "export_analysis_transform",
    "export_codec",
    "initialize_from",
    "load_checkpoint",
    "load_config",
    "load_model",
    "train",
]


class _Window:
    """Running sums of the per-step statistics between two log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def means(self) -> dict[str, float]:
        return {key: value / self.count for key, value in self.sums.items()}


@torch.no_grad()
def _validate(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Forward-pass (estimated) bpp and PSNR per image, averaged, in eval mode."""
    model.eval()
    bpps, psnrs, mses, ms_ssims = [], [], [], []
    with_ms_ssim = min(images.shape[-2:]) >= MS_SSIM_MIN_SIDE
    try:
        for image in images.split(1):
            out = model(image)
            x_hat = out["x_hat"].clamp(0, 1)
            mse = F.mse_loss(x_hat, image).item()
            bpps.append(objective.bpp(out["likelihoods"], image.shape[2] * image.shape[3]).item())
            mses.append(mse)
            psnrs.append(objective.psnr(mse))
            if with_ms_ssim:
                ms_ssims.append(objective.ms_ssim(x_hat, image).item())
    finally:
        model.train()
    n = len(bpps)
    result = {"bpp": sum(bpps) / n, "mse": sum(mses) / n, "psnr": sum(psnrs) / n, "images": n}
    if ms_ssims:
        result["ms_ssim"] = sum(ms_ssims) / n
    return result


def _check_resume_compatible(saved: TrainConfig, config: TrainConfig) -> None:
    for name in ("arch", "N", "M"):
        if getattr(saved, name) != getattr(config, name):
            raise ValueError(
                f"{name}={getattr(config, name)!r} does not match the checkpoint's {getattr(saved, name)!r}; "
                "use a new out_dir for a different model"
            )
    if (saved.cls_dir is None) != (config.cls_dir is None):
        raise ValueError(f"cls_dir={config.cls_dir!r} does not match the checkpoint's {saved.cls_dir!r}")
    ours = (config.semantic_teacher, config.semantic_pairs) if config.uses_semantic else "off"
    theirs = (saved.semantic_teacher, saved.semantic_pairs) if saved.uses_semantic else "off"
    if ours != theirs:
        raise ValueError(
            f"semantic_weight, semantic_teacher, semantic_taps: the semantic term {ours} does not match the "
            f"checkpoint's {theirs}; use a new out_dir (with init from an export of this run) for another one"
        )


def _steps(start: int, stop: int, config: TrainConfig) -> Iterator[int]:
    return iter(progress_bar(range(start, stop), config.progress, initial=start, total=stop, desc="train-codec"))


def train(
    config: TrainConfig, resume: bool = False, should_stop: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Train (or resume) a codec; returns a summary of the last step and validation.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this: the ranks train one DDP model
    (gloo on CPU, NCCL on CUDA), each on its own shard of the images with its own random streams;
    ``config.batch_size`` is the global batch; only rank 0 writes the checkpoint (holding every
    rank's random streams, so that resuming with the same number of ranks is exact) and the log.

    Args:
        config: the run's :class:`TrainConfig`. When resuming, ``arch``, ``N``, ``M`` (and the
            semantic term: on or off, its teacher and taps) must match the checkpoint; every other field (``steps``, ``lr_drop_step``, ...) is taken from
            ``config``, so ``steps`` can be raised to train further.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (otherwise start fresh).
        should_stop: polled after every step; when it returns True (on any rank) the run writes a
            checkpoint at the current step and returns (``stopped`` is then True). The CLI sets it
            from SIGTERM.

    Returns:
        dict with ``step``, ``checkpoint`` (path), ``last`` (last training log record or None),
        ``val`` (last validation record or None), ``stopped``, ``steps_per_sec`` (this session)
        and ``world_size``.

    Example:
        >>> train(TrainConfig(data_dirs=["imgs"], out_dir="runs/t", steps=3, crop=32))  # doctest: +SKIP
    """
    config.validate()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    with distributed.session(config.device) as ctx:
        return _train(config, resume, should_stop, ctx)


def _local_batch(config: TrainConfig, ctx: distributed.Session) -> int:
    if config.batch_size % ctx.world_size:
        raise ValueError(
            f"batch_size must be divisible by the {ctx.world_size} ranks (it is the global batch), "
            f"got {config.batch_size}"
        )
    if ctx.distributed and config.cls_dir is not None:
        raise ValueError(f"cls_dir is not supported under torchrun (world size {ctx.world_size}), got {config.cls_dir!r}")
    return config.batch_size // ctx.world_size


def _train(
    config: TrainConfig, resume: bool, should_stop: Callable[[], bool] | None, ctx: distributed.Session
) -> dict[str, Any]:
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    log_path = out_dir / LOG_NAME
    batch_size = _local_batch(config, ctx)
    device = ctx.device

    ckpt = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if ckpt is None and ckpt_path.is_file():
        raise ValueError(f"out_dir {str(out_dir)!r} already holds a checkpoint; pass resume=True or use a new out_dir")
    if ckpt is not None:
        _check_resume_compatible(TrainConfig.from_dict(ckpt["config"]), config)
        saved_world = int(ckpt.get("world_size", 1))
        if saved_world != ctx.world_size:
            raise ValueError(
                f"the checkpoint was written by {saved_world} rank(s), this run has {ctx.world_size}; "
                "resume with the same number of processes (exact resume restores every rank's random streams)"
            )

    torch.manual_seed(config.seed)
    data = ImageBank.from_folders(config.data_dirs, min_side=config.crop, shard=(ctx.rank, ctx.world_size))
    cls_data = ImageBank.from_image_folder(config.cls_dir, min_side=config.crop) if config.cls_dir else None
    if ctx.is_main:
        logger.info("decoded %d training images from %s (rank 0 of %d)", len(data), config.data_dirs, ctx.world_size)
    val_images = None
    if config.val_dir is not None and ctx.is_main:
        val_images = center_crops(config.val_dir, config.val_images, config.val_crop)
        val_images = None if val_images is None else val_images.to(device)

    model = build_model(config.arch, config.N, config.M)
    if ckpt is None and config.init is not None:
        initialize_from(model, config.init, widen=config.init_widen)
    model.to(device).train()
    distillation = semantic.Distillation.from_config(config, model, device) if config.uses_semantic else None
    semantic_heads = distillation.heads().to(device) if distillation is not None else None
    if ctx.rank > 0:  # every rank starts from the same weights; its own quantisation noise from here on
        torch.manual_seed(config.seed + ctx.rank)
    head = ClassificationHead(config.M, len(cls_data.classes)).to(device) if cls_data is not None else None
    main_params, aux_params = split_parameters(model)
    if head is not None:
        main_params += list(head.parameters())
    if semantic_heads is not None:
        main_params += list(semantic_heads.parameters())
    optimizer = torch.optim.Adam(main_params, lr=config.lr_at(0))
    aux_optimizer = torch.optim.Adam(aux_params, lr=config.aux_lr)
    generator = torch.Generator().manual_seed(config.seed + ctx.rank)

    step, elapsed_before = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if head is not None:
            if ckpt.get("classes") != cls_data.classes:
                raise ValueError(f"cls_dir classes {cls_data.classes} differ from the checkpoint's {ckpt.get('classes')}")
            head.load_state_dict(ckpt["head"])
        if semantic_heads is not None:
            semantic_heads.load_state_dict(ckpt["semantic_heads"])
        optimizer.load_state_dict(ckpt["optimizer"])
        aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        streams = ckpt["rank_rng"][ctx.rank] if ctx.distributed else ckpt["rng"]
        distributed.set_rng_state(streams, generator, device)
        step, elapsed_before = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0))
        if ctx.is_main:
            logger.info("resumed from %s at step %d", ckpt_path, step)
    for group in aux_optimizer.param_groups:
        group["lr"] = config.aux_lr
    # the semantic heads live inside the module DDP wraps, so that their gradients are averaged too
    trained = distributed.wrap(model if distillation is None else distillation.wrap(model, semantic_heads), ctx)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        streams = distributed.gather(distributed.rng_state(generator, device), ctx)
        if not ctx.is_main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "aux_optimizer": aux_optimizer.state_dict(),
            "step": step,
            "elapsed": elapsed_before + (time.perf_counter() - t0),
            "config": config.to_dict(),
            "rng": streams[0],
        }
        if ctx.distributed:
            state["world_size"] = ctx.world_size
            state["rank_rng"] = streams
        if head is not None:
            state["head"] = head.state_dict()
            state["classes"] = list(cls_data.classes)
        if semantic_heads is not None:
            state["semantic_heads"] = semantic_heads.state_dict()
        atomic_torch_save(state, ckpt_path)
        logger.debug("checkpoint written at step %d", step)

    t0 = time.perf_counter()
    start_step = step
    window = _Window()
    last: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    stopped = False
    num_pixels = batch_size * config.crop * config.crop
    steps = _steps(step, config.steps, config) if ctx.is_main else iter(range(step, config.steps))
    for step_index in steps:
        lr = config.lr_at(step_index)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, _ = data.sample(batch_size, config.crop, generator)
        x = x.to(device)
        out = trained(x)
        distortion, measured = objective.distortion(config, out["x_hat"], x)
        bpp = objective.bpp(out["likelihoods"], num_pixels)
        loss = distortion + bpp
        ce = None
        if head is not None:
            xc, labels = cls_data.sample(batch_size, config.crop, generator)
            ce = F.cross_entropy(head(model.g_a(xc.to(device))), labels.to(device))
            loss = loss + config.cls_weight * ce
        distil = None
        if distillation is not None:
            distil = distillation.loss(out["semantic"], x)
            loss = loss + config.semantic_weight * distil
        (not_finite,) = distributed.agree([not bool(torch.isfinite(loss))], ctx)
        if not_finite:
            raise FloatingPointError(f"loss became {loss.item()} at step {step_index}; the checkpoint is not updated")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip:
            nn.utils.clip_grad_norm_(main_params, config.clip)
        optimizer.step()
        aux_optimizer.zero_grad(set_to_none=True)
        aux = model.aux_loss()  # depends on the (identical) parameters only: the same on every rank
        aux.backward()
        aux_optimizer.step()
        step = step_index + 1

        stats = {"loss": loss.item(), "bpp": bpp.item(), "aux": aux.item(), **{k: v.item() for k, v in measured.items()}}
        stats["psnr"] = objective.psnr(stats["mse"])
        if ce is not None:
            stats["ce"] = ce.item()
        if distil is not None:
            stats["semantic"] = distil.item()
        window.add(**stats)
        elapsed = elapsed_before + (time.perf_counter() - t0)
        if step % config.log_every == 0 or step == config.steps:
            means = distributed.mean_over_ranks(window.means(), ctx)
            last = {"step": step, **means, "lr": lr, "elapsed": round(elapsed, 2)}
            if ctx.is_main:
                append_jsonl(log_path, last)
                logger.info("step %d loss %.4f bpp %.4f psnr %.2f aux %.2f", step, last["loss"], last["bpp"], last["psnr"], last["aux"])
            window = _Window()
        if val_images is not None and (step % config.val_every == 0 or step == config.steps):
            val = {"step": step, "val": True, **_validate(model, val_images), "elapsed": round(elapsed, 2)}
            append_jsonl(log_path, val)
            logger.info("step %d validation: bpp %.4f psnr %.2f ms-ssim %s", step, val["bpp"], val["psnr"], val.get("ms_ssim"))
        (stopped,) = distributed.agree([should_stop is not None and should_stop()], ctx)
        if step % config.ckpt_every == 0 or step == config.steps or stopped:
            save()
        if stopped:
            if ctx.is_main:
                logger.warning("stop requested: checkpoint written at step %d", step)
            break
    if step == start_step and not ckpt_path.is_file():
        save()
    session = time.perf_counter() - t0
    done = step - start_step
    return {
        "step": step,
        "checkpoint": str(ckpt_path),
        "last": last,
        "val": val,
        "stopped": stopped,
        "steps_per_sec": done / session if done and session > 0 else None,
        "world_size": ctx.world_size,
        "teacher_dtype": None if distillation is None else str(distillation.dtype).removeprefix("torch."),
    }
