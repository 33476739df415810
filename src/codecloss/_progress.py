"""Progress bars on stderr, shown only on a terminal unless asked for, and the matching CLI option.

Every tqdm bar in codecloss goes through :func:`progress`, so that pipes and CI logs never
receive carriage-return noise, and every command that shows bars takes ``--progress/--no-progress``
(:func:`add_progress_argument`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Iterable

from tqdm import tqdm

__all__ = ["add_progress_argument", "progress", "progress_enabled"]


def progress_enabled(enabled: bool | None) -> bool:
    """Whether to show a bar: ``enabled`` if given, else whether stderr is a terminal."""
    if enabled is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty is not None and isatty())
    return bool(enabled)


def progress(iterable: Iterable[Any] | None = None, enabled: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled unless :func:`progress_enabled` says otherwise.

    Args:
        iterable: what to iterate over (``None`` for a manual bar updated with ``bar.update(n)``).
        enabled: ``True`` always shows the bar, ``False`` never, ``None`` only when stderr is a terminal.
        **kwargs: further ``tqdm`` arguments (``total``, ``desc``, ``leave``, ...).

    Returns:
        The tqdm object (iterable and usable as a context manager).

    Example:
        >>> for _ in progress(range(3), enabled=False):
        ...     pass
    """
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, disable=not progress_enabled(enabled), **kwargs)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--progress/--no-progress`` (``dest="progress"``, default ``None``: only on a terminal)."""
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bars on stderr (default: only when stderr is a terminal)",
    )
