"""Backbones: CompressAI image codecs whose analysis transform ``g_a`` is the loss network.

Every backbone is built from CompressAI's own model classes with the zoo's
(N, M) per quality (:mod:`codecloss.specs`), so upstream checkpoints load exactly, and its
weights come from a file or the registry (:mod:`codecloss.weights`). Ids read
``"{architecture}-{metric}-q{quality}"``, e.g. ``"bmshj2018-hyperprior-mse-q3"``.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Mapping

import torch
from compressai.models import CompressionModel
from torch import Tensor

from codecloss.checkpoints import CHECKPOINT_SUFFIXES, WeightsArg, is_weights_path, load_codec_state_dict
from codecloss.features import FeatureExtractor, TapInfo
from codecloss.specs import DEFAULT_BACKBONE, ZOO_ARCHITECTURES, BackboneSpec, get_backbone_spec, list_backbones
from codecloss.weights import registered_state_dict

__all__ = [
    "BackboneSpec",
    "CHECKPOINT_SUFFIXES",
    "DEFAULT_BACKBONE",
    "ZOO_ARCHITECTURES",
    "WeightsArg",
    "get_backbone_spec",
    "is_weights_path",
    "list_backbones",
    "list_layers",
    "load_backbone",
    "load_codec",
    "from_compressai",
    "load_codec_state_dict",
]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _random_extractor(backbone: str) -> FeatureExtractor:
    spec = get_backbone_spec(backbone)
    return FeatureExtractor.from_codec(spec.build_codec(), backbone_id=spec.id)


def list_layers(backbone: str = DEFAULT_BACKBONE) -> list[TapInfo]:
    """Feature taps of a backbone in forward order.

    Args:
        backbone: backbone id.

    Returns:
        One :class:`TapInfo` (name, index, channels, stride) per tap: ``g_a``'s up to ``y``, then a
        hyperprior's ``h_a`` taps (``h1``, ``h2``, ..., ``z``; see :mod:`codecloss.hyper`).

    Example:
        >>> [t.name for t in list_layers("bmshj2018-factorized-mse-q1")]
        ['conv1', 'gdn1', 'conv2', 'gdn2', 'conv3', 'gdn3', 'y']
    """
    return list(_random_extractor(backbone).taps)


def _part_state_dict(state: Mapping[str, Tensor], part: str) -> dict[str, Tensor]:
    """The ``{part}.`` entries of a full-model state_dict, prefix removed (empty if it has none)."""
    return {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(f"{part}.")}


def _resolve_state_dict(weights: WeightsArg, spec: BackboneSpec) -> dict[str, Tensor] | None:
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights: expected 'default', a registry name, a file path or None, got {type(weights).__name__}"
        )
    if is_weights_path(weights):
        return load_codec_state_dict(weights)
    return registered_state_dict(str(weights), spec.id)


def _load_part(module: torch.nn.Module, state: dict[str, Tensor], source: str, part: str) -> None:
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"weights: {source} does not fit this backbone's {part}: {err}") from None
    # GDN reparametrisation buffers are constants (older files may lack them); anything else must match.
    missing = [k for k in result.missing_keys if "_reparam." not in k]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights: {source} does not fit this backbone's {part} "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )


def _load_analysis(codec: CompressionModel, state: dict[str, Tensor], source: str) -> bool:
    """Load ``g_a`` (from a full-model or a g_a-only state_dict) and, where the file has it, ``h_a``.

    Returns:
        Whether ``h_a`` was loaded (a g_a-only file leaves it random, so its taps are not offered).
    """
    is_full = any(k.startswith("g_a.") for k in state)
    _load_part(codec.g_a, _part_state_dict(state, "g_a") if is_full else dict(state), source, "g_a")
    h_a = _part_state_dict(state, "h_a") if is_full else {}
    if h_a and isinstance(getattr(codec, "h_a", None), torch.nn.Module):
        _load_part(codec.h_a, h_a, source, "h_a")
        return True
    return False


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
    hyper = state is None  # random init: h_a is as random as g_a
    if state is not None:
        hyper = _load_analysis(codec, state, repr(str(weights)))
        logger.info("loaded %s weights from %s", spec.id, weights)
    return FeatureExtractor.from_codec(codec, backbone_id=spec.id, hyper=hyper)


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
        A frozen :class:`~codecloss.features.FeatureExtractor` (with ``h_a`` taps if the model is a
        hyperprior), accepted as ``backbone=`` by :class:`~codecloss.CodecPerceptualLoss` and
        :class:`~codecloss.CPIPS`.

    Example:
        >>> from compressai.models import FactorizedPrior
        >>> extractor = from_compressai(FactorizedPrior(64, 96))
        >>> extractor.tap_names
        ['conv1', 'gdn1', 'conv2', 'gdn2', 'conv3', 'gdn3', 'y']
    """
    g_a = getattr(model, "g_a", None)
    if not isinstance(g_a, torch.nn.Module):
        raise TypeError(f"model: expected a CompressAI model with an analysis transform g_a, got {type(model).__name__}")
    return FeatureExtractor.from_codec(model, backbone_id=backbone_id)
