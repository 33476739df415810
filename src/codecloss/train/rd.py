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
the comparison table and the plot. The curve arithmetic lives in :mod:`codecloss.train.rd_curves`
and the markdown / plot reports in :mod:`codecloss.train.rd_report`; both are re-exported here.

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
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from codecloss._progress import progress as progress_bar
from codecloss.train.rd_curves import bd_rate, psnr_at_rate, rate_saving_at_equal_psnr
from codecloss.train.rd_report import plot_rd, rd_markdown

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
    progress: bool | None = None,
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
        progress: progress bar on stderr: ``True`` always, ``False`` never, ``None`` only on a terminal.

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
    bar = progress_bar(paths, progress, desc=f"rd {name}")
    for path in bar:
        image8 = _load_rgb(path)
        curve = jpeg_curve(image8, qualities)
        jpeg_per_image.append(curve)
        rates, psnrs = [p["bpp"] for p in curve], [p["psnr"] for p in curve]
        for k, model in enumerate(model_list):
            point = codec_point(model, image8)
            point["image"] = path.name
            point["jpeg_psnr_at_codec_bpp"] = psnr_at_rate(point["bpp"], rates, psnrs)
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
