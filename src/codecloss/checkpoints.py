"""Checkpoint files: what makes a ``weights=`` string a path, and reading a file into a flat state_dict.

Shared by :mod:`codecloss.backbones` and :mod:`codecloss.weights` (below both of them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Union

import torch
from compressai.zoo.pretrained import load_pretrained
from torch import Tensor

__all__ = ["CHECKPOINT_SUFFIXES", "WeightsArg", "is_weights_path", "load_codec_state_dict"]

#: What ``weights=`` accepts: ``"default"``, a registry name, a file path, or ``None`` (random init).
WeightsArg = Union[str, os.PathLike, None]

#: File name endings that make a ``weights=`` string a path (registry names may not end in them).
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar")


def is_weights_path(weights: str | os.PathLike) -> bool:
    """Whether a ``weights=`` value names a file (a path-like, a separator, a checkpoint suffix or an existing file)
    rather than a registry entry."""
    if isinstance(weights, os.PathLike):
        return True
    return os.sep in weights or weights.endswith(CHECKPOINT_SUFFIXES) or Path(weights).is_file()


def load_codec_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and return its flat state_dict.

    Accepts CompressAI zoo files, CompressAI training checkpoints (``{"state_dict": ...}``),
    codecloss training checkpoints (``{"model": ...}``) and codecloss exports; applies CompressAI's key renames for old checkpoints.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no such file {str(path)!r}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"weights: {str(path)!r} holds a {type(checkpoint).__name__}, expected a state_dict")
    for key in ("state_dict", "model"):  # CompressAI / codecloss training checkpoints
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise ValueError(f"weights: {str(path)!r} is not a state_dict of tensors")
    return load_pretrained(dict(checkpoint))  # CompressAI's renames of old keys
