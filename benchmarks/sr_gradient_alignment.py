"""How each SR feature loss pushes the pretrained x4 network's outputs, compared with L1 (issue 21).

For every loss (and every codec tap alone) this prints the cosine between its input gradient and L1's at the
pretrained network's outputs on training crops, and each gradient's share of power above 1/4 Nyquist
(:func:`codecloss.tasks.sr_losses.gradient_profile`, the measurement ``sr-study`` calibrates its weights with)::

    CODECLOSS_TRUNKS=../shared/data/reference/imagenet_features \\
        python benchmarks/sr_gradient_alignment.py runs/sr/pretrain.pth --out benchmarks/results/sr_gradient_alignment.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path

import torch

from codecloss import CodecPerceptualLoss
from codecloss._data_paths import NATURAL_TRAIN_DIRS
from codecloss.reference.trunks import trunk_file
from codecloss.tasks import load_upscaler
from codecloss.tasks.sr_losses import build_feature_loss, gradient_profile
from codecloss.tasks.sr_net import CropSampler, load_training_images

LOSSES = ["codec", "codec-l2n", "codec-small", "codec-random", "vgg16-relu2_2", "vgg16-conv5_3", "lpips-vgg"]
TAPS = ["gdn1", "gdn2", "gdn3", "y"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="the pretrained x4 network (sr-study --pretrain writes pretrain.pth)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--batches", type=int, default=4, help="batches of 16 crops of 96 px (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = load_upscaler(args.model)
    images = [im for folder in NATURAL_TRAIN_DIRS for im in load_training_images(folder, 96)]
    sampler = CropSampler(images, patch=96, batch=16, scale=4, seed=0)
    batches = []
    for step in range(args.batches):
        lr, hr = sampler(step)
        with torch.no_grad():
            batches.append((net(lr), hr))
    vgg16 = trunk_file("vgg16")
    if vgg16 is None:
        parser.error("the vgg16 rows need the ImageNet trunk: set CODECLOSS_TRUNKS")
    losses = {name: build_feature_loss(name, seed=0, vgg16_weights=vgg16)[0] for name in LOSSES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for tap in TAPS:
            losses[f"codec[{tap}]"] = CodecPerceptualLoss(layers={tap: 1.0}, content="l1")  # as the codec row
    rows = {}
    for name, loss in losses.items():
        profiles = [gradient_profile(loss, sr, hr) for sr, hr in batches]
        rows[name] = {key: statistics.fmean(p[key] for p in profiles) for key in profiles[0]}
        print(f"{name:16s} cosine to L1 {rows[name]['cosine_l1']:+.3f}   HF share {rows[name]['hf_fraction']:.3f} "
              f"(L1 {rows[name]['hf_fraction_l1']:.3f})", flush=True)
    args.out.write_text(json.dumps({"command": "python benchmarks/sr_gradient_alignment.py " + str(args.model),
                                    "batches": args.batches, "crops": "16 x 96 px, CropSampler seed 0, steps 0..",
                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
