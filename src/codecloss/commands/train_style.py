"""``codecloss train-style STYLE --out RUN``: train a feed-forward stylizer (Johnson et al. 2016) with a codec loss.

Examples::

    codecloss train-style ../shared/data/style/style/starry_night.jpg --out runs/starry
    codecloss train-style starry_night.jpg --out runs/starry --resume --steps 6000
    codecloss train-style starry_night.jpg --out runs/starry-vgg --loss vgg16 --weights vgg16_features.pth
    codecloss stylize photo.jpg --model runs/starry/stylizer.pth -o out.png
"""

from __future__ import annotations

import argparse
import json

from codecloss._data_paths import NATURAL_TRAIN_DIRS
from codecloss._progress import add_progress_argument
from codecloss.commands.metric import parse_weights
from codecloss.commands.stylize import parse_tap


HELP = "train a feed-forward stylizer (Johnson et al. 2016) with a codec or VGG16 loss"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-style`` subcommand."""
    from codecloss._dtype import TASK_DTYPES
    from codecloss.tasks.train_style import LOSSES, StyleTrainConfig

    defaults = StyleTrainConfig(style="", out_dir="")
    p = subparsers.add_parser(
        "train-style",
        help=HELP,
        description=(
            "Train a network that stylizes any photo in one forward pass, on random crops of natural photos, "
            "with relative content and Gram errors on the loss network's taps. The result, RUN/stylizer.pth, "
            "is used with `codecloss stylize CONTENT --model RUN/stylizer.pth -o OUT`."
        ),
    )
    p.add_argument("style", help="style image file")
    p.add_argument("--out", required=True, help="run folder: checkpoint, log.jsonl and stylizer.pth")
    p.add_argument("--data", dest="data_dirs", nargs="+", metavar="DIR", default=list(NATURAL_TRAIN_DIRS),
                   help="folders of training photos (default: ../shared/data/natural train folders)")
    p.add_argument("--loss", choices=LOSSES, default=defaults.loss,
                   help="codec (default), codec-random (the control) or vgg16 (ImageNet trunk file)")
    p.add_argument("--backbone", help="codec backbone id (default: the embedded default)")
    p.add_argument("--weights", type=parse_weights, default="default",
                   help="codec weights ('default', registry name, file); for --loss vgg16 the trunk file "
                        "(default: $CODECLOSS_TRUNKS/vgg16_features.pth)")
    p.add_argument("--content-layers", nargs="+", type=parse_tap, metavar="TAP[=W]", help="content taps")
    p.add_argument("--style-layers", nargs="+", type=parse_tap, metavar="TAP[=W]", help="Gram taps")
    for name in ("content_weight", "style_weight", "tv_weight", "lr"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name),
                       help=f"(default {getattr(defaults, name)})")
    for name, text in (("size", "side of the square training crops"), ("batch", "crops per step"),
                       ("steps", "total steps"), ("width", "stylizer width"), ("blocks", "residual blocks"),
                       ("seed", "seed of init, crops and a random loss network"),
                       ("checkpoint_every", "steps between checkpoints and log lines")):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name),
                       help=f"{text} (default {getattr(defaults, name)})")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--dtype", choices=TASK_DTYPES, default=defaults.dtype,
                   help="compute dtype of the loss network; auto = bfloat16 where the device has fast bfloat16 "
                        "matrix units (default float32; the stylizer trains in float32)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (raise --steps to train on)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_progress_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, write RUN/stylizer.pth, report."""
    from pathlib import Path

    from codecloss._validate import check_device
    from codecloss.tasks.gatys import read_single_image
    from codecloss.tasks.train_style import StyleTrainConfig, train_stylizer

    check_device(args.device, "--device")
    read_single_image(args.style, "style")  # fail now, with the argument's name, not after loading data
    config = StyleTrainConfig(
        style=args.style, out_dir=args.out, data_dirs=args.data_dirs, loss=args.loss, backbone=args.backbone,
        weights=None if args.weights is None else str(args.weights),
        content_layers=None if args.content_layers is None else dict(args.content_layers),
        style_layers=None if args.style_layers is None else dict(args.style_layers),
        content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        size=args.size, batch=args.batch, steps=args.steps, lr=args.lr, width=args.width, blocks=args.blocks,
        seed=args.seed, device=args.device, dtype=args.dtype, checkpoint_every=args.checkpoint_every,
    )
    for folder in config.data_dirs:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"--data: no such folder {folder!r}")
    summary = train_stylizer(config, resume=args.resume, progress=args.progress)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['model']}\t{summary['steps']} steps\t{summary['train_seconds']:.0f} s\t"
              f"{summary['seconds_per_step']:.3f} s/step")
    return 0
