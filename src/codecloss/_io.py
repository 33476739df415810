"""Writing files: atomically (a crash never leaves a half-written one behind), and JSON-lines logs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["append_jsonl", "atomic_torch_save"]


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` into a temporary file beside ``path``, fsync, then rename over ``path``.

    Args:
        obj: what to save (tensors, dicts of tensors and plain Python values).
        path: destination; its folder is created if needed.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> atomic_torch_save({"w": torch.zeros(1)}, "/tmp/w.pth")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path`` (a training log)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
