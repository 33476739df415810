"""The selection table of candidate loss networks (docs/model_card.md, "Candidates").

Every candidate is measured the same way, next to the embedded default:

- **style and texture** (read): the stylize grid's independent judges, from ``benchmarks/stylize_grid.py``'s
  ``results.json`` (the default is the method ``codec``, its random-init control ``codec-random``, a candidate
  the method of its NAME, added with ``--candidate NAME BACKBONE WEIGHTS`` there);
- **SR** (read): Kodak PSNR-Y and sharpness of the ``codec`` loss in a ``codecloss sr-study --json`` result
  made with that backbone (``--codec-backbone``, ``--codec-weights``);
- **equal-MSE check** (run here): :func:`codecloss.evaluate.equal_mse.evaluate_equal_mse` on Kodak, with the
  candidate's CPIPS and its architecture at random init;
- **rate-distortion** (run here): real bitstreams on Kodak against Pillow JPEG
  (:func:`codecloss.train.rd.evaluate_rd`, one rate point: rate saving at equal PSNR);
- **cost** (read): forward+backward median time and peak memory at batch 4 x 256 from one
  ``codecloss bench --json`` run holding every candidate's backbone id.

Usage::

    python benchmarks/candidates.py --out benchmarks/results/candidates.json \\
        --grid runs/stylize-candidates/results.json --bench runs/candidates/bench.json \\
        --candidate codec codecloss-small-mse default benchmarks/results/sr_study.json \\
        --candidate hq runs/candidates/hq.pth codecloss-small-mse runs/candidates/sr-hq.json
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import torch

from codecloss import load_codec
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
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    grid = json.loads(args.grid.read_text())["summary"]
    bench = _bench_cells(json.loads(args.bench.read_text())) if args.bench.is_file() else {}
    rows = {}
    for name, backbone, weights, sr_json in args.candidate:
        cached = old.get("rows", {}).get(name, {})
        row = {"backbone": backbone, "weights": weights}
        transfer, texture = grid.get("transfer", {}).get(name, {}), grid.get("texture", {}).get(name, {})
        row |= {f"transfer_{k}": transfer.get(k) for k in ("texture_ps", "gram_random_vgg", "colour_swd", "content_ssim")}
        row["texture_texture_ps"] = texture.get("texture_ps")
        sr = json.loads(Path(sr_json).read_text())["eval"]["kodak"]["codec"] if Path(sr_json).is_file() else {}
        row |= {"sr_kodak_psnr_y": sr.get("psnr_y"), "sr_kodak_sharpness": sr.get("sharpness")}
        row["equal_mse"] = cached.get("equal_mse") or _equal_mse(backbone, weights)  # the slow parts are kept
        row["rd"] = cached.get("rd") or _rd(backbone, weights)
        row["fwd_bwd"] = dict(bench.get(backbone, {}))
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


def _markdown(rows: dict[str, dict]) -> str:
    head = ("| candidate | transfer texture_ps | texture texture_ps | content SSIM | SR Kodak PSNR-Y | SR sharpness | "
            "equal-MSE (random init) | Kodak bpp / PSNR | rate vs JPEG | fwd+bwd time | fwd+bwd memory |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows.items():
        e, rd, cost = r["equal_mse"], r["rd"], r["fwd_bwd"]
        cells = [name, _f(r["transfer_texture_ps"], 3), _f(r["texture_texture_ps"], 3), _f(r["transfer_content_ssim"], 3),
                 _f(r["sr_kodak_psnr_y"], 2), _f(r["sr_kodak_sharpness"], 3),
                 f"{e['trained']['overall']:.3f} ({e['random_init']['overall']:.3f})",
                 f"{rd['bpp']:.3f} / {rd['psnr']:.2f}", f"{rd['rate_vs_jpeg_percent']:+.1f} %",
                 f"{cost['median_ms']:.0f} ms ({cost['time_vs_first']:.2f}x)" if cost else "-",
                 f"{cost['peak_mb']:.0f} MiB ({cost['memory_vs_first']:.2f}x)" if cost else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
