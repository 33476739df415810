"""How each feature tap would push an x4 SR output, measured where the SR study's network starts (bicubic).

For every codec tap (trained default backbone and its random-init control) and ESRGAN's VGG19 conv5_4
(random init), prints the input-gradient norm of the tap's L1 feature loss next to L1's, the cosine
between the two gradients, and the share of each gradient's power above 1/4 Nyquist. This is the
measurement behind ``codecloss.tasks.sr_losses.CODEC_LAYERS``::

    OMP_NUM_THREADS=1 python benchmarks/sr_taps.py --train ../shared/data/natural/bsds500/train
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

from codecloss import CodecPerceptualLoss, list_layers
from codecloss.tasks.sr_losses import VGGFeatureL1, gradient_profile
from codecloss.tasks.sr_net import CropSampler, load_training_images, upscale_bicubic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", default="../shared/data/natural/bsds500/train", help="training photos")
    parser.add_argument("--batches", type=int, default=2, help="batches of 8 crops of 96 px (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sampler = CropSampler(load_training_images(args.train, 96), 96, 8, 4, args.seed)
    batches = [sampler(k) for k in range(args.batches)]

    def profile(loss: torch.nn.Module) -> dict[str, float]:
        rows = [gradient_profile(loss, upscale_bicubic(lr, 4), hr) for lr, hr in batches]
        return {k: round(sum(r[k] for r in rows) / len(rows), 5) for k in rows[0]}

    results = {}
    for weights in ("default", None):
        for tap in (t.name for t in list_layers()):
            torch.manual_seed(args.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                loss = CodecPerceptualLoss(layers=[tap], weights=weights, content="l1")
            results[f"codec {'trained' if weights else 'random'} {tap}"] = profile(loss)
    results["vgg19 random conv5_4"] = profile(VGGFeatureL1("vgg19", None, args.seed))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
