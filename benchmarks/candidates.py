"""The selection table of candidate loss networks (docs/model_card.md, "Candidates").

Every candidate is measured the same way, next to the embedded default:

- **style and texture** (read): the stylize grid's independent judges, from ``benchmarks/stylize_grid.py``'s
  ``results.json`` (the default is the method ``codec``, its random-init control ``codec-random``, a candidate
  the method of its NAME, added with ``--candidate NAME BACKBONE WEIGHTS`` there);
- **SR** (read): from a ``codecloss sr-study --finetune ... --json`` sweep made with that backbone
  (``--codec-backbone``, ``--codec-weights``), BSD100 PSNR-Y and LPIPS-Alex of its ``codec@R`` run (the first one);
  from an older ``codecloss sr-study --json`` study from bicubic, Kodak PSNR-Y and sharpness of its ``codec`` row;
- **feed-forward stylizer** (read, optional): the per-loss summary of ``benchmarks/train_style.py --json`` files
  (``--feedforward``; a row's loss is its NAME unless ``--feedforward-label NAME=LOSS`` says otherwise);
- **agreement** (run here, with ``--agreement``): 2AFC agreement of the candidate's uniform-head CPIPS with
  LPIPS-Alex, DISTS and LPIPS-VGG on Kodak triplets (:func:`codecloss.evaluate.distill.evaluate_distilled_heads`);
- **equal-MSE check** (run here): :func:`codecloss.evaluate.equal_mse.evaluate_equal_mse` on Kodak, with the
  candidate's CPIPS and its architecture at random init;
- **rate-distortion** (run here): real bitstreams on Kodak against Pillow JPEG
  (:func:`codecloss.train.rd.evaluate_rd`, one rate point: rate saving at equal PSNR);
- **cost** (read): forward+backward median time and peak memory at batch 4 x 256 from one
  ``codecloss bench --json`` run holding every candidate's backbone id (or the network ``--bench-network NAME=NETWORK``
  names, e.g. a hyperprior with its ``h_a`` taps: ``sem-hyp=bmshj2018-hyperprior-mse-q3:gdn1,gdn2,gdn3,y,h1,h2``).

Usage::

    python benchmarks/candidates.py --out benchmarks/results/candidates.json \\
        --grid runs/stylize-candidates/results.json --bench runs/candidates/bench.json \\
        --candidate codec codecloss-small-mse default benchmarks/results/sr_study.json \\
        --candidate hq runs/candidates/hq.pth codecloss-small-mse runs/candidates/sr-hq.json

The semantic candidates' table (docs/model_card.md) adds ``--feedforward`` and ``--agreement``.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Callable

import torch

from codecloss import load_codec
from codecloss.evaluate.distill import evaluate_distilled_heads
from codecloss.evaluate.equal_mse import evaluate_equal_mse
from codecloss.evaluate.scorers import cpips_scorer
from codecloss.train.rd import evaluate_rd

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "kodak"
logger = logging.getLogger("candidates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the table (a .md is written beside it)")
    parser.add_argument("--grid", type=Path, required=True, help="stylize_grid.py results.json")
    parser.add_argument("--bench", type=Path, required=True, help="codecloss bench --json output")
    parser.add_argument("--candidate", nargs=4, action="append", required=True,
                        metavar=("NAME", "BACKBONE", "WEIGHTS", "SR_JSON"),
                        help="a row: grid method NAME, backbone id, weights ('default' or a file), sr-study JSON")
    parser.add_argument("--feedforward", type=Path, nargs="+", default=[],
                        help="benchmarks/train_style.py --json files (their per-loss summaries, merged)")
    parser.add_argument("--feedforward-label", nargs="+", default=[], metavar="NAME=LOSS",
                        help="a row whose feed-forward loss is not named NAME (e.g. wide=codec)")
    parser.add_argument("--feedforward-style", help="read each file's summary of this style (default: of all styles)")
    parser.add_argument("--bench-network", nargs="+", default=[], metavar="NAME=NETWORK",
                        help="a row whose cost is the bench network NETWORK, not its backbone id")
    parser.add_argument("--agreement", action="store_true", help="also run the 2AFC agreement with LPIPS/DISTS")
    parser.add_argument("--trunks", help="ImageNet trunk folder of the agreement's judges (default $CODECLOSS_TRUNKS)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    grid = json.loads(args.grid.read_text())["summary"]
    bench = _bench_cells(json.loads(args.bench.read_text())) if args.bench.is_file() else {}
    feedforward = {}
    for path in args.feedforward:
        result = json.loads(path.read_text())
        feedforward |= result["by_style"][args.feedforward_style] if args.feedforward_style else result["summary"]
    labels = dict(item.split("=", 1) for item in args.feedforward_label)
    bench_networks = dict(item.split("=", 1) for item in args.bench_network)
    rows = {}
    for name, backbone, weights, sr_json in args.candidate:
        cached = old.get("rows", {}).get(name, {})
        row = {"backbone": backbone, "weights": weights}
        transfer, texture = grid.get("transfer", {}).get(name, {}), grid.get("texture", {}).get(name, {})
        row |= {f"transfer_{k}": transfer.get(k) for k in ("texture_ps", "gram_random_vgg", "colour_swd", "content_ssim")}
        row["texture_texture_ps"] = texture.get("texture_ps")
        row |= _sr(Path(sr_json))
        if args.feedforward:
            ff = feedforward.get(labels.get(name, name), {})
            row |= {f"feedforward_{k}": ff.get(k) for k in ("texture_ps", "colour_swd", "content_ssim", "dists_style")}
        row["equal_mse"] = cached.get("equal_mse") or _equal_mse(backbone, weights)  # the slow parts are kept
        if args.agreement:
            row["agreement"] = cached.get("agreement") or _agreement(backbone, weights, args.trunks)
        row["rd"] = cached.get("rd") or _rd(backbone, weights)
        row["fwd_bwd"] = dict(bench.get(bench_networks.get(name, backbone), {}))
        rows[name] = row
        logger.info("%s: %s", name, row)
    base = next(iter(rows.values()))["fwd_bwd"]
    for row in rows.values():
        if row["fwd_bwd"] and base:
            row["fwd_bwd"]["time_vs_first"] = row["fwd_bwd"]["median_ms"] / base["median_ms"]
            row["fwd_bwd"]["memory_vs_first"] = row["fwd_bwd"]["peak_mb"] / base["peak_mb"]
    controls = {kind: {m: grid[kind][m]["texture_ps"] for m in ("content", "codec-random") if m in grid[kind]} for kind in grid}
    args.out.write_text(json.dumps({"rows": rows, "grid_controls_texture_ps": controls}, indent=1))
    table = _markdown(rows)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)


def _bench_cells(result: dict) -> dict[str, dict[str, float]]:
    """Backbone id -> forward+backward median milliseconds and peak MiB at batch 4 x 256 (float32, CPU)."""
    cells = {}
    for r in result["records"]:
        if (r["mode"], r["batch"], r["resolution"], r["device"], r["dtype"], r["status"]) == (
                "forward_backward", 4, 256, "cpu", "float32", "ok"):
            cells[r["network"]] = {"median_ms": r["time_median_ms"], "iqr_ms": r["time_iqr_ms"], "peak_mb": r["peak_mem_mb"]}
    return cells


def _sr(path: Path) -> dict[str, float | None]:
    """The SR columns of a fine-tune sweep (BSD100, the codec run) or of an older study from bicubic (Kodak)."""
    if not path.is_file():
        return {}
    result = json.loads(path.read_text())
    if "runs" not in result:  # the study from bicubic
        sr = result["eval"]["kodak"]["codec"]
        return {"sr_kodak_psnr_y": sr.get("psnr_y"), "sr_kodak_sharpness": sr.get("sharpness")}
    run = next(name for name in result["runs"] if name.startswith("codec@"))
    sr = result["eval"]["bsd100"][run]
    return {"sr_run": run, "sr_bsd100_psnr_y": sr["psnr_y"], "sr_bsd100_lpips_alex": sr.get("lpips_alex"),
            "sr_bsd100_dists": sr.get("dists"), "sr_bsd100_sharpness": sr["sharpness"]}


def _agreement(backbone: str, weights: str, trunks: str | None) -> dict[str, dict[str, float]]:
    """Per Kodak triplet set, the fraction of 2AFC choices of the candidate's CPIPS each judge shares."""
    codec = load_codec("codecloss-small-mse")  # the "codec" distortion kind: one fixed codec for every row
    result = evaluate_distilled_heads({"cpips": "uniform"}, KODAK, trunks=trunks, count=500,
                                      codec=lambda x: codec(x)["x_hat"], backbone=backbone, weights=weights)
    return {name: data["agreement"]["cpips"] for name, data in result["sets"].items()}


def _equal_mse(backbone: str, weights: str) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the random-init row warns by design
        torch.manual_seed(0)
        scorers = [cpips_scorer("trained", backbone=backbone, weights=weights),
                   cpips_scorer("random", backbone=backbone, weights=None)]
    table = evaluate_equal_mse(KODAK, scorers)
    rows = {r.name: r.values for r in table.rows}
    return {"trained": rows["trained"], "random_init": rows["random"], "pairs": table.meta["pairs"]}


def _rd(backbone: str, weights: str) -> dict[str, float]:
    result = evaluate_rd(load_codec(backbone, weights), KODAK, name=backbone)
    point = result["points"][0]
    return {"bpp": point["bpp"], "psnr": point["psnr"], "ms_ssim": point["ms_ssim"],
            "rate_vs_jpeg_percent": result["comparison"]["value_percent"], "method": result["comparison"]["method"],
            "per_image": point["per_image"]}


#: Table columns: header -> the cell of a row (``None`` where the row lacks it; a column no row has is left out).
_COLUMNS: dict[str, Callable[[dict], str | None]] = {
    "transfer texture_ps": lambda r: _f(r.get("transfer_texture_ps"), 3),
    "texture texture_ps": lambda r: _f(r.get("texture_texture_ps"), 3),
    "content SSIM": lambda r: _f(r.get("transfer_content_ssim"), 3),
    "feed-forward texture_ps": lambda r: _f(r.get("feedforward_texture_ps"), 3),
    "feed-forward content SSIM": lambda r: _f(r.get("feedforward_content_ssim"), 3),
    "SR Kodak PSNR-Y": lambda r: _f(r.get("sr_kodak_psnr_y"), 2),
    "SR sharpness": lambda r: _f(r.get("sr_kodak_sharpness"), 3),
    "SR run": lambda r: r.get("sr_run"),
    "SR BSD100 PSNR-Y": lambda r: _f(r.get("sr_bsd100_psnr_y"), 3),
    "SR BSD100 LPIPS-Alex": lambda r: _f(r.get("sr_bsd100_lpips_alex"), 4),
    "agreement LPIPS-Alex / DISTS (held-out kinds)": lambda r: "agreement" in r and "{:.3f} / {:.3f}".format(
        *(r["agreement"]["kodak_held_out_kinds"][j] for j in ("LPIPS-Alex", "DISTS"))) or None,
    "equal-MSE (random init)": lambda r: f"{r['equal_mse']['trained']['overall']:.3f} ({r['equal_mse']['random_init']['overall']:.3f})",
    "Kodak bpp / PSNR": lambda r: f"{r['rd']['bpp']:.3f} / {r['rd']['psnr']:.2f}",
    "rate vs JPEG": lambda r: f"{r['rd']['rate_vs_jpeg_percent']:+.1f} %",
    "fwd+bwd time": lambda r: r["fwd_bwd"] and f"{r['fwd_bwd']['median_ms']:.0f} ms ({r['fwd_bwd']['time_vs_first']:.2f}x)" or None,
    "fwd+bwd memory": lambda r: r["fwd_bwd"] and f"{r['fwd_bwd']['peak_mb']:.0f} MiB ({r['fwd_bwd']['memory_vs_first']:.2f}x)" or None,
}


def _markdown(rows: dict[str, dict]) -> str:
    cells = {name: {head: cell(row) for head, cell in _COLUMNS.items()} for name, row in rows.items()}
    heads = [head for head in _COLUMNS if any(cells[name][head] not in (None, "-") for name in rows)]
    lines = ["| candidate | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    lines += ["| " + " | ".join([name] + [cells[name][head] or "-" for head in heads]) + " |" for name in rows]
    return "\n".join(lines)


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
