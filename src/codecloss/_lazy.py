"""Lazy imports: package attributes loaded on first use, and a quiet first import of compressai.

``import codecloss`` stays cheap (no torch, no compressai) because the package's public names are resolved by a
module-level ``__getattr__`` (PEP 562) made here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

__all__ = ["lazy_exports", "quiet_compressai_import"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names defined in its submodules, imported on first use.

    Args:
        package: the package's ``__name__``.
        exports: public name -> submodule (relative to ``package``) that defines it.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level.

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, {"stylize": "gatys"})  # doctest: +SKIP
    """
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


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


def quiet_compressai_import() -> None:
    """Silence torch_geometric's ``torch.jit.script`` FutureWarning during compressai's first import, wherever
    in codecloss that import happens (no-op once compressai is imported)."""
    if "compressai" not in sys.modules and not any(isinstance(f, _QuietCompressAIFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietCompressAIFinder())
