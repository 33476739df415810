"""Data-parallel codec training under ``torchrun``: process group, per-rank device, agreement, RNG states.

One process per rank; ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
variables. The backend is gloo on CPU and NCCL on CUDA (each rank then uses ``cuda:LOCAL_RANK``).
Without those variables (or with ``WORLD_SIZE=1``) everything here is a no-op for a single process.

Example:
    >>> with session("cpu") as ctx:
    ...     ctx.world_size
    1
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["Session", "agree", "gather", "mean_over_ranks", "rng_state", "session", "set_rng_state", "wrap"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Session:
    """Where this process stands in a (possibly one-process) training job.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of ranks.
        device: the device this rank trains on.
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


@contextlib.contextmanager
def session(device: str) -> Iterator[Session]:
    """Join the ``torchrun`` process group when there is one (and leave it after).

    Args:
        device: ``"cpu"`` (gloo) or ``"cuda"``/``"cuda:K"`` (NCCL; under torchrun each rank uses
            ``cuda:LOCAL_RANK``).

    Yields:
        The :class:`Session` of this process. A group initialised by the caller is used as is.
    """
    cuda = device.startswith("cuda")
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1 and not dist.is_initialized():
        yield Session(0, 1, torch.device(device))
        return
    if cuda:
        local = torch.device("cuda", _env_int("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
    else:
        local = torch.device("cpu")
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        ctx = Session(dist.get_rank(), dist.get_world_size(), local)
        logger.debug("rank %d of %d on %s (%s)", ctx.rank, ctx.world_size, ctx.device, dist.get_backend())
        yield ctx
    finally:
        if created:
            dist.destroy_process_group()


def wrap(model: nn.Module, ctx: Session) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when there are several ranks, else ``model``.

    ``find_unused_parameters=True`` because the entropy bottleneck's quantiles get no gradient from
    the rate-distortion loss (they are trained by the auxiliary loss, identically on every rank).
    Buffers (GDN constants, entropy-coder tables) are synced once at construction, not every step.
    """
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=True, forward_sync_buffers=False
    )


def agree(flags: list[bool], ctx: Session) -> list[bool]:
    """For each flag, whether it is set on any rank (one all-reduce; identity for one process)."""
    if not ctx.distributed:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def mean_over_ranks(values: dict[str, float], ctx: Session) -> dict[str, float]:
    """Average each value over the ranks (every rank must pass the same keys)."""
    if not ctx.distributed:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return {k: v / ctx.world_size for k, v in zip(keys, tensor.tolist())}


def gather(obj: Any, ctx: Session) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """This rank's random streams: the crop sampler, torch's CPU RNG and, on CUDA, the device RNG."""
    state = {"sampler": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], generator: torch.Generator, device: torch.device) -> None:
    """Restore what :func:`rng_state` captured."""
    generator.set_state(state["sampler"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
