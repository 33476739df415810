"""``codecloss stylize CONTENT STYLE -o OUT``: Gatys-style transfer, or texture synthesis with CONTENT ``none``;
``codecloss stylize CONTENT --model FILE -o OUT``: one forward pass of a stylizer from ``codecloss train-style``.

Examples::

    codecloss stylize photo.jpg starry_night.jpg -o out.png
    codecloss stylize photo.jpg --model benchmarks/models/starry_night-codec.pth -o out.png
    codecloss stylize none starry_night.jpg -o texture.png --size 192 --json
    codecloss stylize photo.jpg udnie.jpg -o out.png --style-layers gdn1=1 gdn2=2 --style-weight 300
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codecloss.commands.metric import parse_weights

#: Options that only make sense with a content image.
_CONTENT_ONLY = ("content_layers", "content_weight")


def parse_tap(text: str) -> tuple[str, float]:
    """A ``--*-layers`` item: ``TAP`` (weight 1) or ``TAP=WEIGHT``."""
    name, _, weight = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"expected TAP or TAP=WEIGHT, got {text!r}")
    try:
        return name, float(weight) if weight else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TAP=WEIGHT with a number, got {text!r}") from None


HELP = "style transfer (Gatys) or texture synthesis with a codec loss"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stylize`` subcommand."""
    from codecloss._default import DEFAULT_BACKBONE
    from codecloss._dtype import TASK_DTYPES
    from codecloss._progress import add_progress_argument
    from codecloss.tasks.gatys import INITS, OPTIMIZERS

    p = subparsers.add_parser(
        "stylize",
        help=HELP,
        description=(
            "Optimise an image so its codec features keep CONTENT's and its Gram matrices match STYLE's "
            "(Gatys et al. 2016), coarse to fine. CONTENT 'none' synthesises a texture from noise. "
            "Defaults are the recipe measured in docs/tasks.md."
        ),
    )
    p.add_argument("content", help="content image file, or 'none' for texture synthesis")
    p.add_argument("style", nargs="?", help="style image file (not with --model)")
    p.add_argument("-o", "--output", required=True, help="output image file (PNG, JPEG, ...)")
    p.add_argument("--model", help="a stylizer model file from `codecloss train-style`: one forward pass, no STYLE")
    p.add_argument("--size", type=int,
                   help="shorter side of the output (default 256; with --model the content's own size)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"codec backbone id, or 'vgg16'/'vgg19' (torchvision; random init unless --weights FILE) (default {DEFAULT_BACKBONE})")
    p.add_argument("--weights", type=parse_weights, default="default",
                   help="backbone weights: 'default', a registry name, a file, or 'none' (random init)")
    p.add_argument("--content-layers", nargs="+", type=parse_tap, metavar="TAP[=W]", help="content taps")
    p.add_argument("--style-layers", nargs="+", type=parse_tap, metavar="TAP[=W]", help="Gram taps")
    p.add_argument("--content-weight", type=float, help="weight of the relative content error (default 1)")
    p.add_argument("--style-weight", type=float, help="weight of the relative Gram error")
    p.add_argument("--tv-weight", type=float, help="weight of total variation")
    p.add_argument("--steps", type=int, help="optimiser iterations per scale")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="lbfgs (default) or adam")
    p.add_argument("--lr", type=float, help="Adam's learning rate")
    p.add_argument("--init", choices=INITS, help="start from the content (default with content) or noise")
    p.add_argument("--scales", type=int, help="coarse-to-fine scales, each half the next")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise initialisation (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--dtype", choices=TASK_DTYPES, default="float32",
                   help="compute dtype of the loss network; auto = bfloat16 where the device has fast bfloat16 "
                        "matrix units (default float32; Gram matrices and the image stay float32; with --model: the "
                        "stylizer's own compute dtype)")
    p.add_argument("--json", action="store_true", help="print settings, final terms and time as JSON")
    p.add_argument("--judge", action="store_true",
                   help="also score the result with the independent judges (texture statistics, random VGG Gram, "
                        "colour, SSIM to the content; codecloss.tasks.judges)")
    add_progress_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Stylise, write the output image, report."""
    from codecloss._io import atomic_save_image, check_image_output
    from codecloss._validate import check_device
    from codecloss.tasks.gatys import run_stylize

    check_device(args.device, "--device")
    output = check_image_output(Path(args.output))
    if args.model is not None:
        return _run_model(args, output)
    if args.style is None:
        raise ValueError("style: missing STYLE image (or pass --model FILE to use a trained stylizer)")
    content = None if args.content.lower() == "none" else args.content
    options = {
        name: value for name in ("content_weight", "style_weight", "tv_weight", "steps", "optimizer", "lr", "init", "scales")
        if (value := getattr(args, name)) is not None
    }
    for name in ("content_layers", "style_layers"):
        if getattr(args, name) is not None:
            options[name] = dict(getattr(args, name))
    if content is None:
        given = [f"--{name.replace('_', '-')}" for name in _CONTENT_ONLY if name in options]
        if given or options.get("init") == "content":
            raise ValueError(f"content: {', '.join(given) or '--init content'} needs a content image, got 'none'")
    result = run_stylize(
        content, args.style, size=256 if args.size is None else args.size, backbone=args.backbone,
        weights=args.weights, seed=args.seed, device=args.device, dtype=args.dtype, progress=args.progress, **options,
    )
    atomic_save_image(result.image, output)
    report = {"content": args.content, "style": args.style, "output": args.output, "settings": result.settings,
              "terms": result.terms, "seconds": round(result.seconds, 3)}
    if args.judge:
        from codecloss.evaluate.images import read_image
        from codecloss.tasks.judges import judge_style

        reference = None if content is None else read_image(content)[None]
        report["judges"] = judge_style(result.image.cpu(), read_image(args.style)[None], reference)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        judged = "".join(f"\t{name} {value:.4g}" for name, value in report.get("judges", {}).items())
        print(f"{args.output}\t{result.seconds:.1f} s\tcontent {result.terms['content']:.4g}\t"
              f"style {result.terms['style']:.4g}{judged}")
    return 0


def _run_model(args: argparse.Namespace, output: Path) -> int:
    """``--model``: stylize CONTENT with a trained feed-forward network."""
    import time

    import torch

    from codecloss._dtype import compute_context, resolve_task_dtype
    from codecloss._io import atomic_save_image
    from codecloss.tasks.gatys import read_single_image, resize_shorter
    from codecloss.tasks.stylizer_net import load_stylizer

    if args.style is not None:
        raise ValueError(f"--model: a trained stylizer carries its style; got a STYLE argument too ({args.style!r})")
    if args.content.lower() == "none":
        raise ValueError("content: --model stylizes a content image, got 'none'")
    if args.judge:
        raise ValueError("--judge: judges a Gatys result against its STYLE; with --model use benchmarks/train_style.py")
    model = load_stylizer(args.model, args.device)
    image = read_single_image(args.content, "content")
    if args.size is not None:
        image = resize_shorter(image, args.size)
    dtype = resolve_task_dtype(args.dtype, args.device)
    start = time.perf_counter()
    with torch.inference_mode(), compute_context(dtype, torch.device(args.device)):
        result = model(image.to(args.device)).float().cpu()
    seconds = time.perf_counter() - start
    atomic_save_image(result, output)
    report = {"content": args.content, "model": args.model, "output": args.output, "meta": model.meta,
              "size": list(result.shape[-2:]), "dtype": str(dtype).removeprefix("torch."), "seconds": round(seconds, 4)}
    print(json.dumps(report, indent=2) if args.json else f"{args.output}\t{seconds:.3f} s")
    return 0
