"""``codecloss sr-study``: train one x4 SR network per loss on the same data, then score every one.

Three modes: ``--pretrain`` trains the L1 network until validation PSNR-Y plateaus (``RUN/pretrain.pth``),
``--finetune RUN/pretrain.pth`` sweeps losses x weight ratios from it and judges every run (LPIPS-Alex, DISTS,
PSNR-Y, SSIM-Y, sharpness), and without either, the original study trains every loss from bicubic.

Examples::

    codecloss sr-study --pretrain --out runs/sr --threads 1
    codecloss sr-study --finetune runs/sr/pretrain.pth --out runs/sr/sweep --weights-ratio 0.1 0.3 1.0 \
        --vgg16-weights ../shared/data/reference/imagenet_features/vgg16_features.pth \
        --trunks ../shared/data/reference/imagenet_features --json > runs/sr/sweep.json

    codecloss sr-study --losses l1 codec codec-random vgg19 --steps 600 \\
        --eval ../shared/data/sr/set5/HR ../shared/data/sr/set14 ../shared/data/eval/kodak --out runs/sr-study --json
    codecloss sr-study ... --out runs/sr-study --steps 1200     # same run folder: resumes and trains on
"""

from __future__ import annotations

import argparse
import json
from typing import Any

_COLUMNS = ("psnr_y", "ssim_y", "ms_ssim", "cpips", "sharpness")


HELP = "x4 super-resolution study: one network trained with each loss, scored on SR benchmarks"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sr-study`` subcommand."""
    from codecloss._dtype import TASK_DTYPES
    from codecloss._progress import add_progress_argument
    from codecloss.tasks.sr_finetune import DEFAULT_LOSSES as FINETUNE_LOSSES
    from codecloss.tasks.sr_losses import LOSS_NAMES

    p = subparsers.add_parser(
        "sr-study",
        help=HELP,
        description=(
            "Train the same small EDSR-style x4 network with each loss (same init, data order and steps), "
            "then score it and bicubic upsampling on every --eval folder of HR images: Y-channel PSNR/SSIM "
            "(border shaved by the scale), RGB MS-SSIM, CPIPS and a spectral sharpness ratio, plus each loss's "
            "time and peak memory per training step. Runs in --out resume from their checkpoints. "
            f"Losses: {', '.join(f'{k} (L1 + {v})' if v else f'{k} (L1 alone)' for k, v in LOSS_NAMES.items())}."
        ),
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--pretrain", action="store_true",
                      help="train the L1 network until validation PSNR-Y plateaus (--steps caps it); writes OUT/pretrain.pth")
    mode.add_argument("--finetune", metavar="FILE",
                      help="fine-tune FILE (OUT/pretrain.pth of --pretrain) with every --losses x --weights-ratio")
    p.add_argument("--losses", nargs="+", metavar="LOSS", default=None,
                   help="losses to train (default: l1 codec codec-random vgg19; with --finetune: "
                        f"{' '.join(FINETUNE_LOSSES)}); with --finetune also aesop and aesop+LOSS")
    p.add_argument("--weights-ratio", nargs="+", type=float, metavar="R", default=None, dest="weight_ratios",
                   help="--finetune: feature-loss input-gradient norm as a multiple of L1's, each > 0 (default 0.1 0.3 1.0)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps of every loss (required without a mode; --pretrain: the cap, default 10000; "
                        "--finetune: default 2000)")
    p.add_argument("--eval", nargs="+", metavar="DIR", default=None, dest="eval_dirs",
                   help="folders of HR evaluation images (required without a mode; --finetune default: Set5, Set14, "
                        "BSD100, Kodak under ../shared/data)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, evaluation caches)")
    p.add_argument("--train", nargs="+", default=None, metavar="DIR", dest="train_dirs",
                   help="folders of training photos, searched recursively (default: ../shared/data/natural; with a "
                        "mode: BSDS500 train and test, Sun-Hays80)")
    p.add_argument("--val", default=None, metavar="DIR", dest="val_dir",
                   help="--pretrain: held-out validation HR images (default ../shared/data/natural/bsds500/val, BSD100)")
    p.add_argument("--val-every", type=int, default=None, help="--pretrain: steps between validations (default 500)")
    p.add_argument("--patience", type=int, default=None,
                   help="--pretrain: stop when the last K validations gain < --min-gain dB (default 5)")
    p.add_argument("--min-gain", type=float, default=None, help="--pretrain: dB of the plateau rule (default 0.02)")
    p.add_argument("--trunks", default=None, metavar="DIR",
                   help="--finetune: folder of the judges' trunk files (default: $CODECLOSS_TRUNKS); without "
                        "them LPIPS-Alex and DISTS are skipped")
    p.add_argument("--device", default=None,
                   help="--pretrain, --finetune: torch device of the training, e.g. cuda (default cpu; judges run on the CPU)")
    p.add_argument("--dtype", choices=TASK_DTYPES, default=None,
                   help="--finetune: compute dtype of the feature losses; auto = bfloat16 where the device has fast "
                        "bfloat16 matrix units (default float32; the network trains in float32)")
    p.add_argument("--batch", type=int, default=None, help="crops per step (default 8; with a mode 16)")
    p.add_argument("--patch", type=int, default=96, help="HR crop side, a multiple of 4 >= 64; with a mode of 16 (default 96)")
    p.add_argument("--channels", type=int, default=None, help="network width (default 32)")
    p.add_argument("--blocks", type=int, default=None, help="residual blocks (default 6; --pretrain 8)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 5e-4; --finetune 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, data order and random networks (default 0)")
    p.add_argument("--balance", type=float, default=None,
                   help="feature-loss input-gradient norm as a multiple of L1's at init (default 1)")
    p.add_argument("--vgg-weights", default=None, metavar="FILE",
                   help="torchvision VGG19 ImageNet state dict for the vgg19 loss (default: random init)")
    p.add_argument("--vgg16-weights", default=None, metavar="FILE",
                   help="torchvision VGG16 state dict for the vgg16 losses and lpips-vgg, e.g. "
                        "$CODECLOSS_TRUNKS/vgg16_features.pth (default: random init; with --finetune the file in "
                        "$CODECLOSS_TRUNKS, required)")
    p.add_argument("--codec-backbone", default=None, metavar="ID",
                   help="backbone of the codec and codec-random losses (default: codecloss.DEFAULT_BACKBONE)")
    p.add_argument("--codec-weights", default="default", metavar="WEIGHTS",
                   help="weights of the codec loss: 'default', a registry name or a file (default 'default')")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="steps between checkpoints (default 25; --finetune 100)")
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


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` given on the command line (the others keep the config's defaults)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _refuse(args: argparse.Namespace, mode: str, *names: str) -> None:
    for name in names:
        if getattr(args, name) not in (None, False):
            raise ValueError(f"--{name.replace('_', '-')}: not an option of {mode}")


def _run_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    from codecloss.tasks.sr_pretrain import PretrainConfig, run_pretrain

    _refuse(args, "--pretrain", "balance", "losses", "weight_ratios", "eval_dirs", "trunks", "vgg_weights", "vgg16_weights",
            "codec_backbone", "checkpoint_every", "save_images", "dtype")
    config = PretrainConfig(out=args.out, patch=args.patch, seed=args.seed, **_given(
        args, "train_dirs", "val_dir", "steps", "batch", "channels", "blocks", "lr", "val_every", "patience", "min_gain",
        "device"))
    return run_pretrain(config, progress=args.progress)


def _run_finetune(args: argparse.Namespace) -> dict[str, Any]:
    from codecloss.tasks.sr_finetune import FinetuneConfig, run_finetune

    _refuse(args, "--finetune", "balance", "val_dir", "val_every", "patience", "min_gain", "vgg_weights", "channels", "blocks")
    config = FinetuneConfig(init=args.finetune, out=args.out, patch=args.patch, seed=args.seed,
                            codec_weights=args.codec_weights, save_images=args.save_images, **_given(
        args, "losses", "weight_ratios", "steps", "eval_dirs", "train_dirs", "batch", "lr", "vgg16_weights", "trunks",
        "codec_backbone", "checkpoint_every", "device", "dtype"))
    return run_finetune(config, progress=args.progress)


def _pretrain_table(result: dict[str, Any]) -> str:
    best = result["best"] or {}
    return (f"pretrain: {result['steps']} steps, stopped at {result['stopped']}, best validation PSNR-Y "
            f"{_fmt(best.get('psnr_y'))} dB at step {best.get('step')}, {result['network']['parameters']} parameters, "
            f"median step {_fmt(result['step_time']['median_s'])} s -> {result['model']}")


def _finetune_table(result: dict[str, Any]) -> str:
    columns = ("psnr_y", "ssim_y", "lpips_alex", "dists", "sharpness")
    lines = []
    for dataset, methods in result["eval"].items():
        lines.append(f"{dataset} ({next(iter(methods.values()))['images']} images)")
        lines.append("  " + "\t".join(("method", *columns)))
        lines += ["  " + "\t".join((name, *(_fmt(scores[c]) for c in columns))) for name, scores in methods.items()]
    lines += [f"skipped {name}: {why}" for name, why in result["judges_skipped"].items()]
    lines.append("training (per step)")
    for name, info in result["runs"].items():
        lines.append(f"  {name}\t{_fmt(info['step_time']['median_s'])} s\tpeak {_fmt(info['peak_memory_mib'])} MiB\t"
                     f"feature weight {info['feature_weight']:.4g}")
    for loss, point in result["matched"].get("losses", {}).items():
        lines.append(f"matched {loss}: {point.get('label') or point.get('reason')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the pretraining, the fine-tuning sweep or the study, and print its result."""
    if args.pretrain or args.finetune:
        result = _run_pretrain(args) if args.pretrain else _run_finetune(args)
        table = _pretrain_table if args.pretrain else _finetune_table
        print(json.dumps(result, indent=2) if args.json else table(result))
        return 0
    return _run_study(args)


def _run_study(args: argparse.Namespace) -> int:
    """The original study: every loss trained from bicubic."""
    from codecloss.tasks.sr import StudyConfig, run_study

    _refuse(args, "the study (give --pretrain or --finetune FILE)", "weight_ratios", "val_dir", "val_every", "patience",
            "min_gain", "trunks", "device", "dtype")
    if args.steps is None or not args.eval_dirs:
        raise ValueError("--steps, --eval: required without --pretrain or --finetune")
    if args.train_dirs is not None and len(args.train_dirs) != 1:
        raise ValueError(f"--train: the study takes one folder, got {args.train_dirs}")
    config = StudyConfig(
        losses=args.losses or ["l1", "codec", "codec-random", "vgg19"], steps=args.steps, eval_dirs=args.eval_dirs,
        out=args.out, vgg_weights=args.vgg_weights, vgg16_weights=args.vgg16_weights,
        save_images=args.save_images, codec_weights=args.codec_weights, patch=args.patch, seed=args.seed,
        **({"train_dir": args.train_dirs[0]} if args.train_dirs else {}),
        **_given(args, "batch", "channels", "blocks", "lr", "checkpoint_every", "codec_backbone", "balance"),
    )
    result = run_study(config, progress=args.progress)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0
