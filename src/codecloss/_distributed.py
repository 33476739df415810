"""Evaluation under ``torchrun``: shard work units across ranks, gather the results in one-process order.

Unit ``g`` of ``n`` goes to rank ``g % world`` (strided, no padding), so every rank gets units in
increasing order and :func:`gather_in_order` can interleave them back. Results travel as Python
objects over a gloo process group (also when the models run on CUDA: they are small).
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = ["gather_in_order", "init_from_env", "local_device", "rank_and_world", "shard"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, ``(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1), with gloo.

    Returns:
        (rank, world size); ``(0, 1)`` outside torchrun. Idempotent.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (dist.is_available() and dist.is_initialized()):
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        dist.init_process_group("gloo")
        atexit.register(_leave)
        logger.info("rank %d of %d joined the gloo process group", dist.get_rank(), dist.get_world_size())
    return rank_and_world()


def _leave() -> None:
    """Destroy the process group at interpreter exit.

    Left to the interpreter's teardown, gloo's worker threads may still be joinable when their C++
    destructors run, and the process aborts with "terminate called without an active exception".
    """
    if dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: str | torch.device) -> torch.device:
    """``device``, with a bare ``"cuda"`` mapped to this rank's GPU (``LOCAL_RANK``) under torchrun."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and rank_and_world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(count: int) -> range:
    """Indices of the units of ``count`` that this rank computes (all of them in one process)."""
    rank, world = rank_and_world()
    return range(rank, count, world)


def gather_in_order(local: Sequence[T]) -> list[T]:
    """Every rank's results of its :func:`shard`, interleaved back into unit order, on every rank.

    Args:
        local: this rank's results, one per unit of its shard, in shard order.

    Returns:
        All results in unit order (``list(local)`` in one process).
    """
    rank, world = rank_and_world()
    if world == 1:
        return list(local)
    parts: list[list[T]] = [[] for _ in range(world)]
    dist.all_gather_object(parts, list(local))
    total = sum(len(part) for part in parts)
    return [parts[unit % world][unit // world] for unit in range(total)]
