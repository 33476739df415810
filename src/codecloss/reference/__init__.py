"""The real anchors: frozen ImageNet trunks (VGG16, VGG19, AlexNet) with named taps, and LPIPS and DISTS on them.

Nothing here downloads (except ``weights="torchvision"``, on request): the trunk weights come from files,
by default from the folder ``CODECLOSS_TRUNKS`` names (``vgg16_features.pth``, ``alexnet_features.pth``).
See ``docs/reference.md``.

Example:
    >>> from codecloss import reference
    >>> vgg = reference.trunk("vgg16", weights=reference.trunk_file("vgg16"))  # doctest: +SKIP
    >>> d = reference.lpips("alex")(x, y)  # doctest: +SKIP
"""

from __future__ import annotations

from codecloss.reference.dists_model import DISTS, dists
from codecloss.reference.lpips_model import LPIPS, lpips
from codecloss.reference.trunks import TRUNK_NAMES, TRUNKS_ENV, Trunk, trunk, trunk_file

__all__ = ["DISTS", "LPIPS", "TRUNK_NAMES", "TRUNKS_ENV", "Trunk", "dists", "lpips", "trunk", "trunk_file"]
