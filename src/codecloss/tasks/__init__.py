"""What users do with the loss: style transfer and texture synthesis, the super-resolution study, and the
independent judges that score them (which share nothing with the loss being judged).

The public functions are importable from here and loaded on first use, so that ``import codecloss.tasks``
stays cheap:

Example:
    >>> import codecloss.tasks
    >>> out = codecloss.tasks.stylize("photo.jpg", "starry_night.jpg")  # doctest: +SKIP
"""

from __future__ import annotations

from codecloss._lazy import lazy_exports

#: Public name -> submodule of :mod:`codecloss.tasks` that defines it.
_EXPORTS = {
    "stylize": "gatys",
    "run_stylize": "gatys",
    "StylizeResult": "gatys",
    "judge_style": "judges",
    "load_stylizer": "stylizer_net",
    "load_upscaler": "sr_upscaler",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
