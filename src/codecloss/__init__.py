"""codecloss: perceptual losses and metrics on the analysis transforms of learned image codecs.

The public names are loaded on first use, so that ``import codecloss`` (and ``codecloss --help``) does not
import torch and compressai.

Example:
    >>> import codecloss
    >>> loss_fn = codecloss.CodecPerceptualLoss(layers=["gdn1", "gdn2", "y"])  # doctest: +SKIP
    >>> d = codecloss.metric(x, y)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Sequence

__version__ = "0.1.0"

#: Public name -> submodule of :mod:`codecloss` that defines it.
_EXPORTS: dict[str, str] = {
    "DEFAULT_BACKBONE": "backbones",
    "CPIPS": "cpips",
    "BackboneSpec": "backbones",
    "CodecPerceptualLoss": "losses",
    "FeatureExtractor": "features",
    "TapInfo": "features",
    "WeightSpec": "weights",
    "WeightsError": "weights",
    "content_loss": "losses",
    "from_compressai": "backbones",
    "get_backbone_spec": "backbones",
    "get_weight_spec": "weights",
    "get_weights_file": "weights",
    "gram_matrix": "losses",
    "import_weights": "weights",
    "list_backbones": "backbones",
    "list_layers": "backbones",
    "list_weights": "weights",
    "load_backbone": "backbones",
    "load_codec": "backbones",
    "metric": "cpips",
    "normalize_channels": "losses",
    "register_weights": "weights",
    "style_loss": "losses",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'codecloss' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _QuietLoader(importlib.abc.Loader):
    """Runs a module's import with the deprecated-``torch.jit.script`` FutureWarning silenced."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the module sees its own loader
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            self.loader.exec_module(module)


class _QuietCompressAIFinder(importlib.abc.MetaPathFinder):
    """Silences that warning during compressai's first import, wherever in codecloss it happens.

    compressai 1.2.x imports torch_geometric, whose ``nn.pool.select`` calls ``torch.jit.script`` at import
    time. This finder sits on ``sys.meta_path`` until compressai is first imported, then leaves.
    """

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "compressai":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "compressai" not in sys.modules:
    sys.meta_path.insert(0, _QuietCompressAIFinder())
