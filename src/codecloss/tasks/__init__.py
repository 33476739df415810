"""What users do with the loss: style transfer and texture synthesis, the super-resolution study, and the
independent judges that score them (which share nothing with the loss being judged).

The public functions are importable from here and loaded on first use, so that ``import codecloss.tasks``
stays cheap:

Example:
    >>> import codecloss.tasks
    >>> out = codecloss.tasks.stylize("photo.jpg", "starry_night.jpg")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> submodule of :mod:`codecloss.tasks` that defines it.
_EXPORTS = {
    "stylize": "gatys",
    "run_stylize": "gatys",
    "StylizeResult": "gatys",
    "judge_style": "judges",
    "load_upscaler": "sr_upscaler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'codecloss.tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
