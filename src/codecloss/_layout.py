"""Memory-layout helpers: NCHW/NHWC detection, per-pixel row views, and pixel chunks.

On CPU, each fresh tensor of 32 MiB or more costs page faults (glibc serves it with ``mmap``), often more
than the arithmetic done on it. Element-wise chains over large feature maps therefore run on chunks of
pixels whose temporaries stay below that size, and write into preallocated outputs; on other devices,
and under ``torch.compile``, one chunk is the whole map.

Chunks are few and large on purpose: every operation on a chunk is an OpenMP parallel region ending in
a barrier, and on a busy machine a barrier waits for the slowest, possibly descheduled, thread. With
cache-sized chunks (256 Ki elements) a loss step of the default backbone on 4 x 256 x 256 images ran 831
operations, against 183 now and 222 (far larger ones) for VGG16, at the same single-thread speed
(``docs/benchmarks.md``, "CPU contention").
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

__all__ = ["CHUNK_ELEMENTS", "chunks", "dense", "is_channels_last", "memory_format_of", "pixel_rows"]

#: Elements per chunk on CPU (8 MiB of float32: temporaries stay below glibc's 32 MiB mmap threshold).
CHUNK_ELEMENTS = 1 << 21


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
