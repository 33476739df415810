"""CompressAI models for codec training: building, initialising from other weights, the joint head."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

__all__ = ["ClassificationHead", "build_model", "initialize_from", "split_parameters"]

logger = logging.getLogger(__name__)


class ClassificationHead(nn.Module):
    """Global-average-pool of the latent ``y`` followed by a linear classifier.

    Args:
        channels: channels of ``y`` (``M``).
        num_classes: number of classes.

    Example:
        >>> ClassificationHead(96, 3)(torch.randn(2, 96, 4, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fc(y.mean(dim=(2, 3)))


def build_model(arch: str, N: int, M: int) -> nn.Module:
    """A fresh CompressAI model: ``FactorizedPrior``, ``ScaleHyperprior`` or ``MeanScaleHyperprior(N, M)``.

    Example:
        >>> type(build_model("factorized", 64, 96)).__name__
        'FactorizedPrior'
    """
    from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior

    builders = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior, "mean-scale": MeanScaleHyperprior}
    if arch not in builders:
        raise ValueError(f"arch must be one of {sorted(builders)}, got {arch!r}")
    return builders[arch](N, M)


#: Entropy-coder tables: derived from the other parameters by ``update()``, never copied by ``init``.
_CODER_TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def _init_state(source: str) -> dict[str, torch.Tensor]:
    """The state_dict named by ``TrainConfig.init``: a weights file, or a backbone id's default weights."""
    from codecloss.backbones import is_weights_path, load_codec, load_codec_state_dict

    if is_weights_path(source):
        return load_codec_state_dict(source)
    return load_codec(source).state_dict()


def initialize_from(model: nn.Module, source: str, widen: bool = False) -> list[str]:
    """Copy every parameter of ``source`` whose name and shape match ``model``'s.

    With ``widen=True`` a *narrower* source (smaller ``N``/``M``) also fills the leading channels
    of every wider entry, and the weights from the new input channels to the old output channels
    of each convolution are zeroed. The old channels then compute exactly what the source
    computes (GDN's fresh off-diagonal ``gamma`` is already zero), so the wider model starts at
    the source's rate-distortion point and training grows the new channels: the function-preserving
    widening of Net2Net (Chen et al., ICLR 2016), with zero instead of copied weights.

    Args:
        model: a fresh CompressAI model (see :func:`build_model`).
        source: a backbone id (its default weights, e.g. ``"codecloss-small-mse"``) or a weights file.
        widen: also copy narrower entries into the leading channels (see above).

    Returns:
        The names of the copied entries (the others keep their initial values).

    Raises:
        ValueError: when ``source`` does not provide the whole analysis transform ``g_a``.

    Example:
        >>> model = build_model("hyperprior", 64, 96)
        >>> copied = initialize_from(model, "codecloss-small-mse")  # doctest: +SKIP
    """
    state = _init_state(source)
    own = model.state_dict()
    fitting = {}
    for key, value in state.items():
        if key not in own or key.endswith(_CODER_TABLES):
            continue
        if own[key].shape == value.shape:
            fitting[key] = value
        elif widen and _fits_inside(value.shape, own[key].shape):
            fitting[key] = _embed(value, own[key])
    missing = [key for key in own if key.startswith("g_a.") and key not in fitting and "_reparam." not in key]
    if missing:
        theirs = tuple(state["g_a.0.weight"].shape) if "g_a.0.weight" in state else "absent"
        hint = "" if widen else " (a narrower source needs widen=True, --init-widen)"
        raise ValueError(
            f"init: {source!r} has no g_a weights that fit a {type(model).__name__} of these widths "
            f"(missing or of another shape: {missing[:4]}; its g_a.0.weight is {theirs}, "
            f"expected {tuple(own['g_a.0.weight'].shape)}){hint}"
        )
    nn.Module.load_state_dict(model, fitting, strict=False)  # CompressAI's override would resize coder tables
    if widen:
        _zero_new_to_old(model, state)
    kept = sorted(key for key in own if key not in fitting and not key.endswith(_CODER_TABLES))
    logger.info("init from %s: copied %d entries, %d keep their initial values %s", source, len(fitting), len(kept), kept[:8])
    return sorted(fitting)


def _fits_inside(small: torch.Size, large: torch.Size) -> bool:
    return len(small) == len(large) and all(s <= l for s, l in zip(small, large))


def _embed(value: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """``fresh`` with ``value`` written into its leading corner."""
    out = fresh.clone()
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out


def _zero_new_to_old(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Zero each widened convolution's weights from new input channels to old output channels."""
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) or f"{name}.weight" not in state:
            continue
        old = state[f"{name}.weight"].shape
        in_dim = 0 if isinstance(module, nn.ConvTranspose2d) else 1  # ConvTranspose2d stores (in, out, k, k)
        out_dim = 1 - in_dim
        new_inputs = module.weight.shape[in_dim] - old[in_dim]
        if new_inputs > 0 and _fits_inside(old, module.weight.shape):
            with torch.no_grad():
                module.weight.narrow(out_dim, 0, old[out_dim]).narrow(in_dim, old[in_dim], new_inputs).zero_()


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """CompressAI's split: ``*.quantiles`` -> auxiliary optimiser, everything else -> main."""
    main, aux = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (aux if name.endswith(".quantiles") else main).append(param)
    return main, aux
