"""Where weight files live: the user cache (resolved at call time) and the shipped assets folder.

Layout::

    <cache_dir()>/
        pins.json                 trust-on-first-use digests (``codecloss weights pin``)
        weights/<file>            verified files, named as in their URL
        weights/<file>.lock       inter-process lock of one file
        weights/<file>.corrupt    a cached file that failed verification, moved aside
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from codecloss.weights.registry import WeightSpec

__all__ = ["assets_dir", "cache_dir", "local_path", "pins_path"]


def cache_dir() -> Path:
    """The codecloss cache folder, resolved from the environment at each call.

    Order: ``$CODECLOSS_HOME``, ``$TORCH_HOME/codecloss``, ``$XDG_CACHE_HOME/torch/codecloss``,
    ``~/.cache/torch/codecloss`` (the last three follow torch.hub's ``$TORCH_HOME`` rule).

    Returns:
        The folder (not created).

    Example:
        >>> cache_dir()  # doctest: +SKIP
        PosixPath('/home/me/.cache/torch/codecloss')
    """
    if os.environ.get("CODECLOSS_HOME"):
        return Path(os.environ["CODECLOSS_HOME"]).expanduser()
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser() / "codecloss"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "torch" / "codecloss"


def assets_dir() -> Path:
    """The ``codecloss/assets`` folder of the installed package (files shipped in the wheel)."""
    return Path(str(resources.files("codecloss"))) / "assets"


def local_path(spec: WeightSpec) -> Path:
    """Where the file of ``spec`` is (asset) or goes (cache); it may not exist yet."""
    if spec.asset is not None:
        return assets_dir() / spec.asset
    return cache_dir() / "weights" / spec.filename


def pins_path() -> Path:
    """The lock file of pinned digests: ``$CODECLOSS_PINS`` or ``<cache_dir()>/pins.json``."""
    if os.environ.get("CODECLOSS_PINS"):
        return Path(os.environ["CODECLOSS_PINS"]).expanduser()
    return cache_dir() / "pins.json"
