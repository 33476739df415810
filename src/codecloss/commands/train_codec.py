"""``codecloss train-codec``: rate-distortion training of a CompressAI codec, resume and export.

Examples::

    codecloss train-codec --out runs/default --steps 60000 --num-threads 2
    codecloss train-codec --out runs/default --resume --steps 80000 --lr-drop-step 60000
    codecloss train-codec --out runs/default --export-g-a g_a.pt
    codecloss train-codec --out runs/ft --init codecloss-small-mse --distortion ms-ssim --crop 192 --batch-size 4
    codecloss train-codec --out runs/sem --init codecloss-wide-mse --N 128 --M 192 --semantic-weight 0.5 \
        --teacher-weights ../shared/data/reference/imagenet_features/vgg16_features.pth
    torchrun --nproc_per_node 2 -m codecloss train-codec --out runs/ddp --batch-size 8   # 4 crops per rank
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from codecloss._data_paths import NATURAL_TRAIN_DIRS, NATURAL_VAL_DIR
from codecloss._progress import add_progress_argument

#: Training folders used when ``--data`` is not given (relative to the working directory).
DEFAULT_DATA_DIRS = NATURAL_TRAIN_DIRS
DEFAULT_VAL_DIR = NATURAL_VAL_DIR
DEFAULT_REFERENCE_DIR = "../shared/data/reference/compressai_kodak_rd/kodak"

logger = logging.getLogger(__name__)


def keep_freed_memory() -> bool:
    """Stop glibc from returning large freed blocks to the OS (Linux/glibc only).

    By default glibc serves every large tensor with a fresh ``mmap`` and unmaps it on free,
    so each training step page-faults its activations in again: measured on the 2-core
    training machine, FactorizedPrior(64, 96) at batch 8 of 128x128 spent 37,000 minor
    faults and 0.10 s of system time per step (0.32 s/step); with freed memory kept in the
    heap, 137 faults and 0.23 s/step. This is what ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` do, applied from inside the process the command owns.

    Returns:
        True when the allocator settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = all(
        mallopt(param, value) == 1
        for param, value in ((m_mmap_threshold, 1 << 30), (m_trim_threshold, 1 << 34), (m_top_pad, 1 << 28))
    )
    logger.debug("glibc mallopt applied: %s", ok)
    return ok


def _none_or(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _tap_pair(text: str) -> tuple[str, str]:
    """``"TAP=LAYER"`` -> ``(TAP, LAYER)`` (an argparse type)."""
    tap, sep, layer = text.partition("=")
    if not (sep and tap and layer) or "=" in layer:
        raise argparse.ArgumentTypeError(f"expected TAP=LAYER (e.g. gdn2=relu3_3), got {text!r}")
    return tap, layer


HELP = "train a CompressAI codec for rate-distortion (resume, export g_a)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-codec`` subcommand."""
    from codecloss._dtype import TASK_DTYPES

    p = subparsers.add_parser(
        "train-codec",
        help=HELP,
        description=(
            "Train a CompressAI codec with loss = lmbda*255^2*MSE + bpp (+ beta*S, a semantic term distilled from "
            "an ImageNet teacher, with --semantic-weight) on random crops of images decoded once into memory. Checkpoints go to OUT/checkpoint.pt, logs to OUT/log.jsonl. With --resume, options "
            "not given on the command line are taken from the checkpoint."
        ),
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--out", required=True, help="output folder (checkpoint.pt, log.jsonl)")
    p.add_argument("--resume", action="store_true", default=False, help="continue from OUT/checkpoint.pt")
    p.add_argument("--export-g-a", metavar="PATH", default=None, help="export g_a of OUT's checkpoint to PATH and exit")
    p.add_argument("--export-codec", metavar="PATH", default=None, help="export the full updated codec to PATH and exit")
    p.add_argument("--export-half", action="store_true", default=False,
                   help="with --export-codec: store the parameters in float16 (half the file size)")
    p.add_argument(
        "--eval-rd", metavar="DIR", default=None,
        help="evaluate OUT's checkpoint on DIR with real bitstreams vs Pillow JPEG and published CompressAI "
        "curves; writes OUT/rd.json, OUT/rd.md, OUT/rd.png and exits",
    )
    p.add_argument("--eval-images", type=int, default=None, metavar="K", help="with --eval-rd: only the first K images")
    p.add_argument(
        "--rd-runs", nargs="+", default=(), metavar="RUN",
        help="with --eval-rd: output folders of further runs of the same codec (e.g. other lambdas), "
        "one RD point each beside OUT's (enables the BD-rate against JPEG)",
    )
    p.add_argument(
        "--reference-dir", default=DEFAULT_REFERENCE_DIR, metavar="DIR",
        help=f"with --eval-rd: CompressAI results JSON folder ('none': skip) (default {DEFAULT_REFERENCE_DIR})",
    )
    p.add_argument("--json", action="store_true", default=False, help="print the result as JSON")
    p.add_argument(
        "--data", dest="data_dirs", nargs="+", metavar="DIR",
        help=f"training image folders (default: {' '.join(DEFAULT_DATA_DIRS)})",
    )
    p.add_argument(
        "--arch", choices=("factorized", "hyperprior", "mean-scale"),
        help="FactorizedPrior, ScaleHyperprior or MeanScaleHyperprior (default factorized)",
    )
    p.add_argument("--N", type=int, help="channels N (default 64)")
    p.add_argument("--M", type=int, help="latent channels M (default 96)")
    p.add_argument("--lmbda", type=float, help="rate-distortion lambda of the MSE term (default 0.0067)")
    p.add_argument(
        "--distortion", choices=("mse", "ms-ssim", "mix"),
        help="distortion objective: lmbda*255^2*MSE, ms_ssim_lmbda*(1-MS-SSIM), or (1-w)*MSE term + w*MS-SSIM "
        "term with w = --mix-weight; MS-SSIM needs --crop >= 161 (default mse)",
    )
    p.add_argument("--ms-ssim-lmbda", type=float, help="lambda of the MS-SSIM term (default 8.73, CompressAI's q3)")
    p.add_argument("--mix-weight", type=float, help="weight of the MS-SSIM term with --distortion mix (default 0.5)")
    p.add_argument(
        "--init", type=_none_or(str), metavar="BACKBONE_OR_FILE",
        help="start a fresh run from a backbone id's default weights (e.g. codecloss-small-mse) or a weights file; "
        "parameters whose name and shape match are copied (ignored on --resume)",
    )
    p.add_argument(
        "--init-widen", action="store_true",
        help="with --init: a narrower source (smaller --N/--M) fills the leading channels, function-preserving",
    )
    p.add_argument(
        "--batch-size", type=int,
        help="crops per step; under torchrun the global batch, split evenly over the ranks (default 8)",
    )
    p.add_argument("--crop", type=int, help="crop side, multiple of 16 (64 for hyperprior, mean-scale) (default 128)")
    p.add_argument("--lr", type=float, help="main Adam learning rate (default 1e-3)")
    p.add_argument("--aux-lr", type=float, help="auxiliary (quantiles) Adam learning rate (default 1e-3)")
    p.add_argument("--steps", type=int, help="total steps (may be raised on --resume) (default 10000)")
    p.add_argument("--lr-drop-step", type=_none_or(int), help="lr *= 0.1 from this step on ('none': never)")
    p.add_argument("--clip", type=_none_or(float), help="max gradient norm ('none' or 0: off) (default 1.0)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--val-dir", type=_none_or(str), help=f"validation folder ('none': off) (default {DEFAULT_VAL_DIR})")
    p.add_argument("--val-every", type=int, help="validate every K steps (default 1000)")
    p.add_argument("--val-images", type=int, help="number of validation images (default 8)")
    p.add_argument("--val-crop", type=int, help="centre-crop side of validation images (default 256)")
    p.add_argument("--ckpt-every", type=int, help="checkpoint every K steps (default 500)")
    p.add_argument("--log-every", type=int, help="append to log.jsonl every K steps (default 50)")
    p.add_argument(
        "--num-threads", type=_none_or(int),
        help="torch threads per process, kept with the run for --resume; overrides --threads ('none': torch default)",
    )
    p.add_argument("--device", help="cpu, cuda or cuda:K (under torchrun: cuda:LOCAL_RANK per rank) (default cpu)")
    p.add_argument("--cls-dir", type=_none_or(str), help="labelled ImageFolder tree for a joint classification head")
    p.add_argument("--cls-weight", type=float, help="weight of the classification cross-entropy (default 0.1)")
    p.add_argument(
        "--semantic-weight", type=float, metavar="BETA",
        help="weight beta of the semantic term S: loss = bpp + lmbda*D + beta*S, S the channel-normalised distance of "
        "linear 1x1 heads on the codec's taps to a frozen ImageNet teacher's features (default 0: off)",
    )
    p.add_argument("--semantic-teacher", choices=("vgg16", "alexnet"), help="teacher of the semantic term (default vgg16)")
    p.add_argument(
        "--teacher-weights", type=_none_or(str), metavar="FILE",
        help="the teacher's trunk file (default: TEACHER_features.pth in the folder $CODECLOSS_TRUNKS names)",
    )
    p.add_argument(
        "--semantic-taps", nargs="+", type=_tap_pair, metavar="TAP=LAYER",
        help="codec tap = teacher layer pairs of equal stride (default vgg16: gdn2=relu3_3 gdn3=relu4_3; "
        "alexnet: gdn2=relu1 gdn3=relu2)",
    )
    p.add_argument(
        "--teacher-dtype", choices=TASK_DTYPES,
        help="compute dtype of the frozen teacher (auto: bfloat16 where the device has fast bf16 units; the codec "
        "trains in float32) (default float32)",
    )
    add_progress_argument(p)
    p.set_defaults(func=run)


def _abspath(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def _config_from_args(args: argparse.Namespace) -> tuple[Any, bool]:
    from codecloss.train.codec import CHECKPOINT_NAME, TrainConfig, load_config

    given = {f.name: getattr(args, f.name) for f in TrainConfig.__dataclass_fields__.values() if hasattr(args, f.name)}
    resuming = args.resume and (Path(args.out) / CHECKPOINT_NAME).is_file()
    if resuming:
        base = load_config(args.out).to_dict()
    else:
        base = {"data_dirs": list(DEFAULT_DATA_DIRS), "val_dir": DEFAULT_VAL_DIR}
    if "semantic_taps" in given:
        taps = [tap for tap, _ in given["semantic_taps"]]
        twice = sorted({tap for tap in taps if taps.count(tap) > 1})
        if twice:
            raise ValueError(f"--semantic-taps: codec tap(s) {twice} given more than once")
        given["semantic_taps"] = dict(given["semantic_taps"])
    base.update(given)
    base["out_dir"] = os.path.abspath(args.out)
    base["data_dirs"] = [_abspath(d) for d in base["data_dirs"]]
    for key in ("val_dir", "cls_dir", "teacher_weights"):
        base[key] = _abspath(base.get(key))
    return TrainConfig.from_dict(base), resuming


def run(args: argparse.Namespace) -> int:
    """Train, or export when ``--export-g-a`` / ``--export-codec`` is given."""
    from codecloss._validate import check_device
    from codecloss.train import codec

    if getattr(args, "device", None) is not None:  # the parser suppresses options not given (see --resume)
        check_device(args.device, "--device")

    if args.export_g_a or args.export_codec:
        results = []
        if args.export_g_a:
            results.append(codec.export_analysis_transform(args.out, args.export_g_a))
        if args.export_codec:
            results.append(codec.export_codec(args.out, args.export_codec, half=args.export_half))
        for info in results:
            print(json.dumps(info._asdict()) if args.json else f"{info.path}  sha256={info.sha256}  size={info.size}")
        return 0
    if args.eval_rd:
        return _eval_rd(args)
    config, resuming = _config_from_args(args)
    keep_freed_memory()
    # SIGTERM (plain `kill PID`) stops after the current step with a checkpoint at that step
    stop_requested: list[int] = []
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.append(signum))
    try:
        summary = codec.train(config, resume=resuming, should_stop=lambda: bool(stop_requested))
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    if args.json:
        print(json.dumps(summary))
    else:
        last, val = summary["last"] or {}, summary["val"] or {}
        print(
            ("stopped at " if summary["stopped"] else "")
            + f"step {summary['step']}  checkpoint {summary['checkpoint']}  "
            f"train psnr {last.get('psnr', float('nan')):.2f} bpp {last.get('bpp', float('nan')):.4f}  "
            f"val psnr {val.get('psnr', float('nan')):.2f} bpp {val.get('bpp', float('nan')):.4f}"
        )
    return 0


def _eval_rd(args: argparse.Namespace) -> int:
    from codecloss.train import codec, rd

    models = [codec.load_model(run) for run in (args.out, *args.rd_runs)]
    reference_dir = None if args.reference_dir.lower() == "none" else args.reference_dir
    if reference_dir is not None and not Path(reference_dir).is_dir():
        logger.warning("reference folder %s not found; published curves skipped", reference_dir)
        reference_dir = None
    result = rd.evaluate_rd(
        models, args.eval_rd, name=Path(args.out).name, max_images=args.eval_images,
        reference_dir=reference_dir, progress=args.progress,
    )
    out = Path(args.out)
    (out / "rd.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    text = rd.rd_markdown(result)
    (out / "rd.md").write_text(text, encoding="utf-8")
    rd.plot_rd(result, out / "rd.png")
    print(json.dumps({k: result[k] for k in ("name", "images", "comparison")} | {"points": [
        {k: v for k, v in p.items() if k != "per_image"} for p in result["points"]]}) if args.json else text)
    return 0
