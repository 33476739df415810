"""Perception-distortion plot and matched operating points of a ``codecloss sr-study --finetune ... --json`` result.

One panel per eval set, PSNR-Y (x) against LPIPS-Alex (y), one curve per loss through its weight ratios; the
matched operating points (each loss at continued L1 - 0.5 dB on BSD100) are circled and printed::

    python benchmarks/sr_pd.py runs/sr/sweep.json --out docs/images/sr_pd.png

Several sweeps from the same pretrained network are read together (the first one's ``l1`` row is the control)::

    python benchmarks/sr_pd.py runs/sr/sweep.json runs/sr/sweep2.json --out docs/images/sr_pd.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codecloss.tasks.sr_tradeoff import matched_operating_points, merge_sweeps, plot_perception_distortion


def _sweeps(blob: dict) -> list[dict]:
    """A sweep JSON, or a results file that collects several (``benchmarks/results/sr_finetune_sweep*.json``)."""
    return [blob] if "runs" in blob else [value for value in blob.values() if isinstance(value, dict) and "runs" in value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="sweep JSONs (sr-study --finetune ... --json), or results files collecting several")
    parser.add_argument("--out", type=Path, required=True, help="output image (PNG, PDF, ...)")
    parser.add_argument("--perception", default="lpips_alex", help="y-axis metric (default lpips_alex)")
    parser.add_argument("--dataset", default="bsd100", help="eval set of the matched operating point (default bsd100)")
    parser.add_argument("--drop-db", type=float, default=0.5, help="target: continued L1 minus this (default 0.5 dB)")
    parser.add_argument("--tolerance-db", type=float, default=0.1, 
                        help="how far from the target a picked run may be (default 0.1 dB)")
    args = parser.parse_args()
    result = merge_sweeps([sweep for path in args.results for sweep in _sweeps(json.loads(path.read_text()))])
    result["matched"] = matched_operating_points(result, args.dataset, args.drop_db, args.tolerance_db)
    plot_perception_distortion(result, args.out, perception=args.perception)
    print(json.dumps(result["matched"], indent=2))


if __name__ == "__main__":
    main()
