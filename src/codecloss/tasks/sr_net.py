"""The x4 super-resolution network, the bicubic degradation and the training crops of the SR study.

The network is EDSR-baseline-style (Lim et al., "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017: conv head, residual blocks without batch norm, conv + pixel-shuffle
upsampler), narrower and shallower to train on a CPU, plus a global bicubic skip with a zero-initialised
tail, so that at initialisation the network outputs exactly the bicubic upsampling and every loss starts
from the same point.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEGRADATION", "CropSampler", "SRNet", "downscale", "load_training_folders", "load_training_images", "mod_crop",
           "upscale_bicubic"]

#: How low-resolution images are made, for training and evaluation alike.
DEGRADATION = (
    "torch.nn.functional.interpolate(mode='bicubic', antialias=True, align_corners=False) downscale "
    "(the Keys a=-0.5 kernel widened by the scale, as PIL's BICUBIC resize and MATLAB imresize), "
    "then rounded to 8 bits"
)


def downscale(hr: Tensor, scale: int) -> Tensor:
    """Bicubic, antialiased downscale by ``scale``, rounded to 8-bit levels (see :data:`DEGRADATION`).

    Args:
        hr: (N, 3, H, W) images in [0, 1], H and W multiples of ``scale``.
        scale: integer factor.

    Returns:
        (N, 3, H / scale, W / scale) images in [0, 1].
    """
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"hr: expected height and width divisible by scale={scale}, got {h}x{w}")
    lr = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return lr.clamp(0, 1).mul(255).round().div(255)


def upscale_bicubic(lr: Tensor, scale: int) -> Tensor:
    """Plain bicubic upsampling (``align_corners=False``), clamped to [0, 1]: the baseline and the network's skip."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def mod_crop(image: Tensor, scale: int) -> Tensor:
    """Crop the bottom/right of a (..., H, W) image to multiples of ``scale`` (the SR benchmark convention)."""
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRNet(nn.Module):
    """EDSR-baseline-style x4 network with a global bicubic skip.

    Args:
        channels: feature channels (EDSR-baseline: 64).
        blocks: residual blocks (EDSR-baseline: 16).
        scale: upscaling factor, a power of 2.

    Example:
        >>> net = SRNet(channels=16, blocks=2)
        >>> net(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(self, channels: int = 32, blocks: int = 6, scale: int = 4) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"scale: expected a power of 2 >= 2, got {scale!r}")
        if channels < 1 or blocks < 0:
            raise ValueError(f"channels, blocks: expected >= 1 and >= 0, got {channels!r}, {blocks!r}")
        self.scale, self.channels, self.blocks = scale, channels, blocks
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(channels) for _ in range(blocks)], nn.Conv2d(channels, channels, 3, padding=1))
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            up += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: Tensor) -> Tensor:
        """Super-resolve (N, 3, h, w) images in [0, 1] to (N, 3, h * scale, w * scale) (not clamped)."""
        x = self.head(lr - 0.5)
        x = x + self.body(x)
        return self.tail(self.upsample(x)) + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    @property
    def halo(self) -> int:
        """LR pixels on each side beyond which an output pixel does not depend on the input.

        The LR convolutions (head, two per block, body end, first upsampler) reach ``2 * blocks + 3`` px, the
        finer ones less than one LR pixel together, the bicubic skip 2 px; one more for safety.
        """
        return 2 * self.blocks + 7

    def config(self) -> dict[str, int]:
        """The arguments that rebuild this network."""
        return {"channels": self.channels, "blocks": self.blocks, "scale": self.scale}


def load_training_images(folder: str | os.PathLike, min_side: int) -> list[Tensor]:
    """Decode every image under ``folder`` (recursively, sorted by path) once, as (3, H, W) uint8 tensors.

    Images with a side shorter than ``min_side`` are skipped.

    Args:
        folder: folder of training photos.
        min_side: the HR crop size.

    Returns:
        The decoded images.
    """
    from codecloss.evaluate.images import IMAGE_SUFFIXES, read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--train: no such folder {str(folder)!r}")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    images = [(read_image(p) * 255).round().to(torch.uint8) for p in paths]
    images = [im for im in images if min(im.shape[-2:]) >= min_side]
    if not images:
        raise ValueError(f"--train: no image of at least {min_side}x{min_side} px under {str(folder)!r}")
    return images


def load_training_folders(folders: Sequence[str | os.PathLike], min_side: int) -> list[Tensor]:
    """:func:`load_training_images` of every folder, in order (``--train DIR ...``)."""
    if not folders:
        raise ValueError("--train: expected at least one folder")
    return [image for folder in folders for image in load_training_images(folder, min_side)]


class CropSampler:
    """Deterministic random HR crops (with one of the 8 flips/rotations) and their LR versions.

    Batch ``step`` depends only on ``(seed, step)``: every loss sees the same data in the same order,
    and resuming at step ``k`` needs nothing but ``k``.

    Args:
        images: (3, H, W) uint8 training images.
        patch: HR crop side (a multiple of ``scale``).
        batch: crops per batch.
        scale: downscaling factor.
        seed: data seed.
    """

    def __init__(self, images: Sequence[Tensor], patch: int, batch: int, scale: int, seed: int) -> None:
        if patch % scale:
            raise ValueError(f"patch: expected a multiple of the scale {scale}, got {patch!r}")
        self.images, self.patch, self.batch, self.scale, self.seed = list(images), patch, batch, scale, seed

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        """Batch number ``step``: ``(lr, hr)``, float32 (N, 3, patch / scale, ...) and (N, 3, patch, patch)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        crops = []
        for index in torch.randint(len(self.images), (self.batch,), generator=g).tolist():
            image = self.images[index]
            h, w = image.shape[-2:]
            top = int(torch.randint(h - self.patch + 1, (1,), generator=g))
            left = int(torch.randint(w - self.patch + 1, (1,), generator=g))
            crop = image[:, top : top + self.patch, left : left + self.patch]
            k, flip = torch.randint(4, (1,), generator=g).item(), torch.randint(2, (1,), generator=g).item()
            crop = torch.rot90(crop, int(k), dims=(1, 2))
            crops.append(crop.flip(2) if flip else crop)
        hr = torch.stack(crops).float() / 255
        return downscale(hr, self.scale), hr
