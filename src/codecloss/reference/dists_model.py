"""DISTS (Ding et al., TPAMI 2022) from the ``DISTS_pytorch`` package, with its alpha/beta, on a VGG16 trunk from a file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from codecloss.reference._packages import built_on, require
from codecloss.reference.trunks import Trunk, WeightsArg, as_trunk

__all__ = ["DISTS", "dists"]


class DISTS(nn.Module):
    """The ``DISTS_pytorch`` model, frozen, as ``forward(x, y) -> (N,)`` on images in [0, 1]; build with :func:`dists`.

    Args:
        model: a ``DISTS_pytorch.DISTS`` (alpha and beta loaded).
        trunk: the VGG16 trunk it runs on (for ``backbone_id`` and ``weights_source``).
    """

    def __init__(self, model: Any, trunk: Trunk) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.backbone_id = f"dists-{trunk.backbone_id}"
        self.weights_source = trunk.weights_source

    def train(self, mode: bool = True) -> "DISTS":
        """Keep the frozen model in eval mode whatever ``mode`` is."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """DISTS distances (N,) between image batches (N, 3, H, W) in [0, 1]; differentiable in both."""
        return self.model(x, y, require_grad=True).reshape(x.shape[0])


def dists(trunk: Trunk | WeightsArg = None) -> DISTS:
    """DISTS with the ``DISTS_pytorch`` package's code and shipped alpha/beta on an ImageNet VGG16 trunk from a file.

    Args:
        trunk: ``vgg16_features.pth``, ``"torchvision"`` or a VGG16 :class:`~codecloss.reference.Trunk`;
            ``None``: the file in ``CODECLOSS_TRUNKS``.

    Returns:
        A :class:`DISTS` module; nothing is downloaded.

    Raises:
        FileNotFoundError: no trunk given and none in ``CODECLOSS_TRUNKS``.
        ValueError: a trunk file that does not fit.
        ImportError: the ``DISTS_pytorch`` package (PyPI ``dists-pytorch``) is not installed.

    Example:
        >>> d = dists("../shared/data/reference/imagenet_features/vgg16_features.pth")  # doctest: +SKIP
        >>> d(x, y).shape  # doctest: +SKIP
        torch.Size([4])
    """
    source = as_trunk("vgg16", trunk)
    DISTS_pt = require("DISTS_pytorch.DISTS_pt", "dists-pytorch")

    with built_on(DISTS_pt, "models", copy.deepcopy(source.features)):
        model = DISTS_pt.DISTS(load_weights=False)  # its own loader reads sys.prefix/weights.pt unsafely
    heads = torch.load(Path(DISTS_pt.__file__).with_name("weights.pt"), map_location="cpu", weights_only=True)
    model.alpha.data, model.beta.data = heads["alpha"], heads["beta"]
    return DISTS(model, source)
