"""``codecloss train-codec`` under torchrun: 2 gloo processes on 127.0.0.1, a few steps, exact resume."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from codecloss.train.codec import ImageBank, TrainConfig, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "codecloss", "train-codec", *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp") / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        small = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 48), Image.BILINEAR).save(folder / f"img{i}.png")
    return folder


def _args(images: Path, out: Path, steps: int) -> list[str]:
    return [
        "--out", str(out), "--data", str(images), "--val-dir", "none", "--N", "16", "--M", "16", "--crop", "32",
        "--batch-size", "4", "--steps", str(steps), "--log-every", "1", "--ckpt-every", "2", "--num-threads", "1",
        "--no-progress", "--json",
    ]


def _rank(rank: int, port: int, config: TrainConfig, resume: bool) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    train(config, resume=resume)


def _forked_ranks(config: TrainConfig, resume: bool = False) -> None:
    """The same 2-rank job as torchrun runs, in forked processes (no second import of torch and compressai)."""
    context = mp.get_context("fork")
    port = _free_port()
    workers = [context.Process(target=_rank, args=(rank, port, config, resume)) for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]


def test_two_gloo_ranks_train_and_resume_exactly(images, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = _torchrun(*_args(images, straight, 4))
    # rank 0 alone reports: one JSON summary on stdout
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and json.loads(lines[0])["world_size"] == 2
    a = load_checkpoint(straight)
    assert a["step"] == 4 and a["world_size"] == 2
    # every rank's random streams are saved, and the ranks draw different crops
    assert len(a["rank_rng"]) == 2
    assert not torch.equal(a["rank_rng"][0]["sampler"], a["rank_rng"][1]["sampler"])

    # the same job stopped after 2 steps and resumed to 4 ends with the same weights
    config = dataclasses.replace(TrainConfig.from_dict(a["config"]), out_dir=str(resumed), steps=2)
    _forked_ranks(config)
    _forked_ranks(dataclasses.replace(config, steps=4), resume=True)
    b = load_checkpoint(resumed)
    assert b["step"] == 4
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6)
    log = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # written once (rank 0), continued after resume

    # the 2-rank checkpoint cannot be resumed by one process: its random streams would not match
    with pytest.raises(ValueError, match="written by 2 rank"):
        train(dataclasses.replace(config, steps=5), resume=True)


def test_shards_are_disjoint_and_cover_the_data(images):
    whole = ImageBank.from_folders([images])
    shards = [ImageBank.from_folders([images], shard=(rank, 2)) for rank in range(2)]
    assert [len(s) for s in shards] == [2, 2]
    def pixels(bank: ImageBank) -> list[int]:
        return sorted(img.sum().item() for img in bank.images)

    assert sorted(pixels(shards[0]) + pixels(shards[1])) == pixels(whole)
    assert not set(pixels(shards[0])) & set(pixels(shards[1]))
