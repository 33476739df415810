"""Uniform vs LPIPS-VGG-distilled CPIPS heads on held-out data (issue 19 item 6).

Runs :func:`codecloss.evaluate.distill.evaluate_distilled_heads`: 2AFC agreement with LPIPS-Alex, DISTS and
the teacher LPIPS-VGG on Kodak triplets of distortion kinds held out of training (codec, warp) and of the kinds
trained on, plus csiq_1600_subset and tid2013_calibration. Train the heads first, e.g.::

    codecloss train-cpips --distill lpips-vgg --trunks ../shared/data/reference/imagenet_features \\
        --out runs/distill --triplets 2000 --epochs 4 --decay-epochs 2 --lr 1e-3

Usage::

    python benchmarks/distill_heads.py --run runs/distill [runs/distill_other ...] --count 500

or in two processes (the Kodak sets; the full-size IQA images)::

    python benchmarks/distill_heads.py --run runs/distill --count 250 --no-iqa
    python benchmarks/distill_heads.py --run runs/distill --count 0 --out benchmarks/results/distill_heads_iqa.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

import codecloss
from codecloss.backbones import load_codec
from codecloss.evaluate.distill import HELD_OUT_KINDS, evaluate_distilled_heads
from codecloss.train.triplets import TRAIN_KINDS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "distill_heads.json"

logger = logging.getLogger("distill_heads")


def _training(run: Path) -> dict:
    """What a run was trained on and how it went."""
    head = torch.load(run / "head.pt", map_location="cpu", weights_only=True)
    return {
        "run": str(run), "head_meta": head["meta"],
        "lin_mean_std": {tap: [float(w.mean()), float(w.std())] for tap, w in head["lin"].items()},
        "triplet_settings": torch.load(run / "triplets.pt", map_location="cpu", weights_only=True)["settings"],
        "log": [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()],
    }


def main() -> None:
    """Evaluate and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs="+", required=True,
                        help="train-cpips --distill output folders (head.pt, triplets.pt, log.jsonl); one row each")
    parser.add_argument("--trunks", default=str(SHARED / "reference" / "imagenet_features"))
    parser.add_argument("--kodak", default=str(SHARED / "eval" / "kodak"))
    parser.add_argument("--count", type=int, default=1000, help="triplets per Kodak set; 0 skips them (default 1000)")
    parser.add_argument("--no-iqa", action="store_true", help="skip csiq_1600_subset and tid2013_calibration")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    runs = {f"CPIPS distilled ({Path(run).name})": Path(run) for run in args.run}
    model = load_codec("codecloss-small-mse")
    start = time.perf_counter()
    result = evaluate_distilled_heads(
        {"CPIPS uniform": "uniform", **{name: str(run / "head.pt") for name, run in runs.items()}}, args.kodak,
        args.trunks, args.count, args.crop, HELD_OUT_KINDS, TRAIN_KINDS, args.seed,
        csiq=None if args.no_iqa else SHARED / "iqa" / "csiq_1600_subset",
        tid2013=None if args.no_iqa else SHARED / "iqa" / "tid2013_calibration", codec=lambda x: model(x)["x_hat"],
    )
    result["training"] = {name: _training(run) for name, run in runs.items()}
    result["eval_seconds"] = round(time.perf_counter() - start, 1)
    result["environment"] = {"codecloss": codecloss.__version__, "torch": torch.__version__, "threads": args.threads,
                             "machine": platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
