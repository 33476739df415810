"""``codecloss train-cpips``: calibrate CPIPS heads on BAPPS 2AFC (LPIPS's lin recipe), or distil LPIPS-VGG; resumable.

Examples::

    codecloss train-cpips --bapps dataset --out runs/heads --weights runs/default/g_a.pt
    codecloss train-cpips --bapps dataset --out runs/heads --resume
    codecloss train-cpips --distill lpips-vgg --trunks ../shared/data/reference/imagenet_features --out runs/distill
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from codecloss._progress import add_progress_argument
from codecloss.commands.metric import add_cpips_arguments


HELP = "train CPIPS heads on BAPPS 2AFC judgements, or distil LPIPS-VGG into them"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-cpips`` subcommand."""
    from codecloss.train.heads import HeadTrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(HeadTrainConfig) if f.default is not dataclasses.MISSING}
    p = subparsers.add_parser(
        "train-cpips",
        help=HELP,
        description=(
            "Frozen backbone; trainable non-negative per-channel weights per tap and a small judgement network "
            "on (d0, d1, d0-d1, d0/(d1+eps), d1/(d0+eps)) with a BCE loss against the human judgement; Adam "
            "lr 1e-4 beta1 0.5; EPOCHS + DECAY_EPOCHS epochs (linear decay); weights clamped >= 0 after each "
            "step. Writes OUT/checkpoint.pt (resumable), OUT/log.jsonl, OUT/head.pt and OUT/head.pt.sha256. "
            "With --distill instead of --bapps, the judgements are soft labels of LPIPS-VGG on seeded 2AFC "
            "triplets of distorted natural crops, made once into OUT/triplets.pt."
        ),
    )
    p.add_argument("--bapps", help="BAPPS root (holding 2afc/<split>/<category>/)")
    p.add_argument("--distill", metavar="TEACHER",
                   help="instead of --bapps: distil this teacher (lpips-vgg; never lpips-alex, the judge)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    add_cpips_arguments(p, heads=False)
    p.add_argument("--categories", nargs="+", help="2AFC categories (default: all under the split)")
    p.add_argument("--split", default=defaults["split"], help=f"split folder (default {defaults['split']})")
    p.add_argument("--epochs", type=int, default=defaults["epochs"], help="epochs at the base lr (default 5)")
    p.add_argument("--decay-epochs", type=int, default=defaults["decay_epochs"],
                   help="further epochs of linear decay (default 5)")
    p.add_argument("--lr", type=float, default=defaults["lr"], help="Adam learning rate (default 1e-4)")
    p.add_argument("--beta1", type=float, default=defaults["beta1"], help="Adam beta1 (default 0.5)")
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"], help="triplets per step (default 50)")
    p.add_argument("--hidden", type=int, default=defaults["hidden"], help="judgement network width (default 32)")
    p.add_argument("--seed", type=int, default=defaults["seed"], help="seed (default 0)")
    p.add_argument("--limit", type=int, help="first N triplets per category (quick runs)")
    p.add_argument("--num-workers", type=int, default=defaults["num_workers"], help="decoding workers (default 0)")
    p.add_argument("--ckpt-every", type=int, default=defaults["ckpt_every"], help="checkpoint period in steps")
    _add_distill_arguments(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_progress_argument(p)
    p.set_defaults(func=run)


def _add_distill_arguments(p: argparse.ArgumentParser) -> None:
    from codecloss._data_paths import NATURAL_TRAIN_DIRS
    from codecloss.train.triplets import DISTORTION_KINDS, TRAIN_KINDS

    p.add_argument("--trunks", help="--distill: folder of the ImageNet trunk files (default $CODECLOSS_TRUNKS)")
    p.add_argument("--triplets", type=int, default=10_000, help="--distill: number of triplets (default 10000)")
    p.add_argument("--crop", type=int, default=64, help="--distill: crop side in pixels (default 64, as BAPPS)")
    p.add_argument("--kinds", nargs="+", default=list(TRAIN_KINDS), choices=list(DISTORTION_KINDS),
                   help=f"--distill: distortion kinds (default {' '.join(TRAIN_KINDS)})")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="--distill: soft label sigmoid((d0-d1)/(T(d0+d1))) temperature (default 0.1)")
    p.add_argument("--data-dirs", nargs="+", default=list(NATURAL_TRAIN_DIRS),
                   help="--distill: training photo folders (default the shared natural training folders)")


def _data_source(args: argparse.Namespace) -> dict[str, str | None]:
    """``bapps_root`` / ``triplets`` of the config; makes the distillation triplets first."""
    from codecloss.train.triplets import distill_triplets

    if (args.bapps is None) == (args.distill is None):
        raise ValueError("--bapps, --distill: give exactly one")
    if args.bapps is not None:
        return {"bapps_root": str(Path(args.bapps).resolve()), "triplets": None}
    path = distill_triplets(Path(args.out).resolve() / "triplets.pt", args.data_dirs, args.distill, args.trunks,
                            args.triplets, args.crop, args.kinds, args.seed, temperature=args.temperature)
    return {"bapps_root": None, "triplets": str(path)}


def run(args: argparse.Namespace) -> int:
    """Train and print where the head file went."""
    from codecloss._validate import check_device
    from codecloss.train.heads import HeadTrainConfig, train_heads

    check_device(args.device, "--device")
    config = HeadTrainConfig(
        **_data_source(args), out_dir=str(Path(args.out).resolve()), backbone=args.backbone,
        weights=args.weights, layers=args.layers, categories=args.categories, split=args.split, epochs=args.epochs,
        decay_epochs=args.decay_epochs, lr=args.lr, beta1=args.beta1, batch_size=args.batch_size,
        hidden=args.hidden, seed=args.seed, limit=args.limit, num_workers=args.num_workers, device=args.device,
        ckpt_every=args.ckpt_every,
    )
    summary = train_heads(config, resume=args.resume, progress=args.progress)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        last = summary["history"][-1] if summary["history"] else {}
        print(f"head {summary['head']}  sha256={summary['sha256']}  epochs {summary['epochs']}  "
              f"final loss {last.get('loss', float('nan')):.4f}  train 2AFC {last.get('accuracy', float('nan')):.4f}")
    return 0
