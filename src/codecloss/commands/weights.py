"""``codecloss weights``: list, fetch, verify, import, locate and pin registry files.

Examples::

    codecloss weights list --backbone bmshj2018-hyperprior-mse-q3
    codecloss weights fetch bmshj2018-factorized-mse-q1 bmshj2018-factorized-mse-q2
    codecloss weights verify
    codecloss weights import bmshj2018-factorized-mse-q1 /media/usb/bmshj2018-factorized-prior-1-446d5c7f.pth.tar
    codecloss weights path bmshj2018-factorized-mse-q1
    codecloss weights pin --lock project-pins.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from codecloss._progress import add_progress_argument

if TYPE_CHECKING:  # codecloss.weights imports torch: each action imports what it needs
    from codecloss.weights import WeightSpec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


HELP = "list, fetch, verify, import, locate and pin registry weight files"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``weights`` subcommand and its actions."""
    p = subparsers.add_parser(
        "weights",
        help=HELP,
        description=(
            "Manage the weight registry and its SHA-256-verified cache (see docs/weights.md). "
            "Exit codes: 0 ok, 1 a download or verification failed, 2 bad usage."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    a = actions.add_parser("list", help="registry entries: name, backbone, size, cached?, verified?")
    a.add_argument("--backbone", help="only entries for this backbone id")
    a.add_argument("--json", action="store_true", help="print a JSON list")
    a.set_defaults(func=_list)

    a = actions.add_parser("fetch", help="download entries into the cache (verified)")
    a.add_argument("names", nargs="*", metavar="NAME", help="entry names")
    a.add_argument("--all", action="store_true", help="every entry of the registry")
    add_progress_argument(a)
    a.set_defaults(func=_fetch)

    a = actions.add_parser("verify", help="check cached files against the registry (default: every cached entry)")
    a.add_argument("names", nargs="*", metavar="NAME", help="entry names")
    a.set_defaults(func=_verify)

    a = actions.add_parser("import", help="verify a local copy of an entry's file and copy it into the cache")
    a.add_argument("name", metavar="NAME", help="entry name")
    a.add_argument("file", metavar="FILE", help="the file")
    a.set_defaults(func=_import)

    a = actions.add_parser("path", help="print the verified local path of an entry's file")
    a.add_argument("name", metavar="NAME", help="entry name")
    a.set_defaults(func=_path)

    a = actions.add_parser("pin", help="record the full SHA-256 of cached prefix-only files (trust on first use)")
    a.add_argument("names", nargs="*", metavar="NAME", help="entry names (default: every cached entry)")
    a.add_argument("--lock", metavar="PATH", help="lock file to write (default: $CODECLOSS_PINS or <cache>/pins.json)")
    a.set_defaults(func=_pin)


def _fail(args: argparse.Namespace, message: str) -> None:
    print(f"codecloss weights {args.action}: error: {message}", file=sys.stderr)


def _specs(names: list[str]) -> list[WeightSpec]:
    """The named entries (unknown names raise ValueError: exit 2), or every entry."""
    from codecloss.weights import get_weight_spec, list_weights

    return [get_weight_spec(name) for name in (names or list_weights())]


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _state(spec: WeightSpec) -> dict[str, Any]:
    from codecloss.weights.cache import local_path
    from codecloss.weights.integrity import digest_kind, file_problems

    path = local_path(spec)
    cached = path.is_file()
    return {
        "name": spec.name,
        "backbone": spec.backbone,
        "file": spec.filename,
        "size": path.stat().st_size if cached else spec.size,
        "cached": cached,
        "verified": (not file_problems(path, spec)) if cached else None,
        "check": digest_kind(spec),
        "path": str(path),
        "url": spec.url,
        "license": spec.license,
    }


def _list(args: argparse.Namespace) -> int:
    from codecloss.weights import get_weight_spec, list_weights

    rows = [_state(get_weight_spec(name)) for name in list_weights(args.backbone)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = [("NAME", "BACKBONE", "SIZE", "CACHED", "VERIFIED")] + [
        (r["name"], r["backbone"] or "-", _human(r["size"]), "yes" if r["cached"] else "no",
         "-" if r["verified"] is None else f"ok ({r['check']})" if r["verified"] else "FAILED")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def _fetch(args: argparse.Namespace) -> int:
    from codecloss.weights import WeightsError
    from codecloss.weights.download import fetch

    if args.all == bool(args.names):
        _fail(args, "give entry names or --all (not both)")
        return EXIT_USAGE
    failed = 0
    for spec in _specs(args.names):
        try:
            print(f"{spec.name}: {fetch(spec, progress=args.progress)}")
        except WeightsError as err:
            _fail(args, str(err))
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from codecloss.weights import WeightsError
    from codecloss.weights.cache import cache_dir, local_path
    from codecloss.weights.integrity import digest_kind, verify_file

    specs = [s for s in _specs(args.names) if args.names or local_path(s).is_file()]
    if not specs:
        print(f"nothing cached in {cache_dir()}")
    failed = 0
    for spec in specs:
        path = local_path(spec)
        if not path.is_file():
            _fail(args, f"{spec.name}: not cached; run `codecloss weights fetch {spec.name}`")
            failed += 1
            continue
        try:
            verify_file(path, spec)
            print(f"{spec.name}: ok ({digest_kind(spec)}) {path}")
        except WeightsError as err:
            _fail(args, f"{err}; run `codecloss weights fetch {spec.name}` to replace it")
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from codecloss.weights import WeightsError, import_weights

    try:
        print(f"{args.name}: {import_weights(args.name, args.file)}")
    except WeightsError as err:
        _fail(args, f"{err}; nothing was written to the cache")
        return EXIT_FAILED
    return EXIT_OK


def _path(args: argparse.Namespace) -> int:
    from codecloss.weights import WeightsError, get_weight_spec
    from codecloss.weights.cache import local_path
    from codecloss.weights.integrity import verify_file

    spec = get_weight_spec(args.name)
    path = local_path(spec)
    if not path.is_file():
        _fail(args, f"{spec.name}: not cached ({path}); run `codecloss weights fetch {spec.name}`")
        return EXIT_FAILED
    try:
        verify_file(path, spec)
    except WeightsError as err:
        _fail(args, str(err))
        return EXIT_FAILED
    print(path)
    return EXIT_OK


def _pin(args: argparse.Namespace) -> int:
    from codecloss.weights import WeightsError
    from codecloss.weights.cache import local_path
    from codecloss.weights.integrity import verify_file, write_pins

    digests, failed = {}, 0
    for spec in _specs(args.names):
        path = local_path(spec)
        if spec.sha256 is not None or not path.is_file():
            if args.names:
                print(f"{spec.name}: skipped ({'has a full sha256' if spec.sha256 else 'not cached'})")
            continue
        try:
            digests[spec.name] = verify_file(path, spec)
        except WeightsError as err:
            _fail(args, str(err))
            failed += 1
    if digests:
        lock = write_pins(digests, args.lock)
        for name, digest in digests.items():
            print(f"{name}: pinned sha256 {digest}")
        print(f"wrote {lock}")
    elif not failed:
        print("nothing to pin (no cached prefix-only files)")
    return EXIT_FAILED if failed else EXIT_OK
