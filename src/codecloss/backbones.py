"""Backbone registry: CompressAI image codecs whose analysis transform ``g_a`` is the loss network.

Every backbone is built from CompressAI's own model classes with the zoo's
(N, M) per quality, so upstream checkpoints load exactly. Ids read
``"{architecture}-{metric}-q{quality}"``, e.g. ``"bmshj2018-hyperprior-mse-q3"``.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import torch
from compressai.models import CompressionModel
from compressai.zoo.image import cfgs as _ZOO_CONFIGS
from compressai.zoo.image import model_architectures as _ZOO_CLASSES
from compressai.zoo.pretrained import load_pretrained
from torch import Tensor

from codecloss.features import FeatureExtractor, TapInfo

__all__ = [
    "BackboneSpec",
    "DEFAULT_BACKBONE",
    "ZOO_ARCHITECTURES",
    "WeightsArg",
    "get_backbone_spec",
    "list_backbones",
    "list_layers",
    "load_backbone",
    "load_codec",
    "from_compressai",
    "load_codec_state_dict",
]

logger = logging.getLogger(__name__)

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

#: The small codec trained and shipped by this project (see docs/model_card.md).
DEFAULT_BACKBONE = "codecloss-small-mse"

#: What ``weights=`` accepts: ``"default"``, a registry name, a file path, or ``None`` (random init).
WeightsArg = Union[str, os.PathLike, None]


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


_SPECS: dict[str, BackboneSpec] = {
    DEFAULT_BACKBONE: BackboneSpec(DEFAULT_BACKBONE, "bmshj2018-factorized", "mse", None, (64, 96)),
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


@functools.lru_cache(maxsize=None)
def _random_extractor(backbone: str) -> FeatureExtractor:
    spec = get_backbone_spec(backbone)
    return FeatureExtractor(spec.build_codec().g_a, backbone_id=spec.id)


def list_layers(backbone: str = DEFAULT_BACKBONE) -> list[TapInfo]:
    """Feature taps of a backbone in forward order.

    Args:
        backbone: backbone id.

    Returns:
        One :class:`TapInfo` (name, index, channels, stride) per tap; the last is ``y``.

    Example:
        >>> [t.name for t in list_layers("bmshj2018-factorized-mse-q1")]
        ['conv1', 'gdn1', 'conv2', 'gdn2', 'conv3', 'gdn3', 'y']
    """
    return list(_random_extractor(backbone).taps)


#: File name endings that make a ``weights=`` string a path (registry names may not end in them).
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar")


def is_weights_path(weights: str | os.PathLike) -> bool:
    """Whether a ``weights=`` value names a file (a path-like, a separator, a checkpoint suffix or an existing file)
    rather than a registry entry."""
    if isinstance(weights, os.PathLike):
        return True
    return os.sep in weights or weights.endswith(CHECKPOINT_SUFFIXES) or Path(weights).is_file()


def _g_a_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keep the ``g_a.`` entries of a full-model state_dict (a g_a-only one passes through)."""
    if any(k.startswith("g_a.") for k in state):
        return {k[len("g_a."):]: v for k, v in state.items() if k.startswith("g_a.")}
    return dict(state)


def load_codec_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and return its flat state_dict.

    Accepts CompressAI zoo files, CompressAI training checkpoints (``{"state_dict": ...}``),
    codecloss training checkpoints (``{"model": ...}``) and codecloss exports; applies CompressAI's key renames for old checkpoints.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no such file {str(path)!r}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"weights: {str(path)!r} holds a {type(checkpoint).__name__}, expected a state_dict")
    for key in ("state_dict", "model"):  # CompressAI / codecloss training checkpoints
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise ValueError(f"weights: {str(path)!r} is not a state_dict of tensors")
    return load_pretrained(dict(checkpoint))  # CompressAI's renames of old keys


def _resolve_state_dict(weights: WeightsArg, spec: BackboneSpec) -> dict[str, Tensor] | None:
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights: expected 'default', a registry name, a file path or None, got {type(weights).__name__}"
        )
    if is_weights_path(weights):
        return load_codec_state_dict(weights)
    from codecloss.weights import registered_state_dict

    return registered_state_dict(str(weights), spec.id)


def _load_g_a(g_a: torch.nn.Module, state: dict[str, Tensor], source: str) -> None:
    try:
        result = g_a.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"weights: {source} does not fit this backbone's g_a: {err}") from None
    # GDN reparametrisation buffers are constants (older files may lack them); anything else must match.
    missing = [k for k in result.missing_keys if "_reparam." not in k]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights: {source} does not fit this backbone's g_a "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )


@functools.lru_cache(maxsize=1)
def _warn_random_once() -> None:
    warnings.warn(
        "weights=None: the backbone is randomly initialised; its features are not perceptual. "
        "Use weights='default' for trained weights.",
        UserWarning,
        stacklevel=5,
    )


def _codec_and_state(backbone: str, weights: WeightsArg) -> tuple[BackboneSpec, CompressionModel, dict[str, Tensor] | None]:
    """A fresh codec of ``backbone`` and the resolved state_dict (``None``: random init, warned once)."""
    spec = get_backbone_spec(backbone)
    state = _resolve_state_dict(weights, spec)
    if state is None:
        _warn_random_once()
    return spec, spec.build_codec(), state


def load_backbone(backbone: str = DEFAULT_BACKBONE, weights: WeightsArg = "default") -> FeatureExtractor:
    """Build a frozen feature extractor for a backbone id.

    Args:
        backbone: backbone id (see :func:`list_backbones`).
        weights: ``"default"`` (the registry entry for this backbone), a registry name,
            a checkpoint file path, or ``None`` for random initialisation (warns once).

    Returns:
        A :class:`~codecloss.features.FeatureExtractor` on CPU in float32.

    Example:
        >>> extractor = load_backbone("bmshj2018-factorized-mse-q1", weights=None)  # doctest: +SKIP
    """
    spec, codec, state = _codec_and_state(backbone, weights)
    if state is not None:
        _load_g_a(codec.g_a, _g_a_state_dict(state), repr(str(weights)))
        logger.info("loaded %s weights from %s", spec.id, weights)
    return FeatureExtractor(codec.g_a, backbone_id=spec.id)


def load_codec(backbone: str = DEFAULT_BACKBONE, weights: WeightsArg = "default") -> CompressionModel:
    """The whole CompressAI codec of a backbone, entropy tables updated, ready to ``compress``/``decompress``.

    Args:
        backbone: backbone id (the embedded default works offline; zoo ids go through the registry).
        weights: as for :func:`load_backbone`.

    Returns:
        The CompressAI model in eval mode on CPU.

    Example:
        >>> codec = load_codec()  # doctest: +SKIP
        >>> out = codec.compress(torch.rand(1, 3, 64, 64))  # doctest: +SKIP
        >>> codec.decompress(out["strings"], out["shape"])["x_hat"].shape  # doctest: +SKIP
        torch.Size([1, 3, 64, 64])
    """
    spec, codec, state = _codec_and_state(backbone, weights)
    if state is not None:
        try:
            codec.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"weights: {str(weights)!r} does not fit the {spec.id} codec: {err}") from None
    codec.update(force=True)
    return codec.eval()


def from_compressai(model: CompressionModel | torch.nn.Module, backbone_id: str = "custom") -> FeatureExtractor:
    """Use your own CompressAI codec as the loss network.

    Args:
        model: any module with an analysis transform ``g_a`` (e.g. a trained CompressAI model);
            it is copied, the original stays untouched.
        backbone_id: a name for reports.

    Returns:
        A frozen :class:`~codecloss.features.FeatureExtractor`, accepted as ``backbone=`` by
        :class:`~codecloss.CodecPerceptualLoss` and :class:`~codecloss.CPIPS`.

    Example:
        >>> from compressai.models import FactorizedPrior
        >>> extractor = from_compressai(FactorizedPrior(64, 96))
        >>> extractor.tap_names
        ['conv1', 'gdn1', 'conv2', 'gdn2', 'conv3', 'gdn3', 'y']
    """
    g_a = getattr(model, "g_a", None)
    if not isinstance(g_a, torch.nn.Module):
        raise TypeError(f"model: expected a CompressAI model with an analysis transform g_a, got {type(model).__name__}")
    return FeatureExtractor(g_a, backbone_id=backbone_id)
