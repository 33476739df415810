"""``codecloss metric A B``: CPIPS distance between two images, or between two folders matched by file name.

Examples::

    codecloss metric ref.png distorted.png
    codecloss metric refs/ outputs/ --json --weights runs/default/g_a.pt
    codecloss metric big_ref.png big_out.png --max-pixels 0 --tile 512    # always tiled, 512-pixel tiles
    torchrun --nproc_per_node 4 -m codecloss metric refs/ outputs/ --json  # pairs sharded across 4 processes
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Images with more pixels than this are evaluated in tiles by default (``--max-pixels``).
DEFAULT_MAX_PIXELS = 2048 * 2048
#: Default owned tile side of tiled evaluation (``--tile``).
DEFAULT_TILE = 1024


def start_ranks(args: argparse.Namespace) -> tuple[int, int]:
    """Join torchrun's process group when launched by it and quiet the ranks other than 0.

    Ranks > 0 show no progress bar and log errors only; the command prints on rank 0 alone.

    Returns:
        (rank, world size), ``(0, 1)`` outside torchrun.
    """
    from codecloss._distributed import init_from_env

    rank, world = init_from_env()
    if rank > 0:
        logging.getLogger().setLevel(logging.ERROR)
        if hasattr(args, "progress"):
            args.progress = False
    return rank, world


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {value}")
    return value


def parse_weights(text: str) -> str | None:
    """``--weights`` value: ``"none"`` (any case) means random initialisation."""
    return None if text.lower() == "none" else text


def add_cpips_arguments(parser: argparse.ArgumentParser, heads: bool = True, several_weights: bool = False) -> None:
    """Add the options that choose a CPIPS model: --backbone, --weights, --heads, --layers, --device.

    With ``several_weights``, ``--weights`` takes one or more values (a list, one model each).
    """
    from codecloss._default import DEFAULT_BACKBONE

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


HELP = "CPIPS distance between two images or two folders of images"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``metric`` subcommand."""
    p = subparsers.add_parser(
        "metric",
        help=HELP,
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
    p.add_argument("--max-pixels", type=_non_negative_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"evaluate images of more than N pixels in exact overlapping tiles, in bounded memory "
                        f"(default {DEFAULT_MAX_PIXELS} = 2048x2048; 0 tiles every image)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, metavar="PIXELS",
                   help=f"tile side when tiling, at least the deepest tap's stride (default {DEFAULT_TILE})")
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


def _score(model: Any, path_a: Path, path_b: Path, device: Any, max_pixels: int, tile: int) -> dict[str, Any]:
    """One pair's record: ``distance``, or ``error`` when it cannot be scored."""
    import torch

    from codecloss.evaluate.images import read_image_uint8

    record: dict[str, Any] = {"a": str(path_a), "b": str(path_b)}
    try:
        x, y = read_image_uint8(path_a), read_image_uint8(path_b)  # float copies are made tile by tile
        model.tile = tile if x.shape[-2] * x.shape[-1] > max_pixels else None
        with torch.no_grad():
            record["distance"] = float(model.forward_uint8(x.to(device), y.to(device))[0])
    except (FileNotFoundError, ValueError, TypeError) as err:
        record["error"] = str(err)
    return record


def _report(record: dict[str, Any], as_json: bool) -> None:
    if "error" in record:
        print(f"codecloss metric: error: {record['a']} vs {record['b']}: {record['error']}", file=sys.stderr)
    elif not as_json:
        print(f"{record['a']}\t{record['b']}\t{record['distance']:.6f}")


def run(args: argparse.Namespace) -> int:
    """Score every pair (sharded across ranks under torchrun); exit 1 if any pair failed."""
    from codecloss._distributed import gather_in_order, local_device, shard
    from codecloss._validate import check_device
    from codecloss.cpips import CPIPS

    rank, world = start_ranks(args)
    pairs = _pairs(Path(args.a), Path(args.b))
    device = local_device(check_device(args.device, "--device"))
    model = CPIPS(args.backbone, layers=args.layers, weights=args.weights, heads=args.heads, tile=args.tile)
    model = model.to(device).requires_grad_(False).eval()
    local = []
    for index in shard(len(pairs)):
        local.append(_score(model, *pairs[index], device, args.max_pixels, args.tile))
        if world == 1:  # one process: report as it goes
            _report(local[-1], args.json)
    results = gather_in_order(local)
    if rank > 0:
        return 1 if any("error" in r for r in results) else 0
    if world > 1:
        for record in results:
            _report(record, args.json)
    failed = sum("error" in r for r in results)
    if args.json:
        print(json.dumps({"backbone": args.backbone, "weights": args.weights, "heads": args.heads,
                          "pairs": results, "failed": failed}, indent=2))
    return 1 if failed else 0
