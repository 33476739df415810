"""Reports of a rate-distortion evaluation (:func:`codecloss.train.rd.evaluate_rd`): markdown and plot."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

from codecloss.train.rd_curves import psnr_at_rate, rate_saving_at_equal_psnr

__all__ = ["plot_rd", "rd_markdown"]

logger = logging.getLogger(__name__)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def rd_markdown(result: Mapping[str, Any]) -> str:
    """A markdown report of :func:`evaluate_rd`'s result: codec points, JPEG comparison, references."""
    n_images = len(result["images"])
    lines = [
        f"Rate-distortion of **{result['name']}** on {n_images} images of `{result['image_dir']}` "
        "(real bitstreams; PSNR/MS-SSIM on 8-bit RGB output).",
        "",
        "| bpp | PSNR (dB) | MS-SSIM | Pillow JPEG 4:2:0 PSNR at same bpp (dB) | images in JPEG range |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {_fmt(p['bpp'], 4)} | {_fmt(p['psnr'], 2)} | {_fmt(p['ms_ssim'], 4)} "
            f"| {_fmt(p['jpeg_psnr_at_codec_bpp'], 2)} | {p['jpeg_images_in_range']}/{n_images} |"
        )
    comparison = result["comparison"]
    label = {
        "bd-rate": "Bjontegaard delta-rate (cubic fit of log-rate vs PSNR, overlapping PSNR range, mean curves)",
        "rate-saving-at-equal-psnr": "rate difference at equal PSNR (single RD point; JPEG rate interpolated "
        "in log-rate at the codec's PSNR per image, averaged)",
    }[comparison["method"]]
    lines += [
        "",
        f"Versus {comparison['anchor']}: **{_fmt(comparison['value_percent'], 1)} %** rate - {label}; "
        f"{comparison['images_used']} images used. Negative = fewer bits than the anchor."
        + (f" ({comparison['note']})" if comparison.get("note") else ""),
    ]
    if result["references"]:
        lines += [
            "",
            "Published CompressAI Kodak results (all 24 images"
            + (f"; this evaluation used {n_images}, so the comparison is indicative" if n_images != 24 else "")
            + "), at the codec's operating points:",
            "",
            "| reference | PSNR at codec bpp (dB) | rate difference of codec at equal PSNR (%) |",
            "|---|---:|---:|",
        ]
        for stem, ref in result["references"].items():
            if ref["psnr"] is None:
                continue
            cells = []
            for p in result["points"]:
                cells.append(
                    (
                        psnr_at_rate(p["bpp"], ref["bpp"], ref["psnr"]),
                        rate_saving_at_equal_psnr(p["bpp"], p["psnr"], ref["bpp"], ref["psnr"]),
                    )
                )
            psnr_cell = " / ".join(_fmt(c[0], 2) for c in cells)
            rate_cell = " / ".join(_fmt(c[1], 1) for c in cells)
            lines.append(f"| {ref['name']} (`{stem}`) | {psnr_cell} | {rate_cell} |")
    return "\n".join(lines) + "\n"


def plot_rd(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a PSNR-vs-bpp plot (PNG, matplotlib Agg) of the codec, Pillow JPEG and the references."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for stem, ref in result["references"].items():
        if ref["psnr"] is not None:
            axes.plot(ref["bpp"], ref["psnr"], linestyle="--", linewidth=1, marker=".", label=f"{ref['name']} (published)")
    jpeg = result["jpeg"]["mean"]
    axes.plot([p["bpp"] for p in jpeg], [p["psnr"] for p in jpeg], color="black", marker="x", linewidth=1, label="Pillow JPEG 4:2:0 (measured)")
    points = result["points"]
    axes.plot([p["bpp"] for p in points], [p["psnr"] for p in points], color="tab:red", marker="o", markersize=7, linewidth=2, label=f"{result['name']} (measured)")
    high = max([p["bpp"] for p in points] + [1.0]) * 1.6
    axes.set_xlim(0, high)
    axes.set_xlabel("bits per pixel")
    axes.set_ylabel("PSNR RGB (dB)")
    axes.set_title(f"{len(result['images'])} images of {Path(result['image_dir']).name}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    logger.info("wrote RD plot %s", out)
