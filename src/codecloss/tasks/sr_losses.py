"""Training losses of the SR study: L1 alone, or L1 plus a feature loss on a frozen network.

Every feature loss uses ESRGAN's criterion (mean absolute difference of features: ``content="l1"`` of
:class:`codecloss.CodecPerceptualLoss`, :func:`codecloss.content_loss` for VGG19), so the loss network is the
only thing that differs between them.
Its weight is set once, at initialisation, so that its input-gradient norm is ``balance`` times L1's
(see :func:`gradient_profile`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss import DEFAULT_BACKBONE, CodecPerceptualLoss, content_loss
from codecloss.tasks.sr_metrics import radial_power_spectrum
from codecloss.tasks.vgg import VGG19Features

__all__ = ["CODEC_LAYERS", "LOSS_NAMES", "VGG19FeatureL1", "build_feature_loss", "gradient_profile"]

#: Loss names the study knows, with the frozen network each adds to L1 (``None``: L1 alone).
LOSS_NAMES: dict[str, str | None] = {
    "l1": None,
    "codec": "codec (--codec-backbone, default: the embedded default, trained weights)",
    "codec-random": "codec (--codec-backbone architecture, random init)",
    "hyperprior-random": "codec (bmshj2018-hyperprior-mse-q3 architecture, random init)",
    "vgg19": "VGG19 conv5_4 before ReLU (ESRGAN), random init unless --vgg-weights",
}

#: Codec taps and weights of the ``codec*`` losses. Measured at the bicubic operating point on ``codecloss-small-mse`` (the default
#: then; ``gradient_profile``, docs/tasks.md): the input-gradient norms of gdn1, gdn2, gdn3, y are about
#: 1 : 3 : 11 : 58, and y's gradient is the least high-frequency (55 % of its power above 1/4 Nyquist, against
#: 87 % for gdn1 and 60 % for L1). So y is left out and the weights equalise the three GDN taps' gradients.
CODEC_LAYERS: dict[str, float] = {"gdn1": 1.0, "gdn2": 0.3, "gdn3": 0.1}


class VGG19FeatureL1(nn.Module):
    """ESRGAN's perceptual term: L1 between VGG19 conv5_4 (before ReLU) features, ImageNet-normalised input.

    Runs :class:`codecloss.tasks.vgg.VGG19Features` in channels_last memory format (faster on CPU, as the
    codec backbones run).

    Args:
        weights: torchvision VGG19 state dict file, or ``None`` for random init with ``seed``.
        seed: seed of the random initialisation.
    """

    def __init__(self, weights: str | os.PathLike | None = None, seed: int = 0) -> None:
        super().__init__()
        if weights is not None and not os.path.isfile(weights):
            raise FileNotFoundError(f"--vgg-weights: no such file {str(weights)!r}")
        self.vgg = VGG19Features(weights, seed)
        self.weights_source = (f"random init (seed {seed}); no ImageNet weights" if weights is None
                               else f"ImageNet weights from {str(weights)!r}")

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean absolute difference of the conv5_4 features of ``x`` and ``y`` (images in [0, 1])."""
        fx, fy = (self.vgg.extract(t.contiguous(memory_format=torch.channels_last), ["conv5_4"])["conv5_4"] for t in (x, y))
        return content_loss(fx, fy, "l1").mean()


def build_feature_loss(
    name: str,
    seed: int,
    vgg_weights: str | os.PathLike | None = None,
    codec_backbone: str = DEFAULT_BACKBONE,
    codec_weights: str = "default",
) -> tuple[nn.Module | None, dict[str, Any]]:
    """The frozen feature loss that ``name`` adds to L1, and a description of it.

    Args:
        name: a key of :data:`LOSS_NAMES`.
        seed: seed of any random initialisation.
        vgg_weights: ImageNet VGG19 weights for ``"vgg19"`` (``None``: random init).
        codec_backbone: backbone of ``"codec"`` and ``"codec-random"``.
        codec_weights: weights of ``"codec"`` (``"default"``, a registry name or a file).

    Returns:
        ``(loss module or None for "l1", description dict)``.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"--losses: unknown loss {name!r}; expected some of {list(LOSS_NAMES)}")
    if name == "l1":
        return None, {"feature_loss": None}
    if name == "vgg19":
        vgg = VGG19FeatureL1(vgg_weights, seed)
        return vgg, {"feature_loss": LOSS_NAMES[name], "network": "torchvision vgg19, ImageNet-normalised input",
                     "layers": ["conv5_4 (before ReLU)"], "criterion": "l1", "weights": vgg.weights_source}
    backbone = "bmshj2018-hyperprior-mse-q3" if name == "hyperprior-random" else codec_backbone
    trained = name == "codec"
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # weights=None warns; the description says so
        module = CodecPerceptualLoss(backbone, layers=CODEC_LAYERS, weights=codec_weights if trained else None, content="l1")
    source = f"{codec_weights} (trained weights)" if trained else f"random init (torch.manual_seed({seed}))"
    return module, {"feature_loss": LOSS_NAMES[name], "network": backbone, "layers": dict(CODEC_LAYERS),
                    "criterion": "l1", "weights": source}


def _hf_fraction(grad: Tensor, cutoff: float = 0.25) -> float:
    freq, power = radial_power_spectrum(grad.sum(dim=1, keepdim=True))
    return float(power[:, freq > cutoff * 0.5].sum() / power.sum().clamp_min(1e-30))


def gradient_profile(feature_loss: nn.Module, sr: Tensor, hr: Tensor) -> dict[str, float]:
    """How a feature loss pushes an SR output compared with L1, at one operating point.

    Args:
        feature_loss: ``loss(sr, hr) -> scalar``.
        sr: (N, 3, H, W) outputs (e.g. the bicubic upsampling the study's network starts from).
        hr: their HR targets.

    Returns:
        ``grad_norm`` and ``grad_norm_l1`` (input-gradient norms of the feature loss and of
        ``F.l1_loss``), ``cosine_l1`` (cosine between the two gradients) and ``hf_fraction`` /
        ``hf_fraction_l1`` (share of each gradient's radially averaged power above 1/4 Nyquist).
    """
    sr = sr.detach().requires_grad_(True)
    (g_l1,) = torch.autograd.grad(F.l1_loss(sr, hr), sr)
    (g,) = torch.autograd.grad(feature_loss(sr, hr), sr)
    return {
        "grad_norm": float(g.norm()),
        "grad_norm_l1": float(g_l1.norm()),
        "cosine_l1": float(F.cosine_similarity(g.flatten(), g_l1.flatten(), dim=0)),
        "hf_fraction": _hf_fraction(g),
        "hf_fraction_l1": _hf_fraction(g_l1),
    }
