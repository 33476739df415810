"""Thin adapters of codecloss to other ecosystems; each submodule is imported on its own.

- :mod:`codecloss.integrations.torchmetrics`: ``CPIPSMetric``, a ``torchmetrics.Metric`` (needs torchmetrics).
- :mod:`codecloss.integrations.lpips`: ``LPIPS`` with ``lpips.LPIPS``'s call sites (needs nothing extra).
- :mod:`codecloss.integrations.basicsr`: ``CodecPerceptualLoss`` with BasicSR ``PerceptualLoss`` options,
  registered in BasicSR's ``LOSS_REGISTRY`` when basicsr is importable.

Importing this package imports none of them, so ``import codecloss`` never needs the optional packages;
install them with ``pip install ".[integrations]"`` in the codecloss clone.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL_HINT", "NORMALIZE_OPTIONS", "require"]

#: How to install the optional packages of the adapters.
INSTALL_HINT = 'pip install ".[integrations]" in the codecloss clone'

#: How the adapters' ``normalize=`` declares each image range, for the hints of range errors.
NORMALIZE_OPTIONS = {(0.0, 1.0): "normalize=True", (-1.0, 1.0): "normalize=False"}


def require(module: str, adapter: str) -> ModuleType:
    """Import an optional dependency or raise an ``ImportError`` naming the extra that installs it.

    Args:
        module: the module to import, e.g. ``"torchmetrics"``.
        adapter: the adapter that needs it, for the message.

    Returns:
        The imported module.

    Example:
        >>> require("torchmetrics", "codecloss.integrations.torchmetrics").__name__  # doctest: +SKIP
        'torchmetrics'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{adapter} needs the optional package {module!r} ({err}); install it with {INSTALL_HINT}"
        ) from err
