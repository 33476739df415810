"""``codecloss metric A B``: CPIPS distance between two images, or between two folders matched by file name.

Examples::

    codecloss metric ref.png distorted.png
    codecloss metric refs/ outputs/ --json --weights runs/default/g_a.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def parse_weights(text: str) -> str | None:
    """``--weights`` value: ``"none"`` (any case) means random initialisation."""
    return None if text.lower() == "none" else text


def add_cpips_arguments(parser: argparse.ArgumentParser, heads: bool = True, several_weights: bool = False) -> None:
    """Add the options that choose a CPIPS model: --backbone, --weights, --heads, --layers, --device.

    With ``several_weights``, ``--weights`` takes one or more values (a list, one model each).
    """
    from codecloss.backbones import DEFAULT_BACKBONE

    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"backbone id (default {DEFAULT_BACKBONE})")
    parser.add_argument(
        "--weights", type=parse_weights, nargs="+" if several_weights else None,
        default=["default"] if several_weights else "default",
        help="backbone weights: 'default', a registry name, a checkpoint path, or 'none' (random init)"
             + ("; several values give one CPIPS row each" if several_weights else ""),
    )
    if heads:
        parser.add_argument("--heads", default="uniform",
                            help="'uniform' (uncalibrated, default), a head file, or a registry name")
    parser.add_argument("--layers", nargs="+", metavar="TAP", default=None, help="taps (default: the backbone's)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``metric`` subcommand."""
    p = subparsers.add_parser(
        "metric",
        help="CPIPS distance between two images or two folders of images",
        description=(
            "Print the CPIPS distance (lower = more similar) between image A and image B, or between "
            "the files of the same name in folders A and B. Images are read as RGB, uint8 / 255. A pair "
            "that cannot be scored (missing or unreadable file, different sizes) is reported and the "
            "others still run; the exit code is then 1."
        ),
    )
    p.add_argument("a", help="image file or folder")
    p.add_argument("b", help="image file or folder (same kind as A)")
    add_cpips_arguments(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def _pairs(a: Path, b: Path) -> list[tuple[Path, Path]]:
    from codecloss.evaluate.images import list_images

    if a.is_dir() != b.is_dir():
        raise ValueError(f"a, b: expected two files or two folders, got {str(a)!r} and {str(b)!r}")
    if not a.is_dir():
        return [(a, b)]
    files_a, files_b = list_images(a), list_images(b)
    names = sorted(set(files_a) | set(files_b))
    if not names:
        raise ValueError(f"a, b: no image files in {str(a)!r} or {str(b)!r}")
    return [(files_a.get(name, a / name), files_b.get(name, b / name)) for name in names]


def run(args: argparse.Namespace) -> int:
    """Score every pair; exit 1 if any pair failed."""
    import torch

    from codecloss.cpips import CPIPS
    from codecloss.evaluate.images import read_image

    pairs = _pairs(Path(args.a), Path(args.b))
    device = torch.device(args.device)
    model = CPIPS(args.backbone, layers=args.layers, weights=args.weights, heads=args.heads)
    model = model.to(device).requires_grad_(False).eval()
    results: list[dict[str, Any]] = []
    for path_a, path_b in pairs:
        record: dict[str, Any] = {"a": str(path_a), "b": str(path_b)}
        try:
            x, y = read_image(path_a), read_image(path_b)
            with torch.no_grad():
                record["distance"] = float(model(x.to(device), y.to(device))[0])
        except (FileNotFoundError, ValueError, TypeError) as err:
            record["error"] = str(err)
            print(f"codecloss metric: error: {path_a} vs {path_b}: {err}", file=sys.stderr)
        else:
            if not args.json:
                print(f"{path_a}\t{path_b}\t{record['distance']:.6f}")
        results.append(record)
    failed = sum("error" in r for r in results)
    if args.json:
        print(json.dumps({"backbone": args.backbone, "weights": args.weights, "heads": args.heads,
                          "pairs": results, "failed": failed}, indent=2))
    return 1 if failed else 0
