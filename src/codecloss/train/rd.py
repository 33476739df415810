"""Real rate-distortion evaluation of CompressAI codecs against Pillow JPEG and published curves.

Every image goes through the codec's real bitstream: ``model.update(force=True)``, padding to a
multiple of 64, ``compress`` / ``decompress``, crop back, 8-bit rounding. The rate is the byte
length of the strings; PSNR (RGB) and MS-SSIM (``piq.multi_scale_ssim``) are measured on the
8-bit output. Each image is also coded with Pillow JPEG (4:2:0) at a sweep of qualities, so the
codec can be compared with JPEG *per image*:

* ``jpeg_psnr_at_codec_bpp``: JPEG's PSNR interpolated (in log-rate) at the codec's bpp, per image.
* with one codec RD point, the rate saving at equal PSNR (JPEG's rate interpolated in log-rate at
  the codec's PSNR, per image, averaged); with >= 2 points, the Bjontegaard delta-rate of the
  averaged curves (cubic fit of log-rate against PSNR over the overlapping PSNR range).

CompressAI's published Kodak results (``reference/compressai_kodak_rd/kodak/*.json``) are read for
the comparison table and the plot.

Example:
    >>> from codecloss.train.rd import evaluate_rd, rd_markdown
    >>> result = evaluate_rd(model, "../shared/data/eval/kodak")  # doctest: +SKIP
    >>> print(rd_markdown(result))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_JPEG_QUALITIES",
    "DEFAULT_REFERENCES",
    "bd_rate",
    "codec_point",
    "evaluate_rd",
    "jpeg_curve",
    "load_reference",
    "plot_rd",
    "rate_saving_at_equal_psnr",
    "rd_markdown",
]

DEFAULT_JPEG_QUALITIES: tuple[int, ...] = tuple(range(5, 100, 5))
#: Published Kodak curves shown by default (file stems under ``reference_dir``).
DEFAULT_REFERENCES: tuple[str, ...] = (
    "compressai-bmshj2018-factorized_mse_cpu",
    "compressai-bmshj2018-hyperprior_mse_cpu",
    "jpeg",
    "webp",
    "bpg_444_x265_ycbcr",
)
PAD_MULTIPLE = 64
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff"})


# ----------------------------------------------------------------------------- metrics


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def _psnr(x8: torch.Tensor, y8: torch.Tensor) -> float:
    mse = (x8.double() - y8.double()).pow(2).mean().item() / 255.0**2
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def _ms_ssim(x8: torch.Tensor, y8: torch.Tensor) -> float:
    """MS-SSIM on 8-bit images; NaN (with a warning) when an image is too small for 5 scales."""
    import piq

    if min(x8.shape[-2:]) < 161:  # (kernel 11 - 1) * 2**4 + 1, piq's minimum for the default scales
        logger.warning("MS-SSIM needs images of at least 161x161, got %s; reported as NaN", tuple(x8.shape[-2:]))
        return float("nan")
    return piq.multi_scale_ssim(x8.float() / 255, y8.float() / 255, data_range=1.0).item()


def _load_rgb(path: Path) -> torch.Tensor:
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)


# ----------------------------------------------------------------------------- per-image coding


@torch.no_grad()
def codec_point(model: nn.Module, image8: torch.Tensor) -> dict[str, float]:
    """Code one uint8 image (1, 3, H, W) with the model's real bitstream.

    The model must already be ``update(force=True)``-ed (done by :func:`evaluate_rd`).

    Returns:
        dict with ``bpp`` (from the byte length of the strings), ``psnr`` and ``ms_ssim``.
    """
    device = next(model.parameters()).device
    x = image8.to(device).float() / 255
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % PAD_MULTIPLE, (-width) % PAD_MULTIPLE
    x_padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    encoded = model.compress(x_padded)
    x_hat = model.decompress(encoded["strings"], encoded["shape"])["x_hat"][..., :height, :width]
    num_bytes = sum(len(s) for strings in encoded["strings"] for s in strings)
    out8 = _to_uint8(x_hat).cpu()
    return {"bpp": num_bytes * 8 / (height * width), "psnr": _psnr(image8, out8), "ms_ssim": _ms_ssim(image8, out8)}


def jpeg_curve(image8: torch.Tensor, qualities: Iterable[int] = DEFAULT_JPEG_QUALITIES) -> list[dict[str, float]]:
    """Pillow JPEG (4:2:0, ``subsampling=2``) of one uint8 image at each quality.

    Returns:
        one dict per quality: ``quality``, ``bpp`` (real file size), ``psnr``, ``ms_ssim``.
    """
    array = image8[0].permute(1, 2, 0).numpy()
    height, width = array.shape[:2]
    points = []
    for quality in qualities:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality), subsampling=2)
        size = buffer.tell()
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out8 = torch.from_numpy(np.asarray(decoded.convert("RGB")).copy()).permute(2, 0, 1).unsqueeze(0)
        points.append(
            {"quality": int(quality), "bpp": size * 8 / (height * width), "psnr": _psnr(image8, out8), "ms_ssim": _ms_ssim(image8, out8)}
        )
    return points


# ----------------------------------------------------------------------------- curve arithmetic


def _monotone(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sort by rate and keep the points where PSNR strictly increases (the usable envelope)."""
    order = np.argsort(rates)
    rate, psnr = np.asarray(rates, float)[order], np.asarray(psnrs, float)[order]
    keep = [0]
    for i in range(1, len(rate)):
        if psnr[i] > psnr[keep[-1]]:
            keep.append(i)
    return rate[keep], psnr[keep]


def _psnr_at_rate(rate: float, rates: Sequence[float], psnrs: Sequence[float]) -> float:
    """PSNR of a curve at ``rate`` (linear in log-rate); NaN outside the curve's rate range."""
    r, p = _monotone(rates, psnrs)
    if not (r[0] <= rate <= r[-1]):
        return float("nan")
    return float(np.interp(math.log(rate), np.log(r), p))


def _rate_at_psnr(psnr: float, rates: Sequence[float], psnrs: Sequence[float]) -> float:
    """Rate of a curve at ``psnr`` (interpolated in log-rate); NaN outside the curve's PSNR range."""
    r, p = _monotone(rates, psnrs)
    if not (p[0] <= psnr <= p[-1]):
        return float("nan")
    return float(math.exp(np.interp(psnr, p, np.log(r))))


def rate_saving_at_equal_psnr(
    rate: float, psnr: float, anchor_rates: Sequence[float], anchor_psnrs: Sequence[float]
) -> float:
    """Rate difference (%) of one RD point against an anchor curve at the same PSNR.

    Negative means the point needs fewer bits than the anchor. NaN when ``psnr`` lies outside
    the anchor's PSNR range.

    Example:
        >>> round(rate_saving_at_equal_psnr(0.5, 30.0, [0.5, 1.0, 2.0], [28.0, 30.0, 32.0]), 6)
        -50.0
    """
    anchor = _rate_at_psnr(psnr, anchor_rates, anchor_psnrs)
    return (rate / anchor - 1) * 100 if math.isfinite(anchor) else float("nan")


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_psnrs: Sequence[float],
    test_rates: Sequence[float],
    test_psnrs: Sequence[float],
) -> float:
    """Bjontegaard delta-rate (%) of ``test`` against ``anchor``; negative = fewer bits.

    Log-rate is fitted as a polynomial of PSNR (cubic, or of degree n-1 for curves of
    n < 4 points) and the two fits are integrated over the overlapping PSNR range.

    Example:
        >>> rates = [0.25, 0.5, 1.0, 2.0]; psnrs = [28.0, 31.0, 34.0, 37.0]
        >>> round(bd_rate(rates, psnrs, [r / 2 for r in rates], psnrs), 6)
        -50.0
    """
    curves = []
    for name, rates, psnrs in (("anchor", anchor_rates, anchor_psnrs), ("test", test_rates, test_psnrs)):
        if len(rates) != len(psnrs) or len(rates) < 2:
            raise ValueError(f"{name} curve needs >= 2 (rate, psnr) points of equal length, got {len(rates)} and {len(psnrs)}")
        if min(rates) <= 0:
            raise ValueError(f"{name} rates must be > 0, got {list(rates)}")
        p, log_r = np.asarray(psnrs, float), np.log(np.asarray(rates, float))
        curves.append((p, np.polyfit(p, log_r, min(3, len(p) - 1))))
    low = max(curves[0][0].min(), curves[1][0].min())
    high = min(curves[0][0].max(), curves[1][0].max())
    if not high > low:
        raise ValueError(f"the curves' PSNR ranges do not overlap (overlap [{low:.3f}, {high:.3f}] dB)")
    integrals = []
    for _, fit in curves:
        primitive = np.polyint(fit)
        integrals.append(np.polyval(primitive, high) - np.polyval(primitive, low))
    mean_log_ratio = (integrals[1] - integrals[0]) / (high - low)
    return float((math.exp(mean_log_ratio) - 1) * 100)


# ----------------------------------------------------------------------------- references


def load_reference(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One CompressAI results JSON: ``{"name", "bpp", "psnr", "ms_ssim"}`` (missing metrics -> None)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    results = data.get("results")
    if not isinstance(results, dict) or "bpp" not in results:
        raise ValueError(f"{str(path)!r} is not a CompressAI results file (needs results.bpp)")
    return {
        "name": data.get("name", Path(path).stem),
        "bpp": list(results["bpp"]),
        "psnr": list(results["psnr-rgb"]) if "psnr-rgb" in results else None,
        "ms_ssim": list(results["ms-ssim-rgb"]) if "ms-ssim-rgb" in results else None,
    }


# ----------------------------------------------------------------------------- evaluation


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {str(folder)!r}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"image_dir {str(folder)!r} holds no image")
    return paths


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def evaluate_rd(
    models: nn.Module | Sequence[nn.Module],
    image_dir: str | os.PathLike[str],
    *,
    name: str = "codec",
    max_images: int | None = None,
    jpeg_qualities: Sequence[int] = DEFAULT_JPEG_QUALITIES,
    reference_dir: str | os.PathLike[str] | None = None,
    references: Sequence[str] = DEFAULT_REFERENCES,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate one codec (one model per RD point) on a folder with real bitstreams.

    Args:
        models: a CompressAI model, or several (one per rate point) of the same codec.
        image_dir: evaluation images (e.g. Kodak).
        name: label of the codec in tables and plots.
        max_images: use only the first ``max_images`` images (sorted by name).
        jpeg_qualities: Pillow JPEG qualities coded per image.
        reference_dir: folder of CompressAI results JSON files (None: no published curves).
        references: file stems of ``reference_dir`` to include (missing ones are skipped with a warning).
        progress: tqdm bar over images (only when stderr is a TTY).

    Returns:
        dict with ``name``, ``images`` (file names), ``points`` (per codec model: mean ``bpp``,
        ``psnr``, ``ms_ssim``, ``jpeg_psnr_at_codec_bpp``, ``per_image`` list), ``jpeg`` (mean curve
        per quality and ``per_image`` curves), ``comparison`` (``method`` = ``"bd-rate"`` or
        ``"rate-saving-at-equal-psnr"``, ``value_percent``, ``anchor``) and ``references``.

    Example:
        >>> result = evaluate_rd(model, "../shared/data/eval/kodak", max_images=8)  # doctest: +SKIP
    """
    model_list = [models] if isinstance(models, nn.Module) else list(models)
    if not model_list or not all(isinstance(m, nn.Module) for m in model_list):
        raise TypeError(f"models must be an nn.Module or a non-empty sequence of them, got {models!r}")
    if max_images is not None and max_images <= 0:
        raise ValueError(f"max_images must be None or > 0, got {max_images!r}")
    qualities = [int(q) for q in jpeg_qualities]
    if len(qualities) < 2 or not all(1 <= q <= 100 for q in qualities):
        raise ValueError(f"jpeg_qualities must hold >= 2 qualities in 1..100, got {list(jpeg_qualities)!r}")
    paths = _list_images(Path(image_dir))[:max_images]

    for model in model_list:
        model.eval()
        model.update(force=True)

    codec_per_image: list[list[dict[str, float]]] = [[] for _ in model_list]
    jpeg_per_image: list[list[dict[str, float]]] = []
    bar = tqdm(paths, desc=f"rd {name}", disable=not (progress and sys.stderr.isatty()))
    for path in bar:
        image8 = _load_rgb(path)
        curve = jpeg_curve(image8, qualities)
        jpeg_per_image.append(curve)
        rates, psnrs = [p["bpp"] for p in curve], [p["psnr"] for p in curve]
        for k, model in enumerate(model_list):
            point = codec_point(model, image8)
            point["image"] = path.name
            point["jpeg_psnr_at_codec_bpp"] = _psnr_at_rate(point["bpp"], rates, psnrs)
            point["rate_vs_jpeg_percent"] = rate_saving_at_equal_psnr(point["bpp"], point["psnr"], rates, psnrs)
            codec_per_image[k].append(point)
            logger.debug("%s %s: %.4f bpp %.2f dB", name, path.name, point["bpp"], point["psnr"])

    points = []
    for per_image in codec_per_image:
        summary = {key: _mean(p[key] for p in per_image) for key in ("bpp", "psnr", "ms_ssim", "jpeg_psnr_at_codec_bpp")}
        summary["jpeg_images_in_range"] = sum(not math.isnan(p["jpeg_psnr_at_codec_bpp"]) for p in per_image)
        summary["per_image"] = per_image
        points.append(summary)
    jpeg_mean = [
        {"quality": q, **{key: _mean(curve[i][key] for curve in jpeg_per_image) for key in ("bpp", "psnr", "ms_ssim")}}
        for i, q in enumerate(qualities)
    ]

    anchor = "Pillow JPEG 4:2:0"
    if len(points) >= 2:
        comparison = {"method": "bd-rate", "value_percent": float("nan"), "anchor": anchor, "images_used": len(paths)}
        try:
            comparison["value_percent"] = bd_rate(
                [p["bpp"] for p in jpeg_mean], [p["psnr"] for p in jpeg_mean], [p["bpp"] for p in points], [p["psnr"] for p in points]
            )
        except ValueError as err:  # e.g. no overlapping PSNR range: reported, not raised
            comparison["note"] = str(err)
            logger.warning("BD-rate of %s against JPEG not available: %s", name, err)
    else:
        savings = [p["rate_vs_jpeg_percent"] for p in points[0]["per_image"]]
        comparison = {
            "method": "rate-saving-at-equal-psnr",
            "value_percent": _mean(savings),
            "anchor": anchor,
            "images_used": sum(not math.isnan(s) for s in savings),
        }

    loaded = {}
    if reference_dir is not None:
        for stem in references:
            file = Path(reference_dir) / f"{stem}.json"
            if not file.is_file():
                logger.warning("reference %s not found; skipped", file)
                continue
            loaded[stem] = load_reference(file)
    return {
        "name": name,
        "image_dir": str(image_dir),
        "images": [p.name for p in paths],
        "points": points,
        "jpeg": {"qualities": qualities, "mean": jpeg_mean, "per_image": jpeg_per_image},
        "comparison": comparison,
        "references": loaded,
    }


# ----------------------------------------------------------------------------- reporting


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
                        _psnr_at_rate(p["bpp"], ref["bpp"], ref["psnr"]),
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
