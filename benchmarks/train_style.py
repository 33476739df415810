"""Feed-forward stylizers head to head (docs/tasks.md): the same network, data order, seed and steps per loss.

Each (style, loss) cell trains with :func:`codecloss.tasks.train_style.train_stylizer` in ``OUT/{style}-{loss}``
(resumable: rerun the same command to continue after an interruption), then stylizes the six photos of
``../shared/data/style/content`` at ``--judge-size`` and scores them with :func:`codecloss.tasks.judges.judge_style`
(judges that share nothing with the codec losses; DISTS shares the VGG16 trunk with the ``vgg16`` row).

Rows: ``content`` (the photo itself, untrained: the floor control), ``codec`` (the embedded default), ``codec-small`` (``codecloss-small-mse``), ``codec-random`` (the default's
architecture at random init, the control) and ``vgg16`` (the ImageNet trunk; ``--trunks DIR`` or ``$CODECLOSS_TRUNKS``),
and any ``--candidate NAME BACKBONE WEIGHTS [TAP ...]`` (a trained codec file, e.g. a ``codecloss train-codec``
export; TAPs replace the default Gram taps).

Usage::

    python benchmarks/train_style.py --out runs/train-style --styles starry_night --losses codec vgg16 \\
        --json benchmarks/results/train_style.json --montage docs/images/train_style.jpg --models benchmarks/models
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path

import torch

from codecloss._data_paths import CONTENT_DIR, NATURAL_TRAIN_DIRS, STYLE_DIR
from codecloss._dtype import TASK_DTYPES, compute_context, fast_bf16_available
from codecloss.evaluate.images import list_images, read_image, save_montage
from codecloss.tasks.gatys import resize_shorter
from codecloss.tasks.judges import judge_style
from codecloss.tasks.stylizer_net import load_stylizer
from codecloss.tasks.train_style import StyleTrainConfig, train_stylizer

ROOT = Path(__file__).resolve().parents[1]
#: Loss name -> StyleTrainConfig overrides.
LOSSES = {
    "codec": {"loss": "codec"},
    "codec-small": {"loss": "codec", "backbone": "codecloss-small-mse"},
    "codec-random": {"loss": "codec-random"},
    "vgg16": {"loss": "vgg16", "weights": None},
}

DEFAULT_CONTENT_WEIGHT = StyleTrainConfig.content_weight
logger = logging.getLogger("train_style")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run folder (one sub-folder per cell)")
    parser.add_argument("--styles", nargs="+", default=["starry_night", "udnie", "the_scream"])
    parser.add_argument("--losses", nargs="+", default=["content", *LOSSES],
                        help=f"rows: content, {', '.join(LOSSES)} or a --candidate NAME (default: all but candidates)")
    parser.add_argument("--candidate", nargs="+", action="append", default=[], metavar="NAME BACKBONE WEIGHTS [TAP",
                        help="adds the loss NAME: the codec BACKBONE with the weights file WEIGHTS, and the Gram taps "
                             "TAP ... instead of the default ones if given (repeatable)")
    parser.add_argument("--steps", type=int, help="training steps (default: train-style's default)")
    parser.add_argument("--dtype", choices=TASK_DTYPES, default="float32", help="loss networks' compute dtype")
    parser.add_argument("--judge-size", type=int, default=256, help="shorter side of the judged outputs")
    parser.add_argument("--json", type=Path, help="write the cells and the per-loss summary here")
    parser.add_argument("--montage", type=Path, help="contents x (style, loss) picture")
    parser.add_argument("--models", type=Path, help="copy each trained model here as {style}-{loss}.pth")
    parser.add_argument("--content-weight", type=float, nargs="+", default=[DEFAULT_CONTENT_WEIGHT],
                        help="content weight(s) of the trained rows, one row per loss and weight (default: "
                             "train-style's); rows at another weight than the default are labelled LOSS-cwW, e.g. to "
                             "match VGG16's SSIM to content with the codec's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-sizes", type=int, nargs="*", default=[512, 1024],
                        help="also time one forward pass of each model at these square sizes (median of 3)")
    args = parser.parse_args()
    for values in args.candidate:
        if len(values) < 3:
            parser.error(f"--candidate: expected NAME BACKBONE WEIGHTS [TAP ...], got {values}")
        name, backbone, weights, *taps = values
        LOSSES[name] = {"loss": "codec", "backbone": backbone, "weights": weights} | ({"style_layers": taps} if taps else {})
    unknown = [loss for loss in args.losses if loss != "content" and loss not in LOSSES]
    if unknown:
        parser.error(f"--losses: unknown {unknown}; expected content, {', '.join(LOSSES)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    contents = {Path(name).stem: read_image(path)[None] for name, path in list_images(ROOT / CONTENT_DIR).items()}
    cells, runs, rows = [], {}, {name: [resize_shorter(image, args.judge_size)[0]] for name, image in contents.items()}
    for style in args.styles:
        style_path = ROOT / STYLE_DIR / f"{style}.jpg"
        style_image = read_image(style_path)[None]
        rows_of_style = [("content", None) if loss == "content" else (loss, weight)
                         for loss in args.losses for weight in ([None] if loss == "content" else args.content_weight)]
        for loss, weight in rows_of_style:
            label = _label(loss, weight)
            if loss == "content":
                model: torch.nn.Module = torch.nn.Identity()
            else:
                model = _trained(args, style, style_path, loss, weight, f"{style}-{label}", runs)
            for name, content in contents.items():
                content = resize_shorter(content, args.judge_size)
                with torch.inference_mode():
                    result = model(content)
                cells.append({"style": style, "loss": label, "content": name, **judge_style(result, style_image, content)})
                rows[name].append(result[0])
                logger.info("%s", cells[-1])
    summary = _summary(cells)
    by_style = {style: _summary([c for c in cells if c["style"] == style]) for style in dict.fromkeys(c["style"] for c in cells)}
    print(json.dumps({"summary": summary, "runs": runs}, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "by_style": by_style, "runs": runs, "cells": cells}, indent=1) + "\n")
    if args.montage:
        style_row = [torch.ones(3, 8, 8)] + [read_image(ROOT / STYLE_DIR / f"{s}.jpg") for s in args.styles for _ in rows_of_style]
        save_montage([style_row, *rows.values()], args.montage)


def _label(loss: str, content_weight: float | None) -> str:
    """A row's name: the loss, with ``-cwW`` when its content weight is not train-style's default."""
    return loss if content_weight in (None, DEFAULT_CONTENT_WEIGHT) else f"{loss}-cw{content_weight:g}"


def _trained(args: argparse.Namespace, style: str, style_path: Path, loss: str, content_weight: float, cell: str,
             runs: dict) -> torch.nn.Module:
    """Train (or resume) one cell, record its cost in ``runs``, copy its model, and load it."""
    settings = {"style": str(style_path), "out_dir": str(args.out / cell),
                "data_dirs": [str(ROOT / d) for d in NATURAL_TRAIN_DIRS],
                "dtype": args.dtype, **LOSSES[loss]}
    if args.steps:
        settings["steps"] = args.steps
    settings["content_weight"] = content_weight
    summary = train_stylizer(StyleTrainConfig(**settings), resume=True, progress=None)
    runs[cell] = {k: summary[k] for k in ("steps", "train_seconds", "seconds_per_step", "peak_memory_mib")}
    model = load_stylizer(summary["model"])
    runs[cell]["inference_seconds"] = {side: _time_forward(model, side) for side in args.time_sizes}
    if fast_bf16_available():
        runs[cell]["inference_seconds_bfloat16"] = {side: _time_forward(model, side, torch.bfloat16) for side in args.time_sizes}
    if args.models:
        args.models.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(summary["model"], args.models / f"{cell}.pth")
    return model


def _time_forward(model: torch.nn.Module, side: int, dtype: torch.dtype = torch.float32, reps: int = 3) -> float:
    """Median wall time of one forward pass on a ``side`` x ``side`` image, computed in ``dtype``."""
    image = torch.rand(1, 3, side, side)
    times = []
    with torch.inference_mode(), compute_context(dtype, image.device):
        for _ in range(reps):
            start = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4)


def _summary(cells: list[dict]) -> dict:
    """Mean of each judge per loss, over contents and styles."""
    out = {}
    for loss in dict.fromkeys(c["loss"] for c in cells):
        chosen = [c for c in cells if c["loss"] == loss]
        keys = [k for k in chosen[0] if k not in ("style", "loss", "content")]
        out[loss] = {k: round(statistics.fmean(c[k] for c in chosen), 4) for k in keys} | {"cells": len(chosen)}
    return out


if __name__ == "__main__":
    main()
