"""Reading training checkpoints and exporting their codec or analysis transform."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from codecloss._io import atomic_torch_save
from codecloss.train.config import TrainConfig
from codecloss.train.model import build_model
from codecloss.weights.integrity import sha256_file

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "ExportInfo",
    "export_analysis_transform",
    "export_codec",
    "load_checkpoint",
    "load_config",
    "load_model",
]

logger = logging.getLogger(__name__)

#: File name of the training checkpoint inside ``out_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
#: File name of the JSON-lines training log inside ``out_dir``.
LOG_NAME = "log.jsonl"


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a training checkpoint written by :func:`codecloss.train.codec.train` (``weights_only=True``)."""
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


def export_codec(
    checkpoint_path: str | os.PathLike[str], out_path: str | os.PathLike[str], half: bool = False
) -> ExportInfo:
    """Write the full codec state_dict after ``model.update(force=True)`` (ready for compress).

    The file loads with ``build_model(arch, N, M).load_state_dict(torch.load(path, weights_only=True))``.

    Args:
        checkpoint_path: a training run folder or its checkpoint file.
        out_path: the file to write.
        half: store the parameters in float16 (half the size; loading casts them back to the
            model's float32). The entropy tables are computed from the rounded parameters, so
            the file codes exactly as it loads. Buffers (reparametrisation constants, tables) keep
            their dtype: GDN's pedestal, 2**-36, would flush to zero in float16.

    Returns:
        :class:`ExportInfo` (path, sha256, size).

    Example:
        >>> info = export_codec("runs/default", "codec.pt")  # doctest: +SKIP
    """
    model = load_model(checkpoint_path)
    parameters = {name for name, _ in model.named_parameters()}
    if half:
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(param.half().float())
    model.update(force=True)
    state = {
        key: (value.half() if half and key in parameters else value).detach().clone()
        for key, value in model.state_dict().items()
    }
    return _save_export(state, out_path)
