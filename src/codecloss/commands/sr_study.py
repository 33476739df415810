"""``codecloss sr-study``: train one x4 SR network per loss on the same data, then score every one.

Examples::

    codecloss sr-study --losses l1 codec codec-random vgg19 --steps 600 \\
        --eval ../shared/data/sr/set5/HR ../shared/data/sr/set14 ../shared/data/eval/kodak --out runs/sr-study --json
    codecloss sr-study ... --out runs/sr-study --steps 1200     # same run folder: resumes and trains on
"""

from __future__ import annotations

import argparse
import json
from typing import Any

_COLUMNS = ("psnr_y", "ssim_y", "ms_ssim", "cpips", "sharpness")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sr-study`` subcommand."""
    from codecloss._progress import add_progress_argument
    from codecloss.tasks.sr_losses import LOSS_NAMES

    p = subparsers.add_parser(
        "sr-study",
        help="x4 super-resolution study: one network trained with each loss, scored on SR benchmarks",
        description=(
            "Train the same small EDSR-style x4 network with each loss (same init, data order and steps), "
            "then score it and bicubic upsampling on every --eval folder of HR images: Y-channel PSNR/SSIM "
            "(border shaved by the scale), RGB MS-SSIM, CPIPS and a spectral sharpness ratio, plus each loss's "
            "time and peak memory per training step. Runs in --out resume from their checkpoints. "
            f"Losses: {', '.join(f'{k} (L1 + {v})' if v else f'{k} (L1 alone)' for k, v in LOSS_NAMES.items())}."
        ),
    )
    p.add_argument("--losses", nargs="+", metavar="LOSS", default=["l1", "codec", "codec-random", "vgg19"],
                   help="losses to train (default: l1 codec codec-random vgg19)")
    p.add_argument("--steps", type=int, required=True, help="training steps of every loss")
    p.add_argument("--eval", nargs="+", metavar="DIR", required=True, dest="eval_dirs",
                   help="folders of HR evaluation images (e.g. set5/HR, set14, kodak)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, evaluation caches)")
    p.add_argument("--train", default="../shared/data/natural", dest="train_dir",
                   help="folder of training photos, searched recursively (default ../shared/data/natural)")
    p.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    p.add_argument("--patch", type=int, default=96, help="HR crop side, a multiple of 4 >= 64 (default 96)")
    p.add_argument("--channels", type=int, default=32, help="network width (default 32)")
    p.add_argument("--blocks", type=int, default=6, help="residual blocks (default 6)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, data order and random networks (default 0)")
    p.add_argument("--balance", type=float, default=1.0,
                   help="feature-loss input-gradient norm as a multiple of L1's at init (default 1)")
    p.add_argument("--vgg-weights", default=None, metavar="FILE",
                   help="torchvision VGG19 ImageNet state dict for the vgg19 loss (default: random init)")
    p.add_argument("--codec-backbone", default=None, metavar="ID",
                   help="backbone of the codec and codec-random losses (default: codecloss.DEFAULT_BACKBONE)")
    p.add_argument("--codec-weights", default="default", metavar="WEIGHTS",
                   help="weights of the codec loss: 'default', a registry name or a file (default 'default')")
    p.add_argument("--checkpoint-every", type=int, default=25, help="steps between checkpoints (default 25)")
    p.add_argument("--save-images", action="store_true", help="save every SR output as PNG under OUT/<loss>/images/")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    add_progress_argument(p)
    p.set_defaults(func=run)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(result: dict[str, Any]) -> str:
    lines = []
    for dataset, methods in result["eval"].items():
        lines.append(f"{dataset} ({next(iter(methods.values()))['images']} images)")
        lines.append("  " + "\t".join(("method", *_COLUMNS)))
        for name, scores in methods.items():
            lines.append("  " + "\t".join((name, *(_fmt(scores[c]) for c in _COLUMNS))))
    lines.append("training (per step)")
    for name, info in result["losses"].items():
        timing = info["step_time"]
        lines.append(f"  {name}\t{_fmt(timing['median_s'])} s\tx{_fmt(timing['relative_to_l1'])} of l1\t"
                     f"peak {_fmt(info['peak_memory_mib'])} MiB\tfeature weight {info['feature_weight']:.4g}"
                     + (f"\t{info['feature_loss']}: {info['weights']}" if info["feature_loss"] else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the study and print its result."""
    from codecloss.tasks.sr import StudyConfig, run_study

    config = StudyConfig(
        losses=args.losses, steps=args.steps, eval_dirs=args.eval_dirs, out=args.out, train_dir=args.train_dir,
        batch=args.batch, patch=args.patch, channels=args.channels, blocks=args.blocks, lr=args.lr, seed=args.seed,
        balance=args.balance, vgg_weights=args.vgg_weights, checkpoint_every=args.checkpoint_every,
        save_images=args.save_images, codec_weights=args.codec_weights,
        **({"codec_backbone": args.codec_backbone} if args.codec_backbone else {}),
    )
    result = run_study(config, progress=args.progress)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0
