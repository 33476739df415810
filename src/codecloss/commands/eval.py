"""``codecloss eval bapps|mos|sanity|equal-mse|recovery``: CPIPS next to PSNR/SSIM/MS-SSIM and, given the ImageNet
trunk files (``--trunks DIR`` or ``CODECLOSS_TRUNKS``), LPIPS-Alex, LPIPS-VGG and DISTS.

Examples::

    codecloss eval bapps --root dataset --weights runs/default/g_a.pt --plot bapps.png
    codecloss eval mos --layout tid2013 --root data/tid2013 --trunks ../shared/data/reference/imagenet_features --json
    codecloss eval sanity --weights runs/default/g_a.pt none --images 6
    codecloss eval recovery --weights default none --images 3 --crop 128 --steps 300
    codecloss eval equal-mse --weights default none --images 24 --psnr 24 28
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from codecloss._progress import add_progress_argument
from codecloss.commands.metric import add_cpips_arguments, start_ranks

logger = logging.getLogger(__name__)

DEFAULT_KODAK = "../shared/data/eval/kodak"
DEFAULT_CSIQ_SUBSET = "../shared/data/iqa/csiq_1600_subset"


def _add_common(p: argparse.ArgumentParser) -> None:
    add_cpips_arguments(p, several_weights=True)
    p.add_argument("--no-baselines", dest="baselines", action="store_false", help="CPIPS rows only")
    p.add_argument("--trunks", metavar="DIR", default=None,
                   help="folder of the ImageNet trunk files (alexnet_features.pth, vgg16_features.pth) of the "
                        "LPIPS-Alex, LPIPS-VGG and DISTS rows (default: $CODECLOSS_TRUNKS; without: skipped)")
    p.add_argument("--json", action="store_true", help="print the tables as JSON")
    p.add_argument("--plot", metavar="PATH", help="also write a PNG bar chart")
    add_progress_argument(p)


def _add_image_set(p: argparse.ArgumentParser, what: str, images: int, crop: int) -> None:
    """``--root``, ``--images`` and ``--crop`` of the modes that read a folder of clean images."""
    p.add_argument("--root", default=DEFAULT_KODAK, help=f"{what} (default {DEFAULT_KODAK})")
    p.add_argument("--images", type=int, default=images, help=f"first N images (default {images})")
    p.add_argument("--crop", type=int, default=crop, help=f"centre crop side, 0 for full images (default {crop})")


HELP = "evaluate CPIPS and baselines (BAPPS, MOS datasets, sanity checks, reference recovery)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand and its ``bapps``, ``mos``, ``sanity``, ``equal-mse`` and ``recovery`` modes."""
    p = subparsers.add_parser(
        "eval",
        help=HELP,
        description="Evaluate CPIPS next to PSNR, SSIM, MS-SSIM (piq) and LPIPS-Alex, LPIPS-VGG and DISTS on the "
                    "ImageNet trunk files of --trunks or CODECLOSS_TRUNKS (skipped without them), in one table.",
    )
    modes = p.add_subparsers(dest="mode", metavar="MODE", required=True)

    b = modes.add_parser("bapps", help="BAPPS 2AFC score and JND mAP per category",
                         description="2AFC score per category and JND mAP on the official BAPPS layout "
                                     "(ROOT/2afc/<split>/<category>/, ROOT/jnd/val/<category>/).")
    b.add_argument("--root", required=True, help="BAPPS root (holding 2afc/ and/or jnd/)")
    b.add_argument("--split", default="val", help="split folder (default val)")
    b.add_argument("--categories", nargs="+", help="category folders (default: all present)")
    b.add_argument("--modes", nargs="+", choices=("2afc", "jnd"), default=["2afc", "jnd"], help="what to score")
    b.add_argument("--batch-size", type=int, default=50, help="patches per forward (default 50)")
    b.add_argument("--num-workers", type=int, default=0, help="image-decoding workers (default 0)")
    b.add_argument("--limit", type=int, help="only the first N items per category (quick look)")
    _add_common(b)
    b.set_defaults(func=run_bapps)

    m = modes.add_parser("mos", help="SRCC / PLCC / KRCC on TID2013, KADID-10k, CSIQ or LIVE",
                         description="Correlation with subjective scores; see docs/metric.md for the layouts.")
    m.add_argument("--layout", required=True, choices=("tid2013", "kadid10k", "csiq", "live"), help="dataset layout")
    m.add_argument("--root", required=True, help="dataset folder")
    m.add_argument("--limit", type=int, help="only the first N images (quick look)")
    _add_common(m)
    m.set_defaults(func=run_mos)

    s = modes.add_parser("sanity", help="ordering of synthetic distortion levels and of a DMOS subset",
                         description="Sanity checks (not human agreement): the fraction of level pairs of five "
                                     "synthetic distortions ordered correctly on clean images, and the ordering "
                                     "vs DMOS within each distortion type of a CSIQ subset.")
    _add_image_set(s, "clean images", images=6, crop=256)
    s.add_argument("--csiq", default=DEFAULT_CSIQ_SUBSET,
                   help=f"DMOS subset folder with example.json, or 'none' (default {DEFAULT_CSIQ_SUBSET})")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise and of random-init backbones (default 0)")
    _add_common(s)
    s.set_defaults(func=run_sanity)

    e = modes.add_parser("equal-mse", help="benign (brightness, contrast) vs harmful (noise, blur, JPEG) at equal MSE",
                         description="Sanity check (not human agreement; Wang & Bovik 2009): at each PSNR level, "
                                     "the JPEG quality closest to it fixes the MSE and a brightness shift, a contrast "
                                     "stretch, Gaussian noise and Gaussian blur are each set to that MSE; reports the "
                                     "fraction of (benign, harmful) pairs where the benign change is closer.")
    _add_image_set(e, "clean held-out images", images=24, crop=256)
    e.add_argument("--psnr", type=float, nargs="+", default=[24.0, 28.0], help="PSNR levels in dB (default 24 28)")
    e.add_argument("--seed", type=int, default=0, help="seed of the noise and of random-init backbones (default 0)")
    _add_common(e)
    e.set_defaults(func=run_equal_mse)

    r = modes.add_parser("recovery", help="reference recovery: minimise d(x, ref) from noise or blur (blind spots)",
                         description="Blind-spot check (Ding et al., IJCV 2021), not human agreement: starting "
                                     "from noise or a degraded reference, minimise each distance to the reference "
                                     "over the pixels (Adam, clamped to [0, 1] after every step) and report PSNR and "
                                     "SSIM of the result against the reference, and the distance before and after. "
                                     "Rows: each CPIPS, plain MSE, and the unnormalised feature L2 on each CPIPS "
                                     "encoder.")
    _add_image_set(r, "reference images", images=3, crop=128)
    r.add_argument("--init", nargs="+", default=None,
                   help="starting images: uniform (noise), noisy (reference + noise of std 0.3), blur (sigma 4 px); "
                        "default: all three")
    r.add_argument("--steps", type=int, default=300, help="Adam steps (default 300)")
    r.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    r.add_argument("--seed", type=int, default=0,
                   help="seed of the starting images and of random-init backbones (default 0)")
    r.add_argument("--save", metavar="DIR", help="also write the starting and recovered images as PNG under DIR")
    _add_common(r)
    r.set_defaults(func=run_recovery)


def _cpips_configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    from codecloss._validate import check_device

    check_device(args.device, "--device")  # every mode builds its CPIPS rows here
    configs = []
    for weights in args.weights:
        label = "random init" if weights is None else Path(weights).name if os.sep in str(weights) else weights
        name = "CPIPS" if len(args.weights) == 1 else f"CPIPS [{label}]"
        configs.append({"name": name, "backbone": args.backbone, "weights": weights, "heads": args.heads,
                        "layers": args.layers})
    return configs


def _scorers(args: argparse.Namespace) -> list[Any]:
    from codecloss._distributed import local_device
    from codecloss.evaluate.scorers import build_scorers

    return build_scorers(_cpips_configs(args), baselines=args.baselines, device=local_device(args.device),
                         trunks=_trunks(args))


def _trunks(args: argparse.Namespace) -> str | None:
    """``--trunks``, checked to be a folder (``None``: ``CODECLOSS_TRUNKS`` decides)."""
    if args.trunks is not None and not Path(args.trunks).is_dir():
        raise FileNotFoundError(f"--trunks: no such folder {args.trunks!r}")
    return args.trunks


def _output(args: argparse.Namespace, tables: list[Any]) -> int:
    from codecloss._distributed import rank_and_world

    if rank_and_world()[0] > 0:  # under torchrun every rank holds the tables; rank 0 prints them
        return 0
    settings = {"backbone": args.backbone, "weights": args.weights, "heads": args.heads, "layers": args.layers}
    if args.json:
        print(json.dumps({"settings": settings, "tables": [t.to_dict() for t in tables]}, indent=2))
    else:
        print(f"CPIPS settings: {settings}")
        for table in tables:
            print()
            print(table.format())
    if args.plot:
        from codecloss.evaluate.report import plot_tables

        path = plot_tables(tables, args.plot)
        logger.info("wrote %s", path)
    return 0


def run_bapps(args: argparse.Namespace) -> int:
    """``codecloss eval bapps``."""
    from codecloss.evaluate.bapps import evaluate_bapps

    _, world = start_ranks(args)
    tables = evaluate_bapps(args.root, _scorers(args), modes=args.modes, split=args.split,
                            categories=args.categories, batch_size=args.batch_size, num_workers=args.num_workers,
                            limit=args.limit, progress=args.progress, distributed=world > 1)
    return _output(args, tables)


def run_mos(args: argparse.Namespace) -> int:
    """``codecloss eval mos``."""
    from codecloss.evaluate.mos import evaluate_mos

    _, world = start_ranks(args)
    return _output(args, [evaluate_mos(args.layout, args.root, _scorers(args), limit=args.limit,
                                       progress=args.progress, distributed=world > 1)])


def run_sanity(args: argparse.Namespace) -> int:
    """``codecloss eval sanity``."""
    import torch

    from codecloss.evaluate.sanity import evaluate_ordered_subset, evaluate_synthetic

    torch.manual_seed(args.seed)  # random-init backbones (--weights none) draw from the global generator
    scorers = _scorers(args)
    tables = [evaluate_synthetic(args.root, scorers, images=args.images, crop=args.crop or None, seed=args.seed)]
    if args.csiq.lower() != "none":
        tables.append(evaluate_ordered_subset(args.csiq, scorers))
    return _output(args, tables)


def run_equal_mse(args: argparse.Namespace) -> int:
    """``codecloss eval equal-mse``."""
    import torch

    from codecloss.evaluate.equal_mse import evaluate_equal_mse

    torch.manual_seed(args.seed)  # random-init backbones (--weights none) draw from the global generator
    table = evaluate_equal_mse(args.root, _scorers(args), images=args.images, crop=args.crop or None,
                               psnrs=args.psnr, seed=args.seed)
    return _output(args, [table])


def run_recovery(args: argparse.Namespace) -> int:
    """``codecloss eval recovery``."""
    import torch

    from codecloss.evaluate.recovery import DEFAULT_INITS, evaluate_recovery, recovery_scorers

    torch.manual_seed(args.seed)  # random-init backbones (--weights none) draw from the global generator
    scorers = recovery_scorers(_cpips_configs(args), baselines=args.baselines, device=args.device, trunks=_trunks(args))
    tables = evaluate_recovery(args.root, scorers, images=args.images, crop=args.crop or None,
                               inits=args.init or DEFAULT_INITS, steps=args.steps, lr=args.lr, seed=args.seed,
                               save_dir=args.save, progress=args.progress)
    return _output(args, tables)
