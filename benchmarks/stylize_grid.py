"""The stylize grid behind docs/tasks.md: contents x styles (plus texture synthesis), every method, every judge.

Methods (all with :func:`codecloss.tasks.gatys.run_stylize`'s default recipe unless named):

- ``content``: the content image itself (no optimisation; for textures, uniform noise): the floor control.
- ``codec``: the embedded default backbone, trained weights.
- ``codec-random``: the same architecture at random initialisation (control).
- ``vgg19-random``: Gatys' VGG19 taps at random initialisation, seed 0 (control; ImageNet weights are
  not available here, pass ``--vgg-weights FILE`` to add ``vgg19`` with them).
- any other name: that backbone id at random init (e.g. a zoo architecture).
- ``--candidate NAME BACKBONE WEIGHTS [TAP ...]``: a trained candidate loss network (e.g. an exported
  ``codecloss train-codec`` run), named NAME in the results; TAPs replace the default Gram taps (e.g. to add a
  hyperprior's ``h1 h2``).
- ``--recipe NAME KEY=VALUE ...``: method NAME's own :func:`~codecloss.tasks.gatys.run_stylize` options instead of
  the default recipe (e.g. a VGG16 row with Gatys's weights and noise start: ``style_weight=100 init=noise``).

Judges (:mod:`codecloss.tasks.judges`) share nothing with any loss. The run is resumable: a cell whose
record is in the JSON is skipped.

Usage::

    python benchmarks/stylize_grid.py --out runs/stylize-grid-256 --size 256 --methods content codec codec-random
    python benchmarks/stylize_grid.py --out runs/stylize-grid-128 --size 128
    python benchmarks/stylize_grid.py --out runs/stylize-grid-256 --methods content codec \
        --candidate wide bmshj2018-factorized-mse-q1 runs/candidates/wide.pth
    python benchmarks/stylize_grid.py --out runs/stylize-grid-256 --methods content \
        --candidate vgg16-gatys vgg16 $CODECLOSS_TRUNKS/vgg16_features.pth --recipe vgg16-gatys style_weight=100
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import torch
from torchvision.utils import save_image

from codecloss._dtype import TASK_DTYPES
from codecloss.evaluate.images import read_image, save_montage
from codecloss.tasks.judges import judge_style
from codecloss.tasks.gatys import resize_shorter, run_stylize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "style"
CONTENTS = ("tubingen", "golden_gate", "lion", "hoovertowernight")
STYLES = ("starry_night", "the_scream", "udnie", "shipwreck")
#: run_stylize options ``--recipe`` may set (``*_layers`` take comma-separated taps).
RECIPE_KEYS = ("content_weight", "style_weight", "tv_weight", "steps", "optimizer", "lr", "init", "scales",
               "content_layers", "style_layers")
METHODS = {
    "codec": {},
    "codec-random": {"weights": None},
    "vgg19-random": {"backbone": "vgg19", "weights": None},
}

logger = logging.getLogger("stylize_grid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=["content", *METHODS])
    parser.add_argument("--contents", nargs="+", default=list(CONTENTS))
    parser.add_argument("--styles", nargs="+", default=list(STYLES))
    parser.add_argument("--no-textures", action="store_true", help="skip texture synthesis (content 'none')")
    parser.add_argument("--vgg-weights", help="torchvision VGG19 state dict: adds the method 'vgg19'")
    parser.add_argument("--candidate", nargs="+", action="append", default=[], metavar="NAME BACKBONE WEIGHTS [TAP",
                        help="adds the method NAME: BACKBONE with the weights file WEIGHTS, and the Gram taps TAP ... "
                             "instead of the default ones if given (repeatable)")
    parser.add_argument("--recipe", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
                        help=f"run_stylize options of method NAME instead of the default recipe, keys {', '.join(RECIPE_KEYS)} "
                             "(repeatable)")
    parser.add_argument("--dtype", choices=TASK_DTYPES, default="float32",
                        help="compute dtype of every method's loss network (run_stylize's dtype; default float32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--montage", type=Path, help="also write the grid as one picture (rows: content x style)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    methods = {name: METHODS.get(name, {} if name == "content" else {"backbone": name, "weights": None})
               for name in args.methods}
    if args.vgg_weights:
        methods["vgg19"] = {"backbone": "vgg19", "weights": args.vgg_weights}
    for values in args.candidate:
        if len(values) < 3:
            parser.error(f"--candidate: expected NAME BACKBONE WEIGHTS [TAP ...], got {values}")
        name, backbone, weights, *taps = values
        methods[name] = {"backbone": backbone, "weights": weights} | ({"style_layers": taps} if taps else {})
    for name, *pairs in args.recipe:
        if name not in methods:
            parser.error(f"--recipe: method {name!r} is not run here (methods: {', '.join(methods)})")
        methods[name] = methods[name] | _recipe(pairs, parser)
    args.out.mkdir(parents=True, exist_ok=True)
    record_file = args.out / "results.json"
    records = json.loads(record_file.read_text()) if record_file.exists() else {"size": args.size, "dtype": args.dtype, "cells": []}
    if (records["size"], records.get("dtype", "float32")) != (args.size, args.dtype):
        parser.error(f"--out: {record_file} holds cells at size {records['size']}, dtype {records.get('dtype', 'float32')}; "
                     f"got --size {args.size} --dtype {args.dtype}")
    recorded = records.setdefault("methods", {})
    for name, options in methods.items():
        if recorded.setdefault(name, options) != options:
            parser.error(f"--out: {record_file} ran method {name!r} with {recorded[name]}, got {options}; use another --out")
    done = {(r["content"], r["style"], r["method"]) for r in records["cells"]}
    contents = list(args.contents) + ([] if args.no_textures else ["none"])
    for style in args.styles:
        style_image = read_image(DATA / "style" / f"{style}.jpg")[None]
        for content in contents:
            content_image = None if content == "none" else read_image(DATA / "content" / f"{content}.jpg")[None]
            for method, options in methods.items():
                if (content, style, method) in done:
                    continue
                if method == "content":
                    image, seconds = _control(content_image, args.size), 0.0
                else:
                    result = run_stylize(content_image, style_image, size=args.size, dtype=args.dtype, **options)
                    image, seconds = result.image, result.seconds
                save_image(image, args.out / f"{content}__{style}__{method}.png")
                scores = judge_style(image, style_image, content_image)
                records["cells"].append({"content": content, "style": style, "method": method,
                                         "seconds": round(seconds, 2), **scores})
                logger.info("%s %s %s %.1fs %s", content, style, method, seconds, scores)
                record_file.write_text(json.dumps(records, indent=1))
    records["summary"] = _summary(records["cells"])
    record_file.write_text(json.dumps(records, indent=1))
    print(_table(records["summary"]))
    if args.montage:
        _montage(args.out, contents, args.styles, list(methods), args.montage)


def _recipe(pairs: list[str], parser: argparse.ArgumentParser) -> dict:
    """``KEY=VALUE`` strings as run_stylize options: numbers as numbers, ``*_layers`` as lists of taps."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in RECIPE_KEYS:
            parser.error(f"--recipe: expected KEY=VALUE with KEY in {', '.join(RECIPE_KEYS)}, got {pair!r}")
        if key.endswith("_layers"):
            options[key] = value.split(",")
        else:
            try:
                options[key] = json.loads(value)
            except json.JSONDecodeError:
                options[key] = value
    return options


def _montage(folder: Path, contents: list[str], styles: list[str], methods: list[str], path: Path) -> None:
    """One row per (content, style): the content, the style, then each method's result, as ``path`` (JPEG/PNG)."""
    shown = [m for m in methods if m != "content"]
    rows = []
    for content in contents:
        for style in styles:
            first = torch.ones(3, 160, 160) if content == "none" else read_image(DATA / "content" / f"{content}.jpg")
            rows.append([first, read_image(DATA / "style" / f"{style}.jpg")]
                        + [read_image(folder / f"{content}__{style}__{m}.png") for m in shown])
    save_montage(rows, path)


def _control(content: torch.Tensor | None, size: int) -> torch.Tensor:
    if content is None:
        return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    return resize_shorter(content, size)


def _summary(cells: list[dict]) -> dict:
    """Mean of each judge per method, separately for transfer and texture cells."""
    out: dict = {}
    for kind, keep in (("transfer", lambda c: c["content"] != "none"), ("texture", lambda c: c["content"] == "none")):
        for method in dict.fromkeys(c["method"] for c in cells):
            chosen = [c for c in cells if c["method"] == method and keep(c)]
            if chosen:
                keys = [k for k in chosen[0] if k not in ("content", "style", "method")]
                out.setdefault(kind, {})[method] = {
                    k: round(statistics.fmean(c[k] for c in chosen), 4) for k in keys} | {"cells": len(chosen)}
    return out


def _table(summary: dict) -> str:
    lines = []
    for kind, methods in summary.items():
        keys = list(next(iter(methods.values())))
        lines += [f"## {kind}", "| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += [f"| {m} | " + " | ".join(str(v[k]) for k in keys) + " |" for m, v in methods.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
