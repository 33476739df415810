"""Super-resolution quality measures: Y-channel PSNR/SSIM with the SR convention, RGB MS-SSIM, CPIPS,
and a spectral sharpness ratio.

Conventions (those of EDSR/BasicSR papers' tables): BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
(R, G, B in [0, 1], Y in [16, 235] / 255), a border of ``scale`` pixels shaved before scoring, SSIM with the
11x11 Gaussian window (sigma 1.5, K1 0.01, K2 0.03) of Wang et al. via ``piq.ssim`` on Y without its
automatic downsampling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["METRIC_NOTES", "hf_energy_ratio", "psnr_y", "radial_power_spectrum", "rgb_to_y", "score_sr", "shave", "ssim_y"]

#: What each score in the study means; copied into the JSON output.
METRIC_NOTES = {
    "psnr_y": "PSNR (dB) on BT.601 Y in [16, 235]/255, data range 1, border of `scale` px shaved; higher is better",
    "ssim_y": "SSIM on BT.601 Y, border shaved, piq.ssim (11x11 Gaussian, sigma 1.5, downsample=False); higher is better",
    "ms_ssim": "5-scale MS-SSIM on RGB (piq.multi_scale_ssim), border shaved; null where a side < 161 px; higher is better",
    "cpips": "codecloss.metric (default backbone, uniform heads) on RGB, border shaved; lower is better; "
             "NOT independent of the `codec` loss, which trains on the same backbone's features",
    "sharpness": "high-frequency energy ratio SR/HR: radially averaged power spectrum of Hann-windowed Y, energy "
                 "between 1/4 Nyquist and Nyquist; 1.0 = as much fine detail as HR, < 1 blurrier, > 1 extra "
                 "high frequencies (sharper, or noise/artefacts)",
}

_MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-px window


def rgb_to_y(rgb: Tensor) -> Tensor:
    """BT.601 luma of (N, 3, H, W) RGB in [0, 1]: (N, 1, H, W) in [16/255, 235/255]."""
    weights = rgb.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1, keepdim=True).add(16.0).div(255.0)


def shave(image: Tensor, border: int) -> Tensor:
    """Drop ``border`` pixels on each side of a (..., H, W) image."""
    return image[..., border:-border, border:-border] if border > 0 else image


def psnr_y(sr: Tensor, hr: Tensor, border: int) -> Tensor:
    """Y-channel PSNR in dB per image, ``border`` pixels shaved. Returns (N,)."""
    mse = (shave(rgb_to_y(sr), border) - shave(rgb_to_y(hr), border)).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim_y(sr: Tensor, hr: Tensor, border: int) -> Tensor:
    """Y-channel SSIM per image (piq.ssim, Gaussian 11x11, no downsampling), ``border`` shaved. Returns (N,)."""
    import piq

    return piq.ssim(shave(rgb_to_y(sr), border), shave(rgb_to_y(hr), border), data_range=1.0, reduction="none",
                    downsample=False)


def radial_power_spectrum(image: Tensor) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectrum of the Hann-windowed luma of (N, 3, H, W) or (N, 1, H, W) images.

    Args:
        image: images in [0, 1].

    Returns:
        ``(freq, power)``: ring centres in cycles per pixel, shape (R,), up to Nyquist (0.5), and the mean
        power in each ring, shape (N, R).
    """
    y = rgb_to_y(image) if image.shape[1] == 3 else image
    y = y[:, 0].double()
    h, w = y.shape[-2:]
    window = torch.hann_window(h, periodic=False, dtype=y.dtype)[:, None] * torch.hann_window(w, periodic=False, dtype=y.dtype)
    y = (y - y.mean(dim=(1, 2), keepdim=True)) * window
    power = torch.fft.fft2(y).abs().pow(2)
    fy, fx = torch.fft.fftfreq(h, dtype=y.dtype), torch.fft.fftfreq(w, dtype=y.dtype)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    rings = max(h, w) // 2
    ring = torch.round(radius * 2 * rings).long()  # ring r holds frequencies within half a step of r / (2 * rings)
    keep = (ring >= 1) & (ring <= rings)
    index = ring[keep]
    sums = torch.zeros(y.shape[0], rings + 1, dtype=y.dtype).index_add_(1, index, power[:, keep])
    counts = torch.zeros(rings + 1, dtype=y.dtype).index_add_(0, index, torch.ones_like(index, dtype=y.dtype))
    freq = torch.arange(rings + 1, dtype=y.dtype) / (2 * rings)
    return freq[1:], (sums / counts.clamp_min(1))[:, 1:]


def hf_energy_ratio(sr: Tensor, hr: Tensor, cutoff: float = 0.25) -> Tensor:
    """Sharpness of ``sr`` relative to ``hr``: high-frequency energy of their radially averaged power spectra.

    The energy is the sum of the ring-averaged power (see :func:`radial_power_spectrum`) of the rings between
    ``cutoff`` x Nyquist and Nyquist. 1.0: as much fine detail as ``hr``; below 1: blurrier; above 1: more
    high frequencies than ``hr`` (sharper, noise or artefacts).

    Args:
        sr: (N, 3, H, W) images in [0, 1].
        hr: reference images of the same shape.
        cutoff: lower edge of the band as a fraction of Nyquist, in (0, 1).

    Returns:
        (N,) ratios.

    Example:
        >>> x = torch.rand(1, 3, 64, 64)
        >>> hf_energy_ratio(x, x).tolist()
        [1.0]
    """
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff: expected a fraction of Nyquist in (0, 1), got {cutoff!r}")
    if sr.shape != hr.shape:
        raise ValueError(f"sr, hr: expected the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    freq, p_sr = radial_power_spectrum(sr)
    _, p_hr = radial_power_spectrum(hr)
    band = freq > cutoff * 0.5
    return (p_sr[:, band].sum(dim=1) / p_hr[:, band].sum(dim=1).clamp_min(1e-30)).float()


def score_sr(sr: Tensor, hr: Tensor, scale: int, cpips: torch.nn.Module) -> dict[str, float | None]:
    """Every study metric of one (1, 3, H, W) SR output against its HR image (both quantised to 8 bits first).

    Args:
        sr: super-resolved image in [0, 1] (clamped and rounded here).
        hr: the HR image.
        scale: SR factor, the shaved border.
        cpips: a :class:`codecloss.CPIPS` module.

    Returns:
        ``{"psnr_y", "ssim_y", "ms_ssim", "cpips", "sharpness"}`` (``ms_ssim`` is ``None`` on small images).
    """
    import piq

    sr = sr.clamp(0, 1).mul(255).round().div(255)
    sr_s, hr_s = shave(sr, scale), shave(hr, scale)
    ms_ssim = None
    if min(sr_s.shape[-2:]) >= _MS_SSIM_MIN_SIDE:
        ms_ssim = float(piq.multi_scale_ssim(sr_s, hr_s, data_range=1.0))
    with torch.no_grad():
        distance = float(cpips(sr_s, hr_s)[0])
    values = {
        "psnr_y": float(psnr_y(sr, hr, scale)[0]),
        "ssim_y": float(ssim_y(sr, hr, scale)[0]),
        "ms_ssim": ms_ssim,
        "cpips": distance,
        "sharpness": float(hf_energy_ratio(sr_s, hr_s)[0]),
    }
    return {k: (None if v is not None and not math.isfinite(v) else v) for k, v in values.items()}
