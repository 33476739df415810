"""Checkpoint files: what makes a ``weights=`` string a path, and reading a file into a flat state_dict.

Shared by :mod:`codecloss.backbones` and :mod:`codecloss.weights` (below both of them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from compressai.zoo.pretrained import load_pretrained
from torch import Tensor

__all__ = ["CHECKPOINT_SUFFIXES", "WeightsArg", "is_weights_path", "load_codec_state_dict", "load_torch_file"]

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


def _load_failure(err: Exception) -> str:
    """The one informative sentence of a ``torch.load`` error (they run to a paragraph)."""
    text = str(err).split("WeightsUnpickler error:", 1)[-1]
    sentence = " ".join(text.split()).split(". ")[0].rstrip(".")
    name = type(err).__name__
    return f"{name}: {sentence[:160]}" if sentence else f"{name}, the file is empty or cut short"


def load_torch_file(path: Path, argument: str, expected: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, failing with one line that names ``argument``.

    Args:
        path: an existing file.
        argument: the argument that named the file, for the message.
        expected: what the file should be, for the message.

    Returns:
        The loaded object.

    Example:
        >>> load_torch_file(Path("notes.txt"), "weights", "a state_dict")  # doctest: +SKIP
        ValueError: weights: 'notes.txt' is not a loadable PyTorch file (UnpicklingError: ...); expected ...
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise ValueError(
            f"{argument}: {str(path)!r} is not a loadable PyTorch file ({_load_failure(err)}); expected {expected} "
            "saved with torch.save, holding only tensors, dicts, lists and numbers (weights_only=True); "
            "re-save other files with torch.save(model.state_dict(), path)"
        ) from None


def load_codec_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and return its flat state_dict.

    Accepts CompressAI zoo files, CompressAI training checkpoints (``{"state_dict": ...}``),
    codecloss training checkpoints (``{"model": ...}``) and codecloss exports; applies CompressAI's key renames for old checkpoints.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no such file {str(path)!r}")
    checkpoint = load_torch_file(
        path, "weights", "a codec state_dict (a CompressAI zoo file, a training checkpoint or a codecloss export)"
    )
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"weights: {str(path)!r} holds a {type(checkpoint).__name__}, expected a state_dict")
    for key in ("state_dict", "model"):  # CompressAI / codecloss training checkpoints
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise ValueError(f"weights: {str(path)!r} is not a state_dict of tensors")
    return load_pretrained(dict(checkpoint))  # CompressAI's renames of old keys
