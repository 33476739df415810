"""The style-transfer objective shared by image optimisation (:mod:`~codecloss.tasks.gatys`) and the feed-forward
stylizer (:mod:`~codecloss.tasks.train_style`): relative content and Gram errors on any loss network.

.. math::
    L(x) = w_c \\sum_t a_t \\frac{\\lVert \\phi_t(x) - \\phi_t(c) \\rVert^2}{\\lVert \\phi_t(c) \\rVert^2}
         + w_s \\sum_s b_s \\frac{\\lVert G(\\phi_s(x)) - G(\\phi_s(s)) \\rVert^2}{\\lVert G(\\phi_s(s)) \\rVert^2}
         + w_{tv}\\, \\mathrm{TV}(x)

with per-tap weights ``a_t``, ``b_s`` normalised to sum to 1: each term is a relative error, so taps of very
different magnitudes count alike, the weights mean the same on every network, and the input scale of a network
([0, 1] or [0, 255]) does not change them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import torch
from torch import Tensor

from codecloss.losses import gram_matrix, resolve_layer_weights

__all__ = ["LayersArg", "StyleObjective", "layer_weights", "total_variation"]

#: Tap names, or a mapping tap name -> weight.
LayersArg = Union[Sequence[str], Mapping[str, float], None]


def layer_weights(argument: str, layers: LayersArg, network: Any) -> dict[str, float]:
    """:func:`codecloss.losses.resolve_layer_weights`, normalised to sum to 1."""
    chosen = resolve_layer_weights(argument, layers, network)
    total = sum(chosen.values())
    if total <= 0:
        raise ValueError(f"{argument}: expected at least one tap with a weight > 0, got {chosen}")
    return {name: weight / total for name, weight in chosen.items()}


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference of vertical and horizontal neighbours."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class StyleObjective:
    """Relative content and Gram errors on ``network``, with the style's Gram targets computed once.

    Args:
        network: a loss network with ``extract(images, layers)`` (a codec :class:`~codecloss.FeatureExtractor`
            or a :mod:`codecloss.reference` trunk).
        style: (1, 3, H, W) style image in [0, 1]; its Gram targets serve every image of a batch.
        content_taps: content tap -> weight (summing to 1).
        style_taps: Gram tap -> weight (summing to 1).
        weights: ``(content_weight, style_weight, tv_weight)``.

    Example:
        >>> objective = StyleObjective(net, style, {"gdn3": 1.0}, {"gdn1": 0.5, "gdn2": 0.5}, (1.0, 1e3, 0.0))  # doctest: +SKIP
        >>> terms = objective.terms(x, objective.content_targets(content))  # doctest: +SKIP
    """

    def __init__(self, network: Any, style: Tensor, content_taps: dict[str, float], style_taps: dict[str, float],
                 weights: tuple[float, float, float]) -> None:
        self.network = network
        self.content_taps, self.style_taps = content_taps, style_taps
        self.content_weight, self.style_weight, self.tv_weight = weights
        with torch.no_grad():
            self.gram_targets = {t: gram_matrix(f) for t, f in network.extract(style, list(style_taps)).items()}
        self.gram_norms = {t: g.pow(2).mean().clamp_min(1e-20) for t, g in self.gram_targets.items()}

    @torch.no_grad()
    def content_targets(self, content: Tensor | None) -> dict[str, Tensor]:
        """Features of ``content`` (N, 3, H, W) at the content taps; empty without content or content weight."""
        if content is None or self.content_weight <= 0:
            return {}
        return dict(self.network.extract(content, list(self.content_taps)))

    def terms(self, x: Tensor, content_targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The objective's terms for images ``x`` against ``content_targets`` (from :meth:`content_targets`).

        Returns:
            ``content``, ``style``, ``tv`` and the weighted ``total``, scalar tensors (float32 at least).
        """
        taps = list(dict.fromkeys([*content_targets, *self.style_taps]))
        features = self.network.extract(x, taps)
        zero = x.new_zeros((), dtype=torch.promote_types(x.dtype, torch.float32))
        content = sum(
            (self.content_taps[t] * (features[t].float() - f.float()).pow(2).mean() / f.float().pow(2).mean().clamp_min(1e-12)
             for t, f in content_targets.items()),
            zero,
        )
        style = sum(
            (self.style_taps[t] * (gram_matrix(features[t]) - g).pow(2).mean() / self.gram_norms[t]
             for t, g in self.gram_targets.items()),
            zero,
        )
        tv = total_variation(x)
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        return {"content": content, "style": style, "tv": tv, "total": total}
