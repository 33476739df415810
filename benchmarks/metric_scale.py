"""What a ``codecloss.metric`` value means: distances of known distortions on Kodak crops.

Scores each of ``--images`` Kodak images (centre crops of ``--crop`` pixels) against itself
distorted by Gaussian noise, Gaussian blur, JPEG and a brightness shift (the distortions of
:func:`codecloss.evaluate.sanity.distort`, one noise field per image so the levels are nested), and
against the next Kodak image (an unrelated photo); records per condition the mean, min and max
distance and the mean PSNR. Default backbone, default weights, uniform (uncalibrated) heads.

Usage::

    python benchmarks/metric_scale.py --out benchmarks/results/metric_scale.json
    python benchmarks/metric_scale.py --images 3 --crop 128
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

import codecloss
from codecloss.evaluate.images import center_crop, list_images, read_image
from codecloss.evaluate.sanity import distort

DEFAULT_KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "kodak"

#: (kind, level) of :func:`~codecloss.evaluate.sanity.distort`; ``("unrelated", 0)``: the next Kodak image.
CONDITIONS = [
    *(("noise", s) for s in (0.01, 0.02, 0.05, 0.1, 0.2)),
    *(("blur", s) for s in (1.0, 2.0)),
    *(("jpeg", q) for q in (90, 50, 10)),
    ("mean", 0.05),
    ("unrelated", 0),
]


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(-10 * torch.log10((x - y).pow(2).mean()))


def measure(images: list[torch.Tensor]) -> list[dict[str, object]]:
    """One row per condition: distances (mean, min, max over images) and mean PSNR."""
    fields = [torch.randn(image.shape, generator=torch.Generator().manual_seed(i)) for i, image in enumerate(images)]
    rows = []
    for kind, level in CONDITIONS:
        pairs = [
            (image, images[(i + 1) % len(images)] if kind == "unrelated" else distort(image, kind, level, fields[i]))
            for i, image in enumerate(images)
        ]
        distances = [float(codecloss.metric(x, y)) for x, y in pairs]
        rows.append({"distortion": kind, "level": level, "mean": statistics.mean(distances), "min": min(distances),
                     "max": max(distances), "psnr_db": statistics.mean(_psnr(x, y) for x, y in pairs)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=DEFAULT_KODAK, help="folder of Kodak PNGs")
    parser.add_argument("--images", type=int, default=6, help="how many Kodak images, in name order (default 6)")
    parser.add_argument("--crop", type=int, default=256, help="centre crop side (default 256)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/metric_scale.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = list(list_images(args.kodak).values())[: args.images]
    images = [center_crop(read_image(path), args.crop) for path in paths]
    rows = measure(images)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "backbone": codecloss.DEFAULT_BACKBONE, "weights": "default", "heads": "uniform",
        "images": [path.name for path in paths], "crop": args.crop,
        "torch": torch.__version__, "machine": platform.machine(), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in rows:
        print(f"{row['distortion']:>9} {row['level']:>5}  {row['mean']:.3f} [{row['min']:.3f}, {row['max']:.3f}]"
              f"  {row['psnr_db']:.1f} dB")


if __name__ == "__main__":
    main()
