"""Verification of weight files (size, full / prefix / pinned SHA-256) and the pins lock file.

A file's digest is memoised per (path, size, mtime_ns) in this process, so loading the
same cached file again costs one ``stat``; a new process always hashes it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Mapping

from filelock import FileLock

from codecloss.weights.cache import pins_path
from codecloss.weights.errors import IntegrityError
from codecloss.weights.registry import WeightSpec

__all__ = ["check_digest", "digest_kind", "file_problems", "read_pins", "remember", "sha256_file", "verify_file", "write_pins"]

_CHUNK = 1 << 20
_PINS_FORMAT = "codecloss-pins/1"
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _key(path: Path, stat: os.stat_result) -> tuple[str, int, int]:
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def sha256_file(path: Path) -> tuple[str, int]:
    """Full SHA-256 hex digest and size of a file, memoised per (path, size, mtime_ns)."""
    with open(path, "rb") as f:
        key = _key(path, os.fstat(f.fileno()))
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
            _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key], key[1]


def remember(path: Path, digest: str) -> None:
    """Record the digest of a file just written and verified, so its first load does not hash it again."""
    _DIGESTS[_key(path, path.stat())] = digest


def read_pins(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Pinned full digests, entry name -> SHA-256 (empty when the lock file does not exist).

    Args:
        path: lock file; default :func:`~codecloss.weights.cache.pins_path`.
    """
    path = pins_path() if path is None else Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"pins file {str(path)!r}: not readable JSON: {err}") from None
    pins = data.get("sha256") if isinstance(data, dict) and data.get("format") == _PINS_FORMAT else None
    if not isinstance(pins, dict) or not all(
            isinstance(v, str) and len(v) == 64 and set(v) <= set("0123456789abcdef") for v in pins.values()):
        raise ValueError(
            f"pins file {str(path)!r}: expected {{\"format\": \"{_PINS_FORMAT}\", \"sha256\": {{name: 64-hex digest}}}}"
        )
    return pins


def write_pins(digests: Mapping[str, str], path: str | os.PathLike | None = None) -> Path:
    """Add pinned digests to the lock file (atomically, under an inter-process lock).

    Args:
        digests: entry name -> full SHA-256 hex digest.
        path: lock file; default :func:`~codecloss.weights.cache.pins_path`.

    Returns:
        The lock file written.
    """
    path = pins_path() if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        pins = {**read_pins(path), **digests}
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
        tmp.write_text(json.dumps({"format": _PINS_FORMAT, "sha256": dict(sorted(pins.items()))}, indent=2) + "\n")
        os.replace(tmp, path)
    return path


def digest_kind(spec: WeightSpec) -> str:
    """How ``spec`` is verified: ``"sha256"`` (full digest), ``"pinned"`` (trust on first use) or ``"prefix"``."""
    if spec.sha256 is not None:
        return "sha256"
    return "pinned" if spec.name in read_pins() else "prefix"


def check_digest(spec: WeightSpec, digest: str, size: int) -> list[str]:
    """What is wrong with a file of this SHA-256 and size for ``spec``; empty when it matches.

    Every known expectation is checked: the size, the full digest, the prefix and a pinned digest.
    """
    wrong = []
    if spec.size is not None and size != spec.size:
        wrong.append(f"size {size} bytes, expected {spec.size}")
    if spec.sha256 is not None and digest != spec.sha256:
        wrong.append(f"sha256 {digest}, expected {spec.sha256}")
    if spec.sha256_prefix is not None and not digest.startswith(spec.sha256_prefix):
        wrong.append(f"sha256 {digest}, expected one starting with {spec.sha256_prefix}")
    pinned = read_pins().get(spec.name)
    if pinned is not None and digest != pinned:
        wrong.append(f"sha256 {digest}, expected {pinned} pinned in {pins_path()}")
    return wrong


def file_problems(path: Path, spec: WeightSpec) -> list[str]:
    """:func:`check_digest` of an existing file (memoised hashing)."""
    return check_digest(spec, *sha256_file(path))


def verify_file(path: Path, spec: WeightSpec) -> str:
    """Check a file against its entry.

    Args:
        path: the file.
        spec: its registry entry.

    Returns:
        The file's full SHA-256 hex digest.

    Raises:
        IntegrityError: size or digest mismatch.

    Example:
        >>> verify_file(local_path(spec), spec)  # doctest: +SKIP
        '446d5c7f...'
    """
    digest, size = sha256_file(path)
    wrong = check_digest(spec, digest, size)
    if wrong:
        raise IntegrityError(f"weights {spec.name!r}: {str(path)!r} does not match the registry: {'; '.join(wrong)}")
    return digest
