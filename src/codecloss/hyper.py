"""Feature taps on a hyperprior codec's hyper-analysis transform ``h_a``.

``g_a``'s latent ``y`` sees 61 px of the image in the GDN codecs; the hyper-analysis ``h_a`` that turns ``y``
into the side information ``z`` (Ballé et al. 2018, Minnen et al. 2018, Cheng et al. 2020) sees far more
(157 px at ``h2``, 285 px at ``z`` for ``bmshj2018-hyperprior``). Its taps continue ``g_a``'s: ``h1``, ``h2``, ...
after each nonlinearity of ``h_a`` (numbered in forward order), and ``z``, its output. ``bmshj2018-hyperprior``
feeds ``|y|`` to ``h_a``, the mean-scale family ``y`` itself; :func:`hyper_stages` keeps that difference.

Example:
    >>> from compressai.models import ScaleHyperprior
    >>> [name for name, _, _ in hyper_stages(ScaleHyperprior(64, 96))]
    ['h1', 'h2', 'z']
"""

from __future__ import annotations

import torch
from compressai.models import MeanScaleHyperprior, ScaleHyperprior
from torch import Tensor, nn

__all__ = ["Abs", "hyper_stages"]

_NONLINEAR = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)


class Abs(nn.Module):
    """``|x|``: the input ``bmshj2018-hyperprior`` gives its ``h_a``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.abs(x)


def _feeds_abs(codec: nn.Module) -> bool:
    """Whether ``codec.forward`` runs ``h_a(|y|)`` (scale hyperprior) rather than ``h_a(y)`` (mean-scale family)."""
    return isinstance(codec, ScaleHyperprior) and not isinstance(codec, MeanScaleHyperprior)


def hyper_stages(codec: nn.Module) -> list[tuple[str, str, nn.Sequential]]:
    """``h_a`` cut into tapped stages: one per nonlinearity, and one ending at ``z``.

    Args:
        codec: a CompressAI model; one without an ``nn.Sequential`` ``h_a`` has no hyper taps.

    Returns:
        ``(tap name, path of the tap's module in codec, stage)`` in forward order; each stage groups the
        codec's own ``h_a`` modules between two taps (the first led by :class:`Abs` where the codec feeds
        ``|y|``); :class:`~codecloss.features.FeatureExtractor` copies them.
    """
    h_a = getattr(codec, "h_a", None)
    if not isinstance(h_a, nn.Sequential) or not len(h_a):
        return []
    stages: list[tuple[str, str, nn.Sequential]] = []
    pending: list[nn.Module] = [Abs()] if _feeds_abs(codec) else []
    for index, module in enumerate(h_a):
        pending.append(module)
        last = index == len(h_a) - 1
        if isinstance(module, _NONLINEAR) or last:
            name = "z" if last else f"h{len(stages) + 1}"
            stages.append((name, f"h_a.{index}", nn.Sequential(*pending)))
            pending = []
    return stages
