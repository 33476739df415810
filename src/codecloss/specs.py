"""Backbone specs: which CompressAI model class and (N, M) each backbone id stands for.

The lowest layer shared by :mod:`codecloss.backbones` (which builds feature extractors from these
specs and loads weights into them) and :mod:`codecloss.weights` (whose registry entries name a
backbone and copy its architecture, metric, quality and config). Ids read
``"{architecture}-{metric}-q{quality}"``, e.g. ``"bmshj2018-hyperprior-mse-q3"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from compressai.models import CompressionModel
from compressai.zoo.image import cfgs as _ZOO_CONFIGS
from compressai.zoo.image import model_architectures as _ZOO_CLASSES

from codecloss._default import DEFAULT_BACKBONE

__all__ = ["BackboneSpec", "DEFAULT_BACKBONE", "ZOO_ARCHITECTURES", "get_backbone_spec", "list_backbones"]

#: CompressAI zoo image architectures codecloss builds (the ReLU variant of bmshj2018 has no checkpoints).
ZOO_ARCHITECTURES: tuple[str, ...] = (
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
)
_METRICS = ("mse", "ms-ssim")


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    Attributes:
        id: backbone id.
        architecture: CompressAI zoo architecture name (model class).
        metric: distortion the codec was trained for, ``"mse"`` or ``"ms-ssim"``.
        quality: zoo quality level, ``None`` for codecs outside the zoo.
        config: constructor arguments of the model class, ``(N, M)`` or ``(N,)``.
    """

    id: str
    architecture: str
    metric: str
    quality: int | None
    config: tuple[int, ...]

    def build_codec(self) -> CompressionModel:
        """A randomly initialised CompressAI model of this backbone's architecture."""
        return _ZOO_CLASSES[self.architecture](*self.config)


def _zoo_specs() -> dict[str, BackboneSpec]:
    specs = {}
    for arch in ZOO_ARCHITECTURES:
        for metric in _METRICS:
            for quality, config in sorted(_ZOO_CONFIGS[arch].items()):
                spec = BackboneSpec(
                    f"{arch}-{metric}-q{quality}", arch, metric, quality, tuple(config))
                specs[spec.id] = spec
    return specs


_SPECS: dict[str, BackboneSpec] = {  # the codecs shipped in the wheel (docs/model_card.md), the default first
    "codecloss-wide-sem": BackboneSpec("codecloss-wide-sem", "bmshj2018-factorized", "mse", None, (128, 192)),
    "codecloss-wide-mse": BackboneSpec("codecloss-wide-mse", "bmshj2018-factorized", "mse", None, (128, 192)),
    "codecloss-small-mse": BackboneSpec("codecloss-small-mse", "bmshj2018-factorized", "mse", None, (64, 96)),
    **_zoo_specs(),
}


def list_backbones() -> list[str]:
    """Ids of every built-in backbone, the embedded default first.

    Example:
        >>> "bmshj2018-hyperprior-mse-q3" in list_backbones()
        True
    """
    return list(_SPECS)


def get_backbone_spec(backbone: str) -> BackboneSpec:
    """Look up a backbone id; raises ``ValueError`` listing valid ids if unknown."""
    if not isinstance(backbone, str):
        raise TypeError(f"backbone: expected a backbone id (str), got {type(backbone).__name__}")
    try:
        return _SPECS[backbone]
    except KeyError:
        raise ValueError(
            f"backbone: unknown backbone {backbone!r}; expected one of {list_backbones()}"
        ) from None
