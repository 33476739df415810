"""``codecloss upscale IN -o OUT --model FILE``: x4 super-resolution of one image with a trained upscaler.

Examples::

    codecloss upscale photo.png -o photo_x4.png --model runs/sr/pretrain.pth
    codecloss upscale big.jpg -o big_x4.png --model runs/sr/sweep/codec@0.3/model.pth --tile 128
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "x4 super-resolution of an image with a model from `codecloss sr-study`"

_MIN_SIDE = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``upscale`` subcommand."""
    p = subparsers.add_parser(
        "upscale",
        help=HELP,
        description=(
            "Super-resolve an image of any size by 4 with an upscaler model file (OUT/pretrain.pth of "
            "`codecloss sr-study --pretrain`, or a fine-tuned OUT/<run>/model.pth). Large images run in "
            "overlapping tiles whose result equals the untiled one. The output is written atomically."
        ),
    )
    p.add_argument("input", help="image file")
    p.add_argument("-o", "--output", required=True, help="output image file (.png recommended)")
    p.add_argument("--model", required=True, metavar="FILE", help="upscaler model file")
    p.add_argument("--tile", type=int, default=256,
                   help="tile side in input pixels for large images; 0: never tile (default 256)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Upscale ``args.input`` into ``args.output``."""
    from codecloss._validate import check_device
    from codecloss._io import atomic_save_image, check_image_output
    from codecloss.evaluate.images import read_image
    from codecloss.tasks import load_upscaler
    from codecloss.tasks.sr_upscaler import upscale_image

    device = check_device(args.device, "--device")
    if args.tile < 0:
        raise ValueError(f"--tile: expected 0 (no tiling) or a positive tile side, got {args.tile}")
    source = Path(args.input)
    if not source.is_file():
        raise FileNotFoundError(f"input: no such file {str(source)!r}")
    output = check_image_output(Path(args.output))
    net = load_upscaler(args.model, device, argument="--model")
    try:
        image = read_image(source)
    except ValueError as err:
        raise ValueError(f"input: {err}") from None
    if min(image.shape[-2:]) < _MIN_SIDE:
        raise ValueError(f"input: expected an image of at least {_MIN_SIDE}x{_MIN_SIDE} px, got "
                         f"{image.shape[-1]}x{image.shape[-2]} in {str(source)!r}")
    sr = upscale_image(net, image.unsqueeze(0).to(device), args.tile or None)
    atomic_save_image(sr.cpu(), output)
    return 0
