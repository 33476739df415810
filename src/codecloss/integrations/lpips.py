"""``LPIPS`` with the call sites of ``lpips.LPIPS``, computing CPIPS on a codec encoder.

Swap ``lpips.LPIPS(net="alex")`` for ``LPIPS()`` (or ``LPIPS(net=<backbone id>)``): the constructor
takes lpips's keywords, ``forward(in0, in1, retPerLayer=False, normalize=False)`` takes images in
[-1, 1] (or [0, 1] with ``normalize=True``) and returns (N, 1, 1, 1), or (N, 1, H, W) maps with
``spatial=True``. The values are those of :func:`codecloss.metric` on the same images.
The lpips package itself is not needed.

Example:
    >>> import torch
    >>> from codecloss.integrations.lpips import LPIPS
    >>> loss_fn = LPIPS()  # embedded default backbone
    >>> loss_fn(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1).shape
    torch.Size([2, 1, 1, 1])
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

from torch import Tensor, nn

from codecloss import CPIPS, DEFAULT_BACKBONE
from codecloss._validate import check_values
from codecloss.integrations import NORMALIZE_OPTIONS

__all__ = ["LPIPS", "LPIPS_TRUNKS"]

logger = logging.getLogger(__name__)

#: lpips's own trunk names, which this class refuses (it runs a codec encoder).
LPIPS_TRUNKS = ("alex", "vgg", "vgg16", "squeeze")


def _conflict(option: str, value: object, other: str, got: object) -> ValueError:
    return ValueError(f"{option}={value!r} and {other}={got!r} contradict each other; give only one of them")


class LPIPS(nn.Module):
    """Drop-in for ``lpips.LPIPS`` on a codec backbone: same constructor keywords, forward and output shapes.

    Args:
        net: codecloss backbone id (lpips's ``"alex"``, ``"vgg"``, ``"squeeze"`` are refused).
        spatial: return per-pixel maps (N, 1, H, W), bilinearly upsampled like lpips.
        weights: backbone weights, as for :class:`codecloss.CPIPS`.
        heads: ``"uniform"`` (uncalibrated), a head file or a registry name.
        layers: tap names (default: the heads' or the backbone's taps).
        pretrained: lpips: calibrated linear layers. ``False`` here means uncalibrated (uniform) heads,
            where lpips draws random ones; it cannot be combined with ``heads``/``model_path``.
        lpips: ``False`` is lpips's baseline (channels summed, no linear layers), which is what
            uniform heads compute; it cannot be combined with calibrated heads.
        pnet_rand: random backbone weights (``weights=None``).
        pnet_tune: refused when ``True``: the codec backbone is always frozen.
        model_path: a head file (lpips: the linear layers' file); same as ``heads=model_path``.
        version: only ``"0.1"`` (lpips's ``"0.0"`` input-scaling bug has no counterpart here).
        use_dropout: accepted, no effect (lpips's dropout acts only while training its linear layers).
        eval_mode: accepted, no effect (the backbone and heads are frozen and have no train mode).
        verbose: log the set-up at INFO level (lpips prints it).

    Example:
        >>> loss_fn = LPIPS(spatial=True)  # doctest: +SKIP
        >>> d, per_tap = loss_fn(x, y, retPerLayer=True, normalize=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        net: str = DEFAULT_BACKBONE,
        spatial: bool = False,
        *,
        weights: str | os.PathLike | None = "default",
        heads: str | os.PathLike = "uniform",
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        lpips: bool = True,
        pnet_rand: bool = False,
        pnet_tune: bool = False,
        model_path: str | os.PathLike | None = None,
        version: str = "0.1",
        use_dropout: bool = True,
        eval_mode: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(net, str):
            raise TypeError(f"net: expected a codecloss backbone id (str), got {type(net).__name__}")
        if net in LPIPS_TRUNKS:
            raise ValueError(
                f"net: {net!r} is an lpips trunk; this LPIPS runs a learned codec's encoder: pass a codecloss "
                f"backbone id (default {DEFAULT_BACKBONE!r}, all in codecloss.list_backbones()), or keep lpips.LPIPS "
                "for AlexNet/VGG/SqueezeNet"
            )
        if version != "0.1":
            raise ValueError(f"version: got {version!r}, expected '0.1' (the only version codecloss implements)")
        if pnet_tune:
            raise ValueError(
                "pnet_tune: got True, but the codec backbone is always frozen (gradients reach the images only)"
            )
        if model_path is not None:
            if heads != "uniform":
                raise _conflict("model_path", model_path, "heads", heads)
            heads = model_path
        for option, value in (("pretrained", pretrained), ("lpips", lpips)):
            if not value and heads != "uniform":
                raise _conflict(option, value, "heads", heads)
        if pnet_rand:
            if weights != "default":
                raise _conflict("pnet_rand", pnet_rand, "weights", weights)
            weights = None
        self.cpips = CPIPS(net, layers=layers, weights=weights, heads=heads, input_range=(-1, 1), spatial=spatial,
                           per_layer=True)
        self.spatial = bool(spatial)
        #: Tap names, in the order of the per-layer list of ``forward(..., retPerLayer=True)``.
        self.layers: list[str] = list(self.cpips.layers)
        if verbose:
            logger.info("set up CPIPS [%s], taps %s, heads %s, spatial %s", net, self.layers,
                        self.cpips.heads_source, "on" if spatial else "off")

    def forward(
        self, in0: Tensor, in1: Tensor, retPerLayer: bool = False, normalize: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Distance between ``in0`` and ``in1``, as ``lpips.LPIPS.forward``.

        Args:
            in0: images (N, 3, H, W) in [-1, 1], or in [0, 1] with ``normalize=True``.
            in1: images of the same shape and range.
            retPerLayer: also return the list of per-tap contributions (in :attr:`layers` order).
            normalize: the images are in [0, 1] (mapped to [-1, 1] as lpips does).

        Returns:
            (N, 1, 1, 1) distances, or (N, 1, H, W) maps when ``spatial``; with ``retPerLayer``
            ``(total, [per-tap values of the same shape])``.
        """
        if all(isinstance(t, Tensor) and t.is_floating_point() for t in (in0, in1)):  # else CPIPS says what is wrong
            check_values({"in0": in0, "in1": in1}, (0.0, 1.0) if normalize else (-1.0, 1.0), options=NORMALIZE_OPTIONS)
        if normalize:  # lpips: "turn on this flag if input is [0,1] so it can be adjusted to [-1, +1]"
            in0, in1 = 2 * in0 - 1, 2 * in1 - 1
        total, parts = self.cpips(in0, in1)
        if not self.spatial:
            total = total.view(-1, 1, 1, 1)
            parts = {tap: value.view(-1, 1, 1, 1) for tap, value in parts.items()}
        return (total, list(parts.values())) if retPerLayer else total

    def extra_repr(self) -> str:
        return f"spatial={self.spatial}, layers={self.layers}"
