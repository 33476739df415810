"""Compute dtypes of the feature path: the ``dtype=`` option, autocast, and where bfloat16 pays.

The feature path runs its convolutions and GDN in the autocast dtype (or the ``dtype=`` of a loss or
metric, which enters the same autocast). float32 appears only where the error analysis needs it:
accumulation (inside the matrix kernels, including GDN's sum of squares; in the reductions of the
content terms) and Gram matrices. GDN's norm needs no float32 island: see :class:`~codecloss.gdn.FrozenGDN`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Union

import torch

__all__ = ["COMPUTE_DTYPES", "TASK_DTYPES", "DtypeArg", "check_dtype", "compute_context", "fast_bf16_available",
           "resolve_task_dtype"]

logger = logging.getLogger(__name__)

#: What ``dtype=`` accepts (``None``: float32, or the caller's autocast dtype).
COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

DtypeArg = Union[torch.dtype, None]

#: What a training or optimisation task's ``--dtype`` accepts for its loss network.
TASK_DTYPES = ("auto", "float32", "bfloat16")

#: Compute dtypes that need a device type other than CPU (no fast CPU kernels, untested there).
_DEVICE_ONLY = {torch.float16: ("cuda",)}


def check_dtype(dtype: object, argument: str = "dtype") -> DtypeArg:
    """Validate a ``dtype=`` argument: ``None``, ``torch.float32``, ``torch.bfloat16`` or ``torch.float16`` (CUDA)."""
    if dtype is not None and dtype not in COMPUTE_DTYPES:
        names = ", ".join(str(d) for d in COMPUTE_DTYPES)
        raise TypeError(f"{argument}: expected None or one of {names}, got {dtype!r}")
    return dtype  # type: ignore[return-value]


def compute_context(dtype: DtypeArg, device: torch.device, argument: str = "dtype") -> contextlib.AbstractContextManager:
    """The context to run the feature path in on ``device``: nothing for ``None`` (the caller's autocast
    applies), autocast off for float32, else autocast to ``dtype``.

    Raises:
        ValueError: ``dtype`` not supported on ``device`` (float16 off CUDA).
    """
    if dtype is None:
        return contextlib.nullcontext()
    if dtype in _DEVICE_ONLY and device.type not in _DEVICE_ONLY[dtype]:
        raise ValueError(f"{argument}: {dtype} is not supported on {device.type}; use torch.bfloat16 or torch.float32")
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def fast_bf16_available(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matrix work is natively fast on ``device``, so that choosing it pays.

    True on CUDA devices with bfloat16 support and on CPUs with AVX512-BF16 or AMX; False elsewhere
    (e.g. AVX2-only CPUs, where bfloat16 is converted to float32 and back, slower than float32).

    Example:
        >>> isinstance(fast_bf16_available("cpu"), bool)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_task_dtype(choice: str, device: torch.device | str = "cpu", argument: str = "--dtype") -> torch.dtype:
    """The loss network's compute dtype for a task's ``--dtype`` choice (one of :data:`TASK_DTYPES`).

    ``"auto"`` is bfloat16 where :func:`fast_bf16_available` says it pays on ``device``, else float32.

    Example:
        >>> resolve_task_dtype("float32")
        torch.float32
    """
    if choice not in TASK_DTYPES:
        raise ValueError(f"{argument}: expected one of {', '.join(TASK_DTYPES)}, got {choice!r}")
    if choice == "auto":
        return torch.bfloat16 if fast_bf16_available(device) else torch.float32
    if choice == "bfloat16" and not fast_bf16_available(device):
        logger.warning("%s bfloat16: %s has no fast bfloat16 units (e.g. an AVX2-only CPU), where bfloat16 runs "
                       "several times slower than float32; '%s auto' picks float32 here", argument, device, argument)
    return getattr(torch, choice)
