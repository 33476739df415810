"""The rate-distortion objective: estimated bits per pixel and the distortion term (MSE, MS-SSIM, mix)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from codecloss.train.config import TrainConfig

__all__ = ["bpp", "distortion", "ms_ssim", "psnr"]


def bpp(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel of a batch (summed over latents, averaged over images)."""
    return sum(torch.log(lk).sum() for lk in likelihoods.values()) / (-math.log(2) * num_pixels)


def psnr(mse: float) -> float:
    """PSNR (dB) of a mean squared error of images in [0, 1]; ``inf`` for 0."""
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def ms_ssim(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean 5-scale MS-SSIM (``pytorch_msssim``, CompressAI's training metric) of images in [0, 1]."""
    from pytorch_msssim import ms_ssim

    return ms_ssim(x_hat, x, data_range=1.0)


def distortion(config: TrainConfig, x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The distortion term of ``config``'s objective, weighted by its lambdas.

    Returns:
        ``(term, measured)``: the term to add to the bpp, and ``{"mse": ..., "ms_ssim": ...}``
        (MS-SSIM only when the objective uses it), as tensors.
    """
    mse = F.mse_loss(x_hat, x)
    measured = {"mse": mse}
    mse_term = config.lmbda * 255.0**2 * mse
    if not config.uses_ms_ssim:
        return mse_term, measured
    value = ms_ssim(x_hat, x)
    measured["ms_ssim"] = value
    ms_ssim_term = config.ms_ssim_lmbda * (1.0 - value)
    if config.distortion == "ms-ssim":
        return ms_ssim_term, measured
    return (1.0 - config.mix_weight) * mse_term + config.mix_weight * ms_ssim_term, measured
