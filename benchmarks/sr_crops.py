"""Side-by-side x4 SR crops: HR, bicubic and each given upscaler model, one row per crop.

Each HR image is cut to a multiple of 4, degraded as in training (antialiased bicubic, 8-bit), upscaled by
every ``--model`` file (``codecloss sr-study`` writes ``OUT/<label>/model.pth``), and the same HR box is cut
from each result and enlarged by an integer factor with nearest-neighbour so that pixels stay visible.
Never pass Set14's lenna or barbara (images of unclear copyright)::

    python benchmarks/sr_crops.py --model l1=runs/sr/sweep/l1/model.pth --model codec@30=... \\
        --crop ../shared/data/sr/set5/HR/butterfly.png:96,64,96 --out docs/images/sr_crops.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.transforms.functional import to_pil_image

from codecloss.evaluate.images import read_image
from codecloss.tasks import load_upscaler
from codecloss.tasks.sr_net import downscale, mod_crop, upscale_bicubic
from codecloss.tasks.sr_upscaler import upscale_image

SCALE = 4
LABEL_HEIGHT = 16


def _crop_spec(text: str) -> tuple[Path, int, int, int]:
    """``PATH:LEFT,TOP,SIZE`` in HR pixels."""
    try:
        path, box = text.rsplit(":", 1)
        left, top, size = (int(v) for v in box.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--crop: expected PATH:LEFT,TOP,SIZE, got {text!r}") from None
    if Path(path).stem.lower() in {"lenna", "barbara"}:
        raise argparse.ArgumentTypeError(f"--crop: {path!r} is a Set14 image of unclear copyright; never in docs")
    return Path(path), left, top, size


def _model_spec(text: str) -> tuple[str, Path]:
    """``LABEL=FILE``."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--model: expected LABEL=FILE, got {text!r}")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=_model_spec, action="append", required=True, help="LABEL=FILE, in column order")
    parser.add_argument("--crop", type=_crop_spec, action="append", required=True, help="HR_IMAGE:LEFT,TOP,SIZE")
    parser.add_argument("--zoom", type=int, default=2, help="nearest-neighbour enlargement (default 2)")
    parser.add_argument("--out", type=Path, required=True, help="output PNG")
    args = parser.parse_args()

    nets = {label: load_upscaler(path, argument=f"--model {label}") for label, path in args.model}
    columns = ["HR", "bicubic", *nets]
    side = max(size for *_, size in args.crop) * args.zoom
    sheet = Image.new("RGB", (side * len(columns), (side + LABEL_HEIGHT) * len(args.crop)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (path, left, top, size) in enumerate(args.crop):
        hr = mod_crop(read_image(path), SCALE).unsqueeze(0)
        lr = downscale(hr, SCALE)
        with torch.inference_mode():
            results = {"HR": hr, "bicubic": upscale_bicubic(lr, SCALE),
                       **{label: upscale_image(net, lr) for label, net in nets.items()}}
        for col, label in enumerate(columns):
            patch = results[label][0, :, top : top + size, left : left + size].clamp(0, 1)
            image = to_pil_image(patch).resize((size * args.zoom, size * args.zoom), Image.NEAREST)
            y = row * (side + LABEL_HEIGHT)
            sheet.paste(image, (col * side, y + LABEL_HEIGHT))
            draw.text((col * side + 3, y + 2), f"HR ({path.stem})" if label == "HR" else label, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"{args.out}: {sheet.size[0]}x{sheet.size[1]}, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
