"""Build the ``lpips`` and ``DISTS_pytorch`` models on a given trunk instead of their torchvision download."""

from __future__ import annotations

import contextlib
import importlib
import threading
import types
import warnings
from typing import Any, Iterator
from unittest import mock

import torch
from torch import nn

_LOCK = threading.Lock()


def require(module: str, package: str) -> Any:
    """Import ``module`` (of the PyPI package ``package``), or raise ``ImportError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f'{module} is not installed: pip install {package} (or "codecloss[reference]")') from err


@contextlib.contextmanager
def built_on(module: Any, attribute: str, features: nn.Sequential) -> Iterator[None]:
    """While active, ``module.<attribute>`` (a package's ``torchvision.models`` alias) returns ``features`` from any
    network builder, so the package's constructor neither builds nor downloads torchvision's network.

    The package's own random draws (e.g. DISTS's placeholder alpha/beta) leave the global RNG untouched.
    """
    stub = types.SimpleNamespace(
        vgg16=lambda *args, **kwargs: types.SimpleNamespace(features=features),
        alexnet=lambda *args, **kwargs: types.SimpleNamespace(features=features),
    )
    with _LOCK, mock.patch.object(module, attribute, stub), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
