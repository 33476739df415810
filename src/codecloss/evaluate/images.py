"""Reading image files for the metric CLI and the evaluation harness."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from codecloss.cpips import as_image_tensor

__all__ = ["IMAGE_SUFFIXES", "center_crop", "list_images", "read_image", "read_image_uint8", "save_montage"]

#: File suffixes treated as images (case-insensitive).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})


def _decode(path: str | os.PathLike) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array (``convert("RGB")`` unless it is RGB already)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file {str(path)!r}")
    try:
        with Image.open(path) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from None


def read_image(path: str | os.PathLike) -> Tensor:
    """Decode an image file to a (3, H, W) float32 tensor in [0, 1] (``convert("RGB")``, uint8 / 255).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image.
    """
    return as_image_tensor(_decode(path), str(path))


def read_image_uint8(path: str | os.PathLike) -> Tensor:
    """Decode an image file to a (3, H, W) uint8 tensor (a quarter of the float32 memory), for
    :meth:`codecloss.CPIPS.forward_uint8`; errors as :func:`read_image`."""
    import torch

    return torch.tensor(_decode(path)).movedim(-1, 0)  # a writable copy (PIL's arrays are read-only)


def list_images(folder: str | os.PathLike) -> dict[str, Path]:
    """Image files directly inside ``folder``, by file name, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder {str(folder)!r}")
    files = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return {p.name: p for p in sorted(files)}


def center_crop(image: Tensor, crop: int | None) -> Tensor:
    """The centre ``crop`` x ``crop`` window of a (C, H, W) image (smaller sides are kept whole).

    Args:
        image: (C, H, W) tensor.
        crop: side of the window, ``None`` for the whole image.

    Returns:
        A view of ``image``.

    Example:
        >>> center_crop(torch.zeros(3, 10, 20), 8).shape  # doctest: +SKIP
        torch.Size([3, 8, 8])
    """
    if crop is None:
        return image
    h, w = image.shape[-2:]
    side_h, side_w = min(crop, h), min(crop, w)
    top, left = (h - side_h) // 2, (w - side_w) // 2
    return image[:, top:top + side_h, left:left + side_w]


def save_montage(rows: Sequence[Sequence[Tensor]], path: str | os.PathLike, side: int = 160) -> None:
    """Save a grid of images, one list per row, each shown as its centre square resized to ``side`` pixels.

    Args:
        rows: rows of (3, H, W) images in [0, 1]; every row has the same length.
        path: output file (PNG or JPEG).
        side: side of each tile in pixels.

    Example:
        >>> save_montage([[content, style, result]], "montage.jpg")  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F
    from torchvision.utils import save_image

    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise ValueError(f"rows: expected rows of equal length, got lengths {sorted(lengths)}")
    tiles = []
    for image in (image for row in rows for image in row):
        crop = center_crop(image, min(image.shape[-2:]))[None].float()
        tiles.append(F.interpolate(crop, size=(side, side), mode="bicubic", antialias=True, align_corners=False)[0])
    save_image(torch.stack(tiles).clamp(0, 1), path, nrow=lengths.pop(), padding=2, pad_value=1.0)
