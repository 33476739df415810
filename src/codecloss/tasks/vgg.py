"""A VGG19 loss network with named taps, the control every perceptual-loss comparison needs.

Tap names follow the papers (``conv1_1``, ``relu1_1``, ..., ``conv5_4``, ``relu5_4``), as in
Gatys et al. (CVPR 2016) and ESRGAN/BasicSR. ImageNet weights cannot be downloaded by
codecloss: they come from a file the user supplies (torchvision's ``vgg19-*.pth``), and
otherwise the network is randomly initialised with a fixed seed (He et al. 2016 and
Ustyuzhaninov et al. 2017 use random networks as a published perceptual-loss baseline).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["VGG19Features", "vgg19_tap_names"]

logger = logging.getLogger(__name__)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_tap_names(features: nn.Sequential) -> list[str]:
    """Names of the modules of torchvision's ``vgg19().features``: ``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}``."""
    names, block, index = [], 1, 0
    for module in features:
        if isinstance(module, nn.Conv2d):
            index += 1
            names.append(f"conv{block}_{index}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{index}")
        else:
            names.append(f"pool{block}")
            block, index = block + 1, 0
    return names


class VGG19Features(nn.Module):
    """Frozen torchvision VGG19 ``features`` with named taps; stops after the deepest tap asked for.

    Inputs are RGB in [0, 1] (mapped from ``input_range``) and ImageNet-normalised inside, as
    BasicSR's ``VGGFeatureExtractor(use_input_norm=True)`` does.

    Args:
        weights: ``None`` for random initialisation with ``seed``, or the path of a torchvision
            VGG19 state dict (loaded with ``weights_only=True``).
        seed: seed of the random initialisation (ignored with a weights file).

    Example:
        >>> vgg = VGG19Features(seed=0)
        >>> feats = vgg.extract(torch.rand(1, 3, 32, 32), ["relu1_1", "relu2_1"])
        >>> [tuple(f.shape) for f in feats.values()]
        [(1, 64, 32, 32), (1, 128, 16, 16)]
    """

    def __init__(self, weights: str | os.PathLike | None = None, seed: int = 0) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            features = make_layers(cfgs["E"])  # VGG19's convolutional part, without the 120M-parameter classifier
            for module in features.modules():  # torchvision's VGG initialisation
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(module.bias)
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"weights: {os.fspath(weights)!r} is not a state dict")
            prefix = "features."
            features.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        self.weights_source = f"random init (seed {seed})" if weights is None else os.fspath(weights)
        logger.info("VGG19 loss network: %s", self.weights_source)
        self.backbone_id = "vgg19"
        self.stages = features.eval().requires_grad_(False)
        for module in self.stages:  # torchvision's in-place ReLUs would overwrite a tapped convolution output
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.tap_names = vgg19_tap_names(self.stages)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def tap(self, name: str) -> int:
        """Index of tap ``name``; raises ``ValueError`` listing the valid names if unknown."""
        try:
            return self.tap_names.index(name)
        except ValueError:
            raise ValueError(f"layers: unknown tap {name!r} for backbone 'vgg19'; expected one of {self.tap_names}") from None

    def train(self, mode: bool = True) -> "VGG19Features":
        """Keep the frozen network in eval mode whatever ``mode`` is."""
        return super().train(False)

    def extract(
        self, images: Tensor, layers: Sequence[str], input_range: tuple[float, float] = (0.0, 1.0)
    ) -> "OrderedDict[str, Tensor]":
        """Features at ``layers`` (forward order) of images in ``input_range``.

        Args:
            images: (N, 3, H, W) images.
            layers: tap names.
            input_range: value range of ``images``.

        Returns:
            Ordered dict tap name -> feature map.
        """
        wanted = {self.tap(name): name for name in layers}
        low, high = input_range
        x = ((images - low) / (high - low) - self.mean) / self.std
        out: OrderedDict[str, Tensor] = OrderedDict()
        for index in range(max(wanted, default=-1) + 1):
            x = self.stages[index](x)
            if index in wanted:
                out[wanted[index]] = x
        return out
