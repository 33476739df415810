"""bfloat16 against float32 on real images (docs/benchmarks.md, issue 24): loss, input gradient, CPIPS, rankings.

For the default backbone, 4 centre crops of Kodak (kodim01-04, 256 x 256), each case is computed with
``CodecPerceptualLoss(dtype=torch.float32)`` and ``dtype=torch.bfloat16`` and compared: the loss's relative
error, the input gradient's cosine similarity and relative norm error, and CPIPS's largest relative error.
Then the equal-MSE check and the synthetic sanity check (``codecloss eval equal-mse|sanity``'s defaults on
Kodak) score CPIPS in both dtypes side by side: their fractions of correctly ranked pairs.

Usage::

    python benchmarks/bf16_accuracy.py --json benchmarks/results/bf16_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from codecloss import CPIPS, CodecPerceptualLoss
from codecloss.evaluate.equal_mse import evaluate_equal_mse
from codecloss.evaluate.images import read_image
from codecloss.evaluate.sanity import evaluate_synthetic
from codecloss.evaluate.scorers import cpips_scorer

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT / "../shared/data/eval/kodak"
ARTWORK = ROOT / "../shared/data/style/style/edtaonisl.jpg"


def centre_crop(path: Path, size: int = 256) -> torch.Tensor:
    """The (3, size, size) centre crop of an image file."""
    image = read_image(path)
    top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
    return image[:, top:top + size, left:left + size]


def compare(x: torch.Tensor, y: torch.Tensor, extractor, **options) -> dict[str, float]:
    """Loss and input gradient in both dtypes; ``style_target`` in ``options`` goes to the call."""
    call = {"style_target": options.pop("style_target")} if "style_target" in options else {}
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        xg = x.clone().requires_grad_(True)
        value = CodecPerceptualLoss(extractor, dtype=dtype, **options)(xg, y, **call)
        results.append((value.detach(), torch.autograd.grad(value, xg)[0]))
    (v32, g32), (v16, g16) = results
    return {"loss_rel_error": float((v16 - v32).abs() / v32),
            "grad_cosine": float(g16.flatten() @ g32.flatten() / (g16.norm() * g32.norm())),
            "grad_rel_norm_error": float((g16 - g32).norm() / g32.norm())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the table here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    extractor = CodecPerceptualLoss().extractor
    y = torch.stack([centre_crop(KODAK / f"kodim{i:02d}.png") for i in (1, 2, 3, 4)])
    noisy = (y + 0.05 * torch.randn_like(y)).clamp(0, 1)
    blurred = F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    artwork = centre_crop(ARTWORK)[None]
    cases = {
        "l2 content, Gaussian noise (sigma 0.05)": compare(noisy, y, extractor),
        "l2 content, 3x3 box blur": compare(blurred, y, extractor),
        "normalized_l2 content, noise": compare(noisy, y, extractor, content="normalized_l2"),
        "l2 content + Gram style (style = target), noise": compare(noisy, y, extractor, style_weight=1.0),
        "Gram style on gdn1-3 (weight 1e3) against an artwork (edtaonisl), x = y = kodim01-02":
            compare(y[:2], y[:2], extractor, layers=[], style_layers=["gdn1", "gdn2", "gdn3"], style_weight=1e3,
                    style_target=artwork),
    }
    cpips = {}
    for name, x in (("noise", noisy), ("blur", blurred)):
        d32, d16 = (CPIPS(extractor, dtype=dtype)(x, y) for dtype in (torch.float32, torch.bfloat16))
        cpips[name] = float(((d16 - d32).abs() / d32).max())
    scorers = [cpips_scorer(f"CPIPS {dtype}", dtype=getattr(torch, dtype)) for dtype in ("float32", "bfloat16")]
    rankings = {table.title: {row.name: row.values for row in table.rows}
                for table in (evaluate_equal_mse(KODAK, scorers), evaluate_synthetic(KODAK, scorers))}
    result = {"backbone": "codecloss-wide-mse", "images": "kodim01-04 centre crops 256", "threads": args.threads,
              "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "machine": platform.processor() or platform.machine(), "cases": cases, "cpips_max_rel_error": cpips,
              "rankings": rankings}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
