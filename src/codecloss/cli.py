"""The ``codecloss`` command line: one argparse parser, one module per subcommand.

Each module in :data:`COMMANDS` lives in :mod:`codecloss.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int`` (the exit code). Exit codes: 0 ok, 1 the job failed,
2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from codecloss import WeightsError, __version__

#: Subcommand modules under ``codecloss.commands``, in ``--help`` order.
COMMANDS: tuple[str, ...] = ("train_codec", "metric", "eval", "train_cpips", "weights", "bench", "stylize", "sr_study")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="codecloss",
        description="Perceptual losses and metrics on learned-codec encoders.",
    )
    parser.add_argument("--version", action="version", version=f"codecloss {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"codecloss.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"codecloss {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except WeightsError as err:
        print(f"codecloss {args.command}: failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
