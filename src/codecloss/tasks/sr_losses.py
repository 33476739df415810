"""Training losses of the SR study: L1 alone, or L1 plus a feature loss on a frozen network.

Most feature losses use ESRGAN's criterion (mean absolute difference of features: ``content="l1"`` of
:class:`codecloss.CodecPerceptualLoss`, :func:`codecloss.content_loss` for VGG), so the loss network is the
only thing that differs between them; ``codec-l2n`` (normalised L2 content), ``vgg16-relu2_2`` (Johnson et
al.'s mean squared feature difference) and ``lpips-vgg`` (LPIPS with its learned heads) are the exceptions.
Its weight is set once, at the start, so that its input-gradient norm is ``balance`` times L1's
(see :func:`gradient_profile`).

A fine-tuning loss name (:func:`parse_loss`) is a feature-loss name, or ``aesop`` / ``aesop+<feature loss>``:
:class:`AESOPLoss` (Lee et al., CVPR 2025) then replaces the L1 pixel term.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecloss import DEFAULT_BACKBONE, CodecPerceptualLoss, content_loss
from codecloss._validate import check_image
from codecloss.tasks.sr_metrics import radial_power_spectrum

__all__ = ["AESOP", "AESOPLoss", "CODEC_LAYERS", "LOSS_NAMES", "REFUSED_LOSSES", "VGG16_LOSSES", "VGG16_TRUNK_LOSSES",
           "VGG_TAPS", "VGGFeatureL1", "build_feature_loss", "gradient_profile", "parse_loss"]

#: Loss names the study knows, with the frozen network each adds to L1 (``None``: L1 alone).
LOSS_NAMES: dict[str, str | None] = {
    "l1": None,
    "codec": "codec (--codec-backbone, default: the embedded default, trained weights)",
    "codec-random": "codec (--codec-backbone architecture, random init)",
    "hyperprior-random": "codec (bmshj2018-hyperprior-mse-q3 architecture, random init)",
    "vgg19": "VGG19 conv5_4 before ReLU (ESRGAN), random init unless --vgg-weights",
    "vgg16": "VGG16 conv5_3 before ReLU (ESRGAN's term on VGG16), random init unless --vgg16-weights",
    "codec-l2n": "codec (--codec-backbone, trained weights), normalized_l2 content instead of l1",
    "codec-small": "codec (codecloss-small-mse, embedded trained weights)",
    "vgg16-relu2_2": "VGG16 relu2_2, mean squared difference (Johnson et al. 2016), --vgg16-weights trunk",
    "vgg16-conv5_3": "VGG16 conv5_3 before ReLU, L1 (ESRGAN's VGG19 conv5_4 stand-in), --vgg16-weights trunk",
    "lpips-vgg": "LPIPS-VGG (lpips package heads) on the --vgg16-weights trunk",
}

#: Loss names refused as training losses, with the reason.
REFUSED_LOSSES = {"lpips-alex": "LPIPS-Alex is the study's judge; a loss must never be scored by its own network"}

#: VGG16 loss name -> (tap, content criterion); these read the ``--vgg16-weights`` trunk.
VGG16_LOSSES = {"vgg16": ("conv5_3", "l1"), "vgg16-conv5_3": ("conv5_3", "l1"), "vgg16-relu2_2": ("relu2_2", "l2")}
#: Losses that run on the VGG16 trunk file.
VGG16_TRUNK_LOSSES = frozenset(VGG16_LOSSES) | {"lpips-vgg"}
#: Prefix of the fine-tuning losses whose pixel term is AESOP instead of L1.
AESOP = "aesop"

#: Tap of each VGG loss: the last convolution, before its ReLU (ESRGAN's conv5_4 on VGG19).
VGG_TAPS = {"vgg19": "conv5_4", "vgg16": "conv5_3"}

#: Codec taps and weights of the ``codec*`` losses. Measured at the bicubic operating point on ``codecloss-small-mse`` (the default
#: then; ``gradient_profile``, docs/tasks.md): the input-gradient norms of gdn1, gdn2, gdn3, y are about
#: 1 : 3 : 11 : 58, and y's gradient is the least high-frequency (55 % of its power above 1/4 Nyquist, against
#: 87 % for gdn1 and 60 % for L1). So y is left out and the weights equalise the three GDN taps' gradients.
CODEC_LAYERS: dict[str, float] = {"gdn1": 1.0, "gdn2": 0.3, "gdn3": 0.1}


class VGGFeatureL1(nn.Module):
    """ESRGAN's perceptual term: L1 between VGG features of the last convolution (before ReLU), ImageNet-normalised input.

    Runs :func:`codecloss.reference.trunk` in channels_last memory format (faster on CPU, as the codec
    backbones run).

    Args:
        arch: ``"vgg19"`` (conv5_4, ESRGAN) or ``"vgg16"`` (conv5_3).
        weights: torchvision state dict file, or ``None`` for random init with ``seed``.
        seed: seed of the random initialisation.
        tap: tap to compare (default: :data:`VGG_TAPS` of ``arch``).
        criterion: :func:`codecloss.content_loss` kind (default ``"l1"``).
    """

    def __init__(self, arch: str = "vgg19", weights: str | os.PathLike | None = None, seed: int = 0,
                 tap: str | None = None, criterion: str = "l1") -> None:
        super().__init__()
        from codecloss.reference import trunk

        self.tap = tap or VGG_TAPS[arch]
        self.criterion = criterion
        self.vgg = trunk(arch, weights, seed)
        self.weights_source = (f"random init (seed {seed}); no ImageNet weights" if weights is None
                               else f"ImageNet weights from {str(weights)!r}")

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean ``criterion`` difference of the tapped features of ``x`` and ``y`` (images in [0, 1])."""
        fx, fy = (self.vgg.extract(t.contiguous(memory_format=torch.channels_last), [self.tap])[self.tap] for t in (x, y))
        return content_loss(fx, fy, self.criterion).mean()


class AESOPLoss(nn.Module):
    """AESOP (Lee et al., "Auto-Encoded Supervision for Perceptual Image Super-Resolution", CVPR 2025).

    L1 between the frozen codec's reconstructions ``g_s(g_a(sr))`` and ``g_s(g_a(hr))``: a pixel loss that
    ignores what the autoencoder cannot reproduce, used in place of the L1 pixel term of an SR or
    restoration objective. The latent is not quantised (no rounding, no noise): the continuous autoencoder,
    whose reconstruction keeps the image's structure. Images of any size are padded (edge replication) to a
    multiple of the codec's stride, 16, and the reconstructions cropped back.

    Args:
        backbone: codec backbone id.
        weights: codec weights (``"default"``, a registry name or a file).

    Example:
        >>> loss = codecloss.AESOPLoss()  # doctest: +SKIP
        >>> loss(torch.rand(2, 3, 60, 64), torch.rand(2, 3, 60, 64)).shape  # doctest: +SKIP
        torch.Size([])
    """

    #: The codec's total stride: inputs are padded to a multiple of it.
    STRIDE = 16

    def __init__(self, backbone: str = DEFAULT_BACKBONE, weights: str = "default") -> None:
        super().__init__()
        from codecloss import load_codec

        codec = load_codec(backbone, weights)
        self.g_a, self.g_s = codec.g_a.requires_grad_(False).eval(), codec.g_s.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "AESOPLoss":
        """Keep the frozen codec in eval mode whatever ``mode`` is."""
        return super().train(False)

    def _autoencode(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % self.STRIDE, 0, -h % self.STRIDE), mode="replicate")
        return self.g_s(self.g_a(padded))[..., :h, :w]

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        """Mean L1 between the autoencoded ``sr`` and ``hr``, (N, 3, H, W) in [0, 1]; differentiable in ``sr``.

        Raises:
            TypeError, ValueError: not image batches of one shape (messages name ``sr`` or ``hr``).
        """
        sr, hr = check_image(sr, "sr"), check_image(hr, "hr")
        if sr.shape != hr.shape:
            raise ValueError(f"sr and hr: expected the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
        with torch.no_grad():
            target = self._autoencode(hr)
        return F.l1_loss(self._autoencode(sr), target)


def parse_loss(name: str) -> tuple[str, str | None]:
    """Split a fine-tuning loss name into its pixel term and its feature loss.

    Args:
        name: ``l1``, a feature-loss name (L1 pixel term), ``aesop`` or ``aesop+<feature loss>``.

    Returns:
        ``(pixel, feature)``: ``pixel`` is ``"l1"`` or ``"aesop"``; ``feature`` a key of :data:`LOSS_NAMES`
        other than ``"l1"``, or ``None``.

    Example:
        >>> parse_loss("aesop+codec")
        ('aesop', 'codec')
    """
    if name == AESOP:
        return AESOP, None
    pixel, feature = (AESOP, name[len(AESOP) + 1 :]) if name.startswith(AESOP + "+") else ("l1", name)
    if feature in REFUSED_LOSSES:
        raise ValueError(f"--losses: {name!r} is refused: {REFUSED_LOSSES[feature]}")
    if feature not in LOSS_NAMES or (pixel == AESOP and feature == "l1"):
        raise ValueError(f"--losses: unknown loss {name!r}; expected one of {list(LOSS_NAMES)}, "
                         f"{AESOP!r} or '{AESOP}+<one of those>'")
    return pixel, None if feature == "l1" else feature


def build_feature_loss(
    name: str,
    seed: int,
    vgg_weights: str | os.PathLike | None = None,
    codec_backbone: str = DEFAULT_BACKBONE,
    codec_weights: str = "default",
    vgg16_weights: str | os.PathLike | None = None,
) -> tuple[nn.Module | None, dict[str, Any]]:
    """The frozen feature loss that ``name`` adds to L1, and a description of it.

    Args:
        name: a key of :data:`LOSS_NAMES`.
        seed: seed of any random initialisation.
        vgg_weights: ImageNet VGG19 weights for ``"vgg19"`` (``None``: random init).
        vgg16_weights: ImageNet VGG16 weights for the VGG16 losses and ``"lpips-vgg"`` (``None``: random init).
        codec_backbone: backbone of ``"codec"`` and ``"codec-random"``.
        codec_weights: weights of ``"codec"`` (``"default"``, a registry name or a file).

    Returns:
        ``(loss module or None for "l1", description dict)``.
    """
    if name in REFUSED_LOSSES:
        raise ValueError(f"--losses: {name!r} is refused: {REFUSED_LOSSES[name]}")
    if name not in LOSS_NAMES:
        raise ValueError(f"--losses: unknown loss {name!r}; expected some of {list(LOSS_NAMES)}")
    if name == "l1":
        return None, {"feature_loss": None}
    if name == "vgg19" or name in VGG16_LOSSES:
        tap, criterion = ("conv5_4", "l1") if name == "vgg19" else VGG16_LOSSES[name]
        arch = "vgg19" if name == "vgg19" else "vgg16"
        vgg = VGGFeatureL1(arch, vgg_weights if name == "vgg19" else vgg16_weights, seed, tap, criterion)
        layer = f"{tap} (before ReLU)" if tap.startswith("conv") else tap
        return vgg, {"feature_loss": LOSS_NAMES[name], "network": f"torchvision {arch}, ImageNet-normalised input",
                     "layers": [layer], "criterion": criterion, "weights": vgg.weights_source}
    if name == "lpips-vgg":
        from codecloss.reference import lpips, trunk

        module = lpips("vgg", trunk("vgg16", vgg16_weights, seed))
        return _MeanOf(module), {"feature_loss": LOSS_NAMES[name], "network": module.backbone_id,
                                 "criterion": "lpips (v0.1 linear heads)", "weights": module.weights_source}
    backbone = {"hyperprior-random": "bmshj2018-hyperprior-mse-q3", "codec-small": "codecloss-small-mse"}.get(name, codec_backbone)
    trained = name in ("codec", "codec-l2n", "codec-small")
    weights = "default" if name == "codec-small" else codec_weights
    criterion = "normalized_l2" if name == "codec-l2n" else "l1"
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # weights=None warns; the description says so
        module = CodecPerceptualLoss(backbone, layers=CODEC_LAYERS, weights=weights if trained else None, content=criterion)
    source = f"{weights} (trained weights)" if trained else f"random init (torch.manual_seed({seed}))"
    return module, {"feature_loss": LOSS_NAMES[name], "network": backbone, "layers": dict(CODEC_LAYERS),
                    "criterion": criterion, "weights": source}


class _MeanOf(nn.Module):
    """A per-sample distance ``(N,)`` as a scalar loss (its batch mean)."""

    def __init__(self, distance: nn.Module) -> None:
        super().__init__()
        self.distance = distance

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.distance(x, y).mean()


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
