"""Writing files: atomically (a crash never leaves a half-written one behind), images and JSON-lines logs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["append_jsonl", "atomic_save_image", "atomic_torch_save", "check_image_output"]


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


def check_image_output(output: str | os.PathLike[str]) -> Path:
    """Fail before the work, not after it, on an image output that cannot be written (``output: ...`` errors).

    Returns:
        ``output`` as a :class:`~pathlib.Path`.
    """
    from PIL import Image

    output = Path(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output: no such folder {str(output.parent)!r}")
    if output.suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"output: unknown image type {output.suffix!r} in {str(output)!r}; use e.g. .png or .jpg")
    return output


def atomic_save_image(image: torch.Tensor, output: str | os.PathLike[str]) -> None:
    """Save (N, 3, H, W) or (3, H, W) images in [0, 1] to ``output`` via a temporary file and a rename.

    Example:
        >>> atomic_save_image(torch.rand(1, 3, 8, 8), "/tmp/x.png")  # doctest: +SKIP
    """
    from torchvision.utils import save_image

    output = Path(output)
    tmp = output.with_name(f".{output.stem}.{os.getpid()}.tmp{output.suffix}")
    try:
        save_image(image, tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
