"""The loss inside real training set-ups: torch.compile, autocast, DDP with 2 gloo processes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import codecloss
from codecloss import CodecPerceptualLoss


def test_torch_compile_matches_eager() -> None:
    loss = CodecPerceptualLoss(codecloss.DEFAULT_BACKBONE, weights=None, style_weight=1.0)
    compiled = torch.compile(loss, backend="aot_eager")
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    y = torch.rand(2, 3, 32, 32)
    value = compiled(x, y)
    value.backward()
    torch.testing.assert_close(value, loss(x, y), rtol=1e-5, atol=1e-7)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_training_step_with_autocast_lowers_loss() -> None:
    torch.manual_seed(0)
    loss_fn = CodecPerceptualLoss(codecloss.DEFAULT_BACKBONE, weights=None, layers=["gdn1", "gdn2"])
    model = torch.nn.Conv2d(3, 3, 3, padding=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    values = []
    for _ in range(15):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss_fn(model(x), target)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert values[-1] < values[0]
    assert all(not p.requires_grad for p in loss_fn.parameters())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(3, 3, 3, padding=1))
    loss_fn = CodecPerceptualLoss(codecloss.DEFAULT_BACKBONE, weights=None)  # outside the DDP wrapper
    torch.manual_seed(1 + rank)  # different data per rank
    x, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss_fn(model(x), target).backward()
    grad = model.module.weight.grad.clone()
    gathered = [torch.zeros_like(grad) for _ in range(world_size)]
    dist.all_gather(gathered, grad)
    results[rank] = (bool(torch.isfinite(grad).all()), all(torch.equal(g, grad) for g in gathered))
    dist.destroy_process_group()


def test_ddp_two_gloo_processes() -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), results), nprocs=2, join=True)
    assert dict(results) == {0: (True, True), 1: (True, True)}
