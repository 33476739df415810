"""LPIPS (Zhang et al., CVPR 2018) from the ``lpips`` package, with its v0.1 linear heads, on a trunk from a file."""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from codecloss._validate import check_choice
from codecloss.reference._packages import built_on, require
from codecloss.reference.trunks import Trunk, WeightsArg, as_trunk

__all__ = ["LPIPS", "LPIPS_NETS", "lpips"]

#: LPIPS ``net`` -> trunk it runs on.
LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}


class LPIPS(nn.Module):
    """The ``lpips`` package's model, frozen, as ``forward(x, y) -> (N,)`` on images in [0, 1]; build with :func:`lpips`.

    Args:
        model: an ``lpips.LPIPS`` (heads loaded).
        trunk: the trunk its ``net`` holds (for ``backbone_id`` and ``weights_source``).
    """

    def __init__(self, model: Any, trunk: Trunk) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.backbone_id = f"lpips-{trunk.backbone_id}"
        self.weights_source = trunk.weights_source

    def train(self, mode: bool = True) -> "LPIPS":
        """Keep the frozen model in eval mode whatever ``mode`` is."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distances (N,) between image batches (N, 3, H, W) in [0, 1]; differentiable in both."""
        return self.model(x, y, normalize=True).flatten()


def lpips(net: str = "alex", trunk: Trunk | WeightsArg = None) -> LPIPS:
    """LPIPS with the ``lpips`` package's code and v0.1 linear heads on an ImageNet trunk from a file.

    Args:
        net: ``"alex"`` (AlexNet trunk, the standard LPIPS) or ``"vgg"`` (VGG16 trunk).
        trunk: the trunk file (``alexnet_features.pth`` / ``vgg16_features.pth``), ``"torchvision"``, or a
            :class:`~codecloss.reference.Trunk` of that network; ``None``: the file in ``CODECLOSS_TRUNKS``.

    Returns:
        An :class:`LPIPS` module; nothing is downloaded.

    Raises:
        FileNotFoundError: no trunk given and none in ``CODECLOSS_TRUNKS``.
        ValueError: unknown ``net`` or a trunk file that does not fit.
        ImportError: the ``lpips`` package is not installed.

    Example:
        >>> d = lpips("alex", "../shared/data/reference/imagenet_features/alexnet_features.pth")  # doctest: +SKIP
        >>> d(x, y).shape  # doctest: +SKIP
        torch.Size([4])
    """
    check_choice("net", net, LPIPS_NETS)
    source = as_trunk(LPIPS_NETS[net], trunk)
    lpips_package = require("lpips", "lpips")

    with built_on(lpips_package.pretrained_networks, "tv", copy.deepcopy(source.features)):
        model = lpips_package.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    return LPIPS(model, source)
