"""Rate-distortion curve arithmetic: interpolation in log-rate, rate saving at equal PSNR, BD-rate."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["bd_rate", "psnr_at_rate", "rate_at_psnr", "rate_saving_at_equal_psnr"]


def _monotone(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sort by rate and keep the points where PSNR strictly increases (the usable envelope)."""
    order = np.argsort(rates)
    rate, psnr = np.asarray(rates, float)[order], np.asarray(psnrs, float)[order]
    keep = [0]
    for i in range(1, len(rate)):
        if psnr[i] > psnr[keep[-1]]:
            keep.append(i)
    return rate[keep], psnr[keep]


def psnr_at_rate(rate: float, rates: Sequence[float], psnrs: Sequence[float]) -> float:
    """PSNR of a curve at ``rate`` (linear in log-rate); NaN outside the curve's rate range."""
    r, p = _monotone(rates, psnrs)
    if not (r[0] <= rate <= r[-1]):
        return float("nan")
    return float(np.interp(math.log(rate), np.log(r), p))


def rate_at_psnr(psnr: float, rates: Sequence[float], psnrs: Sequence[float]) -> float:
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
    anchor = rate_at_psnr(psnr, anchor_rates, anchor_psnrs)
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
