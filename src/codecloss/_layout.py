"""Memory-layout helpers: NCHW/NHWC detection, per-pixel row views, and cache-sized chunks.

On CPU, each fresh tensor of tens of MiB costs page faults (glibc serves it with ``mmap``), often more
than the arithmetic done on it. Element-wise chains over large feature maps therefore run on
cache-sized chunks of pixels and write into preallocated outputs; on other devices, and under
``torch.compile``, one chunk is the whole map.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

__all__ = ["CHUNK_ELEMENTS", "chunks", "dense", "is_channels_last", "memory_format_of", "pixel_rows"]

#: Elements per chunk on CPU (1 MiB of float32: fits in a core's L2 cache).
CHUNK_ELEMENTS = 1 << 18


def is_channels_last(x: Tensor) -> bool:
    """Whether a 4-D tensor is laid out NHWC (channels_last) and not also plain contiguous."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def memory_format_of(x: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for NHWC tensors, else ``torch.contiguous_format``."""
    return torch.channels_last if is_channels_last(x) else torch.contiguous_format


def dense(x: Tensor) -> Tensor:
    """``x`` itself when it is contiguous NCHW or NHWC, else a contiguous NCHW copy."""
    return x if is_channels_last(x) else x.contiguous()


def pixel_rows(x: Tensor) -> Tensor:
    """(N, H*W, C) view of a :func:`dense` (N, C, H, W) map: one row of channels per pixel."""
    n, c, h, w = x.shape
    if is_channels_last(x):
        return x.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return x.view(n, c, h * w).transpose(1, 2)


def chunks(rows: Tensor) -> Iterator[slice]:
    """Slices along dim 1 of (N, P, C) ``rows`` holding about :data:`CHUNK_ELEMENTS` each in eager mode on CPU;
    one slice elsewhere and under ``torch.compile`` (which fuses the element-wise work itself)."""
    n, length, width = rows.shape
    whole = rows.device.type != "cpu" or torch.compiler.is_compiling()
    step = max(1, length) if whole else max(1, CHUNK_ELEMENTS // max(1, n * width))
    for start in range(0, length, step):
        yield slice(start, start + step)
