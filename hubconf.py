"""torch.hub entry points of codecloss.

Example::

    import torch
    cpips = torch.hub.load("<owner>/codecloss", "cpips")                    # from GitHub
    cpips = torch.hub.load("/path/to/codecloss", "cpips", source="local")   # from a checkout
    loss_fn = torch.hub.load("/path/to/codecloss", "codec_perceptual_loss", source="local", layers=["gdn1", "y"])
    codec = torch.hub.load("/path/to/codecloss", "load_codec", source="local")

The code is this checkout's: when ``src/codecloss`` sits beside this file and codecloss is not yet
imported, it is imported from there (hub downloads are not installed); otherwise the installed
package is used. codecloss's own dependencies (torch, compressai, numpy, ...) must be installed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

dependencies = ["torch", "compressai"]

_SRC = Path(__file__).resolve().parent / "src"


def _codecloss() -> Any:
    if "codecloss" not in sys.modules and (_SRC / "codecloss" / "__init__.py").is_file():
        sys.path.insert(0, str(_SRC))
        try:
            import codecloss
        finally:
            sys.path.remove(str(_SRC))
        return codecloss
    import codecloss

    return codecloss


def cpips(*args: Any, **kwargs: Any) -> Any:
    """CPIPS distance module (``codecloss.CPIPS``); arguments as for ``codecloss.CPIPS``.

    Example::

        cpips = torch.hub.load("/path/to/codecloss", "cpips", source="local", spatial=True)
    """
    return _codecloss().CPIPS(*args, **kwargs)


def codec_perceptual_loss(*args: Any, **kwargs: Any) -> Any:
    """Perceptual loss module (``codecloss.CodecPerceptualLoss``); arguments as for that class."""
    return _codecloss().CodecPerceptualLoss(*args, **kwargs)


def load_codec(*args: Any, **kwargs: Any) -> Any:
    """The whole CompressAI codec of a backbone (``codecloss.load_codec``), ready to compress."""
    return _codecloss().load_codec(*args, **kwargs)
