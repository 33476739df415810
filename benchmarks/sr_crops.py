"""Side-by-side crops of an ``codecloss sr-study --save-images`` run: HR, bicubic and every loss.

Rows are image crops, columns methods; each crop is enlarged by an integer factor with nearest-neighbour
so that pixels stay visible. Never pass Set14's lenna or barbara (images of unclear copyright)::

    python benchmarks/sr_crops.py --run runs/sr-study --hr ../shared/data/sr/set5/HR \\
        --crop butterfly:96,64,96 --crop baby:280,220,96 --out docs/images/sr_set5.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

LABEL_HEIGHT = 16


def _crop_spec(text: str) -> tuple[str, int, int, int]:
    """``stem:left,top,size``."""
    try:
        stem, box = text.split(":")
        left, top, size = (int(v) for v in box.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--crop: expected STEM:LEFT,TOP,SIZE, got {text!r}") from None
    if stem.lower() in {"lenna", "barbara"}:
        raise argparse.ArgumentTypeError(f"--crop: {stem!r} is a Set14 image of unclear copyright; never in docs")
    return stem, left, top, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the sr-study --out folder (run with --save-images)")
    parser.add_argument("--hr", type=Path, required=True, help="the dataset's HR folder (as given to --eval)")
    parser.add_argument("--dataset", default=None, help="dataset name in the run (default: from --hr)")
    parser.add_argument("--crop", type=_crop_spec, action="append", required=True, help="STEM:LEFT,TOP,SIZE (HR pixels)")
    parser.add_argument("--zoom", type=int, default=2, help="nearest-neighbour enlargement (default 2)")
    parser.add_argument("--out", type=Path, required=True, help="output PNG")
    args = parser.parse_args()

    dataset = args.dataset or (args.hr.parent.name if args.hr.name.lower() == "hr" else args.hr.name)
    result = json.loads((args.run / "bicubic" / "eval.json").read_text())  # any method's cache names the datasets
    if dataset not in result["result"]:
        parser.error(f"--dataset: {dataset!r} not in the run; it has {sorted(result['result'])}")
    methods = ["bicubic"] + sorted(p.name for p in args.run.iterdir() if (p / "checkpoint.pt").is_file())
    order = ["bicubic", "l1", "codec", "codec-random", "hyperprior-random", "vgg19"]
    methods = sorted(methods, key=lambda m: order.index(m) if m in order else len(order))
    columns = ["HR", *methods]
    side = max(size for *_, size in args.crop) * args.zoom
    sheet = Image.new("RGB", (side * len(columns), (side + LABEL_HEIGHT) * len(args.crop)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (stem, left, top, size) in enumerate(args.crop):
        hr_path = next(p for p in args.hr.iterdir() if p.stem == stem)
        for col, method in enumerate(columns):
            path = hr_path if method == "HR" else args.run / method / "images" / dataset / f"{stem}.png"
            with Image.open(path) as image:
                patch = image.convert("RGB").crop((left, top, left + size, top + size))
            patch = patch.resize((size * args.zoom, size * args.zoom), Image.NEAREST)
            y = row * (side + LABEL_HEIGHT)
            sheet.paste(patch, (col * side, y + LABEL_HEIGHT))
            draw.text((col * side + 3, y + 2), f"HR ({stem})" if method == "HR" else method, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"{args.out}: {sheet.size[0]}x{sheet.size[1]}, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
