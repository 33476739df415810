"""Cost of one training step of a small x4 SR network: L1 vs L1 + codec loss vs L1 + VGG19 feature loss.

One step = SR forward, loss (L1, plus the frozen feature network's term on SR and HR), backward into the
SR network, Adam step. The SR network is the SR study's :class:`codecloss.tasks.sr_net.SRNet`; the feature
losses are the study's (:func:`codecloss.tasks.sr_losses.build_feature_loss`: codec = default backbone,
gdn1-3 with L1 criterion; vgg19 = VGG19 conv5_4, ESRGAN's, random init: the cost does not depend on weights).
Reports median and IQR step time (CUDA-synchronised on GPU) and peak device memory per loss and dtype.

Usage::

    python benchmarks/sr_step.py --device cuda --dtype float32 bfloat16 --out results/sr_step.json
    python benchmarks/sr_step.py --device cpu --batch 2 --lr-size 32 --reps 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codecloss.tasks.sr_losses import build_feature_loss
from codecloss.tasks.sr_net import SRNet

LOSSES = ("l1", "codec", "vgg19")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(loss_name: str, device: torch.device, dtype: str, batch: int, lr_size: int, reps: int, warmup: int) -> dict:
    """Median/IQR seconds of one training step and peak CUDA memory for one loss."""
    torch.manual_seed(0)
    net = SRNet(channels=64, blocks=16).to(device)
    feature_loss, description = build_feature_loss(loss_name, seed=0)
    if feature_loss is not None:
        feature_loss = feature_loss.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    lr = torch.rand(batch, 3, lr_size, lr_size, device=device)
    hr = torch.rand(batch, 3, 4 * lr_size, 4 * lr_size, device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16"
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            sr = net(lr)
            loss = F.l1_loss(sr, hr)
            if feature_loss is not None:
                loss = loss + feature_loss(sr, hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"loss": loss_name, "feature_loss": description.get("feature_loss"), "device": str(device),
            "dtype": dtype, "batch": batch, "lr_size": lr_size, "hr_size": 4 * lr_size, "reps": reps,
            "median_s": statistics.median(times), "iqr_s": quartiles[2] - quartiles[0],
            "peak_memory_mb": (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", nargs="+", choices=("float32", "bfloat16"), default=["float32"])
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--batch", type=int, default=16, help="LR crops per step (default 16)")
    parser.add_argument("--lr-size", type=int, default=48, help="LR crop side; HR is 4x (default 48 -> 192)")
    parser.add_argument("--reps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    records = []
    for dtype in args.dtype:
        l1_time = None
        for name in args.losses:
            record = measure(name, device, dtype, args.batch, args.lr_size, args.reps, args.warmup)
            l1_time = record["median_s"] if name == "l1" else l1_time
            record["vs_l1"] = None if l1_time is None else record["median_s"] / l1_time
            records.append(record)
            print(json.dumps(record), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"torch": torch.__version__, "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
