"""Rate-distortion training of CompressAI codecs (optionally with a joint classification head).

The recipe: every training image is decoded once into memory as a uint8 tensor; each step
draws ``batch_size`` random crops with random horizontal flips from a seeded
:class:`torch.Generator`, and minimises ``lmbda * 255**2 * MSE + bpp`` with Adam, while a
second Adam optimises the entropy bottleneck's quantiles on ``model.aux_loss()`` every step
(CompressAI's parameter split: names ending in ``.quantiles`` go to the auxiliary optimiser).
Checkpoints hold the model, both optimisers, the step, the config and the RNG states, and
are written atomically, so a run can be stopped and resumed (with more ``steps``) at will.

Example:
    >>> from codecloss.train.codec import TrainConfig, train
    >>> cfg = TrainConfig(data_dirs=["photos"], out_dir="runs/demo", steps=1000)
    >>> summary = train(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from codecloss._io import append_jsonl, atomic_torch_save
from codecloss.weights.integrity import sha256_file

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHS",
    "CHECKPOINT_NAME",
    "ClassificationHead",
    "ExportInfo",
    "ImageBank",
    "TrainConfig",
    "build_model",
    "export_analysis_transform",
    "export_codec",
    "load_checkpoint",
    "load_config",
    "load_model",
    "train",
]

#: Supported architectures -> the multiple that crop sizes must respect.
ARCHS: dict[str, int] = {"factorized": 16, "hyperprior": 64}
#: File name of the training checkpoint inside ``out_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    Args:
        data_dirs: folders of training images (searched non-recursively).
        out_dir: where ``checkpoint.pt`` and ``log.jsonl`` go.
        arch: ``"factorized"`` (``FactorizedPrior``) or ``"hyperprior"`` (``ScaleHyperprior``).
        N, M: channel widths of the CompressAI model.
        lmbda: rate-distortion trade-off; loss = ``lmbda * 255**2 * MSE + bpp``.
        batch_size, crop: random crops per step and their side (multiple of 16, or 64 for hyperprior).
        lr, aux_lr: Adam learning rates of the main and the auxiliary (quantiles) optimiser.
        steps: total number of optimisation steps (may be raised when resuming).
        lr_drop_step: from this step on the main lr is ``lr * 0.1`` (None: never).
        clip: max gradient norm of the main parameters (0 or None: no clipping).
        seed: seeds model init, crop sampling and quantisation noise.
        val_dir: folder of validation images (None: no validation).
        val_every, val_images, val_crop: validation period, number of images, centre-crop side.
        ckpt_every, log_every: checkpoint and log periods in steps.
        num_threads: ``torch.set_num_threads`` for the run (None: leave as is).
        cls_dir: ImageFolder-style labelled folder (class = sub-folder name) for the joint
            classification head on ``g_a`` features (None: no head).
        cls_weight: weight of the cross-entropy term.
        progress: show a tqdm bar (only when stderr is a TTY).

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
    cls_dir: str | None = None
    cls_weight: float = 0.1
    progress: bool = True

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
        positive = ("N", "M", "batch_size", "steps", "val_every", "val_images", "ckpt_every", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lmbda", "lr", "aux_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if self.lr_drop_step is not None and (not isinstance(self.lr_drop_step, int) or self.lr_drop_step < 0):
            raise ValueError(f"lr_drop_step must be None or an integer >= 0, got {self.lr_drop_step!r}")
        if self.clip is not None and not (self.clip >= 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip must be None or a finite number >= 0, got {self.clip!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads <= 0):
            raise ValueError(f"num_threads must be None or a positive integer, got {self.num_threads!r}")
        if not (self.cls_weight >= 0 and math.isfinite(self.cls_weight)):
            raise ValueError(f"cls_weight must be a finite number >= 0, got {self.cls_weight!r}")

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


# ----------------------------------------------------------------------------- data


def _list_images(folder: str | os.PathLike[str]) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"image folder not found: {str(path)!r}")
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _decode(path: Path) -> torch.Tensor:
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class ImageBank:
    """Images decoded once into memory (uint8, CHW) with optional integer labels.

    Args:
        images: uint8 tensors of shape (3, H, W).
        labels: one class index per image, or None.
        classes: class names indexed by label, or None.

    Example:
        >>> bank = ImageBank([torch.zeros(3, 40, 40, dtype=torch.uint8)])
        >>> bank.sample(2, 32, torch.Generator().manual_seed(0))[0].shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        images: list[torch.Tensor],
        labels: list[int] | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if not images:
            raise ValueError("images must hold at least one image, got an empty list")
        self.images = images
        self.labels = torch.tensor(labels, dtype=torch.long) if labels is not None else None
        self.classes = classes

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_folders(cls, folders: Sequence[str | os.PathLike[str]], min_side: int = 0) -> "ImageBank":
        """Decode every image of ``folders``; images with a side below ``min_side`` are skipped."""
        paths = [p for folder in folders for p in _list_images(folder)]
        images = cls._decode_all(paths, min_side)
        if not images:
            raise ValueError(f"data_dirs {list(map(str, folders))!r} hold no image with both sides >= {min_side}")
        return cls(images)

    @classmethod
    def from_image_folder(cls, root: str | os.PathLike[str], min_side: int = 0) -> "ImageBank":
        """Decode an ImageFolder-style tree: ``root/<class name>/<image>``."""
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"labelled image folder not found: {str(root_path)!r}")
        classes = sorted(p.name for p in root_path.iterdir() if p.is_dir())
        if len(classes) < 2:
            raise ValueError(f"cls_dir {str(root_path)!r} must hold >= 2 class sub-folders, found {classes}")
        images: list[torch.Tensor] = []
        labels: list[int] = []
        for index, name in enumerate(classes):
            decoded = cls._decode_all(_list_images(root_path / name), min_side)
            images += decoded
            labels += [index] * len(decoded)
        if not images:
            raise ValueError(f"cls_dir {str(root_path)!r} holds no image with both sides >= {min_side}")
        return cls(images, labels, classes)

    @staticmethod
    def _decode_all(paths: list[Path], min_side: int) -> list[torch.Tensor]:
        images = []
        for path in paths:
            image = _decode(path)
            if min(image.shape[1:]) < min_side:
                logger.warning("skipping %s: %dx%d is smaller than %d", path, image.shape[2], image.shape[1], min_side)
                continue
            images.append(image)
        return images

    def sample(
        self, batch_size: int, crop: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random crops with random horizontal flips, as float32 in [0, 1].

        Returns:
            ``(batch (B, 3, crop, crop), labels (B,) or None)``.
        """
        index = torch.randint(len(self.images), (batch_size,), generator=generator)
        flips = torch.rand(batch_size, generator=generator) < 0.5
        crops = []
        for i, flip in zip(index.tolist(), flips.tolist()):
            image = self.images[i]
            height, width = image.shape[1:]
            top = int(torch.randint(height - crop + 1, (1,), generator=generator))
            left = int(torch.randint(width - crop + 1, (1,), generator=generator))
            patch = image[:, top : top + crop, left : left + crop]
            crops.append(patch.flip(-1) if flip else patch)
        batch = torch.stack(crops).float().div_(255.0)
        labels = self.labels[index] if self.labels is not None else None
        return batch, labels


def _center_crops(folder: str, count: int, side: int) -> torch.Tensor | None:
    """Up to ``count`` centre crops of side ``side`` from ``folder`` (float32 [0,1]), or None."""
    crops = []
    for path in _list_images(folder):
        image = _decode(path)
        height, width = image.shape[1:]
        if min(height, width) < side:
            continue
        top, left = (height - side) // 2, (width - side) // 2
        crops.append(image[:, top : top + side, left : left + side])
        if len(crops) == count:
            break
    if not crops:
        logger.warning("no validation image of %s is at least %dx%d; validation disabled", folder, side, side)
        return None
    return torch.stack(crops).float().div_(255.0)


# ----------------------------------------------------------------------------- model


class ClassificationHead(nn.Module):
    """Global-average-pool of the latent ``y`` followed by a linear classifier.

    Args:
        channels: channels of ``y`` (``M``).
        num_classes: number of classes.

    Example:
        >>> ClassificationHead(96, 3)(torch.randn(2, 96, 4, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fc(y.mean(dim=(2, 3)))


def build_model(arch: str, N: int, M: int) -> nn.Module:
    """A fresh CompressAI model: ``FactorizedPrior(N, M)`` or ``ScaleHyperprior(N, M)``.

    Example:
        >>> type(build_model("factorized", 64, 96)).__name__
        'FactorizedPrior'
    """
    from compressai.models import FactorizedPrior, ScaleHyperprior

    builders = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior}
    if arch not in builders:
        raise ValueError(f"arch must be one of {sorted(builders)}, got {arch!r}")
    return builders[arch](N, M)


def _split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """CompressAI's split: ``*.quantiles`` -> auxiliary optimiser, everything else -> main."""
    main, aux = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (aux if name.endswith(".quantiles") else main).append(param)
    return main, aux


def _bpp(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel of a batch (summed over latents, averaged over images)."""
    return sum(torch.log(lk).sum() for lk in likelihoods.values()) / (-math.log(2) * num_pixels)


def _psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a training checkpoint written by :func:`train` (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} is not a codecloss training checkpoint")
    return ckpt


def load_config(out_dir: str | os.PathLike[str]) -> TrainConfig:
    """The :class:`TrainConfig` stored in ``out_dir``'s checkpoint (e.g. to resume with changes)."""
    return TrainConfig.from_dict(load_checkpoint(out_dir)["config"])


# ----------------------------------------------------------------------------- training


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
    bpps, psnrs, mses = [], [], []
    try:
        for image in images.split(1):
            out = model(image)
            mse = F.mse_loss(out["x_hat"].clamp(0, 1), image).item()
            bpps.append(_bpp(out["likelihoods"], image.shape[2] * image.shape[3]).item())
            mses.append(mse)
            psnrs.append(_psnr(mse))
    finally:
        model.train()
    n = len(bpps)
    return {"bpp": sum(bpps) / n, "mse": sum(mses) / n, "psnr": sum(psnrs) / n, "images": n}


def _check_resume_compatible(saved: TrainConfig, config: TrainConfig) -> None:
    for name in ("arch", "N", "M"):
        if getattr(saved, name) != getattr(config, name):
            raise ValueError(
                f"{name}={getattr(config, name)!r} does not match the checkpoint's {getattr(saved, name)!r}; "
                "use a new out_dir for a different model"
            )
    if (saved.cls_dir is None) != (config.cls_dir is None):
        raise ValueError(f"cls_dir={config.cls_dir!r} does not match the checkpoint's {saved.cls_dir!r}")


def _steps(start: int, stop: int, config: TrainConfig) -> Iterator[int]:
    disable = not (config.progress and sys.stderr.isatty())
    return iter(tqdm(range(start, stop), initial=start, total=stop, disable=disable, desc="train-codec"))


def train(
    config: TrainConfig, resume: bool = False, should_stop: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Train (or resume) a codec; returns a summary of the last step and validation.

    Args:
        config: the run's :class:`TrainConfig`. When resuming, ``arch``, ``N``, ``M`` must match
            the checkpoint; every other field (``steps``, ``lr_drop_step``, ...) is taken from
            ``config``, so ``steps`` can be raised to train further.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (otherwise start fresh).
        should_stop: polled after every step; when it returns True the run writes a checkpoint
            at the current step and returns (``stopped`` is then True). The CLI sets it from SIGTERM.

    Returns:
        dict with ``step``, ``checkpoint`` (path), ``last`` (last training log record or None),
        ``val`` (last validation record or None), ``stopped`` and ``steps_per_sec`` (this session).

    Example:
        >>> train(TrainConfig(data_dirs=["imgs"], out_dir="runs/t", steps=3, crop=32))  # doctest: +SKIP
    """
    config.validate()
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    log_path = out_dir / LOG_NAME
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)

    ckpt = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if ckpt is None and ckpt_path.is_file():
        raise ValueError(f"out_dir {str(out_dir)!r} already holds a checkpoint; pass resume=True or use a new out_dir")
    if ckpt is not None:
        _check_resume_compatible(TrainConfig.from_dict(ckpt["config"]), config)

    torch.manual_seed(config.seed)
    data = ImageBank.from_folders(config.data_dirs, min_side=config.crop)
    cls_data = ImageBank.from_image_folder(config.cls_dir, min_side=config.crop) if config.cls_dir else None
    logger.info("decoded %d training images from %s", len(data), config.data_dirs)
    val_images = None
    if config.val_dir is not None:
        val_images = _center_crops(config.val_dir, config.val_images, config.val_crop)

    model = build_model(config.arch, config.N, config.M)
    model.train()
    head = ClassificationHead(config.M, len(cls_data.classes)) if cls_data is not None else None
    main_params, aux_params = _split_parameters(model)
    if head is not None:
        main_params += list(head.parameters())
    optimizer = torch.optim.Adam(main_params, lr=config.lr_at(0))
    aux_optimizer = torch.optim.Adam(aux_params, lr=config.aux_lr)
    generator = torch.Generator().manual_seed(config.seed)

    step, elapsed_before = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if head is not None:
            if ckpt.get("classes") != cls_data.classes:
                raise ValueError(f"cls_dir classes {cls_data.classes} differ from the checkpoint's {ckpt.get('classes')}")
            head.load_state_dict(ckpt["head"])
        optimizer.load_state_dict(ckpt["optimizer"])
        aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        generator.set_state(ckpt["rng"]["sampler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        step, elapsed_before = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0))
        logger.info("resumed from %s at step %d", ckpt_path, step)
    for group in aux_optimizer.param_groups:
        group["lr"] = config.aux_lr
    out_dir.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "aux_optimizer": aux_optimizer.state_dict(),
            "step": step,
            "elapsed": elapsed_before + (time.perf_counter() - t0),
            "config": config.to_dict(),
            "rng": {"sampler": generator.get_state(), "torch": torch.get_rng_state()},
        }
        if head is not None:
            state["head"] = head.state_dict()
            state["classes"] = list(cls_data.classes)
        atomic_torch_save(state, ckpt_path)
        logger.debug("checkpoint written at step %d", step)

    t0 = time.perf_counter()
    start_step = step
    window = _Window()
    last: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    stopped = False
    num_pixels = config.batch_size * config.crop * config.crop
    for step_index in _steps(step, config.steps, config):
        lr = config.lr_at(step_index)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, _ = data.sample(config.batch_size, config.crop, generator)
        out = model(x)
        mse = F.mse_loss(out["x_hat"], x)
        bpp = _bpp(out["likelihoods"], num_pixels)
        loss = config.lmbda * 255.0**2 * mse + bpp
        ce = None
        if head is not None:
            xc, labels = cls_data.sample(config.batch_size, config.crop, generator)
            ce = F.cross_entropy(head(model.g_a(xc)), labels)
            loss = loss + config.cls_weight * ce
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step_index}; the checkpoint is not updated")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip:
            nn.utils.clip_grad_norm_(main_params, config.clip)
        optimizer.step()
        aux_optimizer.zero_grad(set_to_none=True)
        aux = model.aux_loss()
        aux.backward()
        aux_optimizer.step()
        step = step_index + 1

        stats = {"loss": loss.item(), "bpp": bpp.item(), "mse": mse.item(), "aux": aux.item()}
        stats["psnr"] = _psnr(stats["mse"])
        if ce is not None:
            stats["ce"] = ce.item()
        window.add(**stats)
        elapsed = elapsed_before + (time.perf_counter() - t0)
        if step % config.log_every == 0 or step == config.steps:
            last = {"step": step, **window.means(), "lr": lr, "elapsed": round(elapsed, 2)}
            append_jsonl(log_path, last)
            logger.info("step %d loss %.4f bpp %.4f psnr %.2f aux %.2f", step, last["loss"], last["bpp"], last["psnr"], last["aux"])
            window = _Window()
        if val_images is not None and (step % config.val_every == 0 or step == config.steps):
            val = {"step": step, "val": True, **_validate(model, val_images), "elapsed": round(elapsed, 2)}
            append_jsonl(log_path, val)
            logger.info("step %d validation: bpp %.4f psnr %.2f", step, val["bpp"], val["psnr"])
        stopped = should_stop is not None and should_stop()
        if step % config.ckpt_every == 0 or step == config.steps or stopped:
            save()
        if stopped:
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
    }


# ----------------------------------------------------------------------------- export


class ExportInfo(NamedTuple):
    """Result of an export: where it went, its full SHA-256 and its size in bytes."""

    path: str
    sha256: str
    size: int


def load_model(checkpoint_path: str | os.PathLike[str]) -> nn.Module:
    """The codec of a training checkpoint (or of a run's out_dir), in eval mode.

    Example:
        >>> model = load_model("runs/default")  # doctest: +SKIP
    """
    ckpt = load_checkpoint(checkpoint_path)
    config = TrainConfig.from_dict(ckpt["config"])
    model = build_model(config.arch, config.N, config.M)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def _save_export(state: dict[str, torch.Tensor], out_path: str | os.PathLike[str]) -> ExportInfo:
    path = Path(out_path)
    atomic_torch_save(state, path)
    info = ExportInfo(str(path), *sha256_file(path))
    logger.info("exported %s (%d bytes, sha256 %s)", info.path, info.size, info.sha256)
    return info


def export_analysis_transform(
    checkpoint_path: str | os.PathLike[str], out_path: str | os.PathLike[str], keep_prefix: bool = False
) -> ExportInfo:
    """Write the analysis transform ``g_a`` of a checkpoint as a float32 state_dict.

    Args:
        checkpoint_path: a training checkpoint (or the run's out_dir).
        out_path: destination file (written atomically with ``torch.save``).
        keep_prefix: keep the ``g_a.`` key prefix; by default keys are relative to ``g_a``
            so that ``model.g_a.load_state_dict(state, strict=True)`` works.

    Returns:
        :class:`ExportInfo` (path, sha256, size).

    Example:
        >>> info = export_analysis_transform("runs/default", "g_a.pt")  # doctest: +SKIP
    """
    model = load_model(checkpoint_path)
    prefix = "g_a."
    state = {
        (key if keep_prefix else key[len(prefix):]): value.detach().to(torch.float32).clone()
        for key, value in model.state_dict().items()
        if key.startswith(prefix)
    }
    return _save_export(state, out_path)


def export_codec(checkpoint_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> ExportInfo:
    """Write the full codec state_dict after ``model.update(force=True)`` (ready for compress).

    The file loads with ``build_model(arch, N, M).load_state_dict(torch.load(path, weights_only=True))``.

    Returns:
        :class:`ExportInfo` (path, sha256, size).

    Example:
        >>> info = export_codec("runs/default", "codec.pt")  # doctest: +SKIP
    """
    model = load_model(checkpoint_path)
    model.update(force=True)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    return _save_export(state, out_path)
