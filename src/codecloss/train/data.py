"""Training images decoded once into memory, seeded random crops, centre crops for validation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "ImageBank", "center_crops"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})


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
    def from_folders(
        cls, folders: Sequence[str | os.PathLike[str]], min_side: int = 0, shard: tuple[int, int] = (0, 1)
    ) -> "ImageBank":
        """Decode the images of ``folders``; images with a side below ``min_side`` are skipped.

        Args:
            folders: image folders, read in order, files sorted by name.
            min_side: skip images smaller than this.
            shard: ``(index, count)``: keep every ``count``-th file from the ``index``-th on
                (a data-parallel rank's disjoint share); ``(0, 1)`` keeps all.
        """
        index, count = shard
        paths = [p for folder in folders for p in _list_images(folder)][index::count]
        images = cls._decode_all(paths, min_side)
        if not images:
            where = f" (shard {index} of {count})" if count > 1 else ""
            raise ValueError(f"data_dirs {list(map(str, folders))!r}{where} hold no image with both sides >= {min_side}")
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


def center_crops(folder: str, count: int, side: int) -> torch.Tensor | None:
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
