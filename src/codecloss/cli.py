"""The ``codecloss`` command line: one argparse parser, one module per subcommand.

Each module in :data:`COMMANDS` lives in :mod:`codecloss.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int`` (the exit code), and ``HELP``, its one-line help. A run builds
only the parser of the command it names, and a module imports torch and the like
inside ``register`` and ``func`` only, so that ``codecloss --help`` stays cheap.
Exit codes: 0 ok, 1 the job failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from typing import Collection, Iterator, Sequence

from codecloss import __version__

#: Subcommand modules under ``codecloss.commands``, in ``--help`` order.
COMMANDS: tuple[str, ...] = ("train_codec", "metric", "eval", "train_cpips", "weights", "bench", "stylize", "train_style", "sr_study", "upscale")
#: Commands that do no torch work, hence take no ``--threads``.
UNTHREADED: frozenset[str] = frozenset({"weights"})

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: OpenMP wait policy of the CLI's process and of the processes it starts, unless ``OMP_WAIT_POLICY`` is set.
OPENMP_WAIT_POLICY = "PASSIVE"

logger = logging.getLogger(__name__)


def build_parser(full: Collection[str] | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser.

    Args:
        full: the subcommands (as typed, e.g. ``train-codec``) to build in full; the others are stubs
            that carry their ``HELP``. ``None`` builds every subcommand in full.
    """
    parser = argparse.ArgumentParser(
        prog="codecloss",
        description="Perceptual losses and metrics on learned-codec encoders.",
    )
    parser.add_argument("--version", action="version", version=f"codecloss {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module, typed = importlib.import_module(f"codecloss.commands.{name}"), name.replace("_", "-")
        if full is not None and typed not in full:
            subparsers.add_parser(typed, help=module.HELP)
            continue
        module.register(subparsers)
        if name not in UNTHREADED:
            add_threads_argument(subparsers.choices[typed])
    return parser


def prefer_passive_waits() -> None:
    """Set ``OMP_WAIT_POLICY`` to :data:`OPENMP_WAIT_POLICY` unless the environment sets it already.

    OpenMP reads it when torch loads, so this must run before ``import torch``. With GNU OpenMP's default policy
    a thread that reaches the end of a parallel region first spins there, on a core that the thread it waits
    for, descheduled by another process, then cannot get; the codec's many short regions made that its main
    cost on a busy machine. Passive waiters sleep instead (docs/benchmarks.md, "CPU contention").
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)


def _positive_int(text: str) -> int:
    """``--threads`` value: an integer >= 1."""
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` to ``parser``, or to each of its subcommands' parsers when it has some."""
    nested = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    for action in nested:
        for subparser in action.choices.values():
            add_threads_argument(subparser)
    if not nested:
        parser.add_argument("--threads", type=_positive_int, metavar="N",
                            help="torch threads, intra- and inter-op (default: torch's default)")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (undone after it) and, while torch allows it,
    ``set_num_interop_threads(threads)`` (for the rest of the process); ``None`` changes nothing."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # allowed once per process, before any inter-op parallel work
        logger.debug("inter-op threads stay at %d", torch.get_num_interop_threads())
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _named_command(argv: Sequence[str]) -> list[str]:
    """The subcommand named in ``argv``, if any: its first argument that is not an option."""
    return [arg for arg in argv if not arg.startswith("-")][:1]  # top-level options take no value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    prefer_passive_waits()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_named_command(argv))
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from codecloss import WeightsError

    try:
        with torch_threads(getattr(args, "threads", None)):
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
