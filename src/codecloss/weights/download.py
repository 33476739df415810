"""Getting registry files into the cache: locked, verified, atomic; retries, mirrors, offline mode.

Follows torch.hub's ``download_url_to_file`` (stream with ``urllib`` into a uniquely named
``*.partial`` file beside the destination, hash while writing, tqdm progress, move into place)
and adds what it lacks: timeouts, bounded retries with exponential backoff, size checks that
catch cut transfers, full-digest checks, an inter-process ``filelock.FileLock`` per file,
``CODECLOSS_MIRROR`` and ``CODECLOSS_OFFLINE``.

Environment (read at each call): ``CODECLOSS_OFFLINE`` (``1`` = no network; ``file://`` URLs
still work), ``CODECLOSS_MIRROR`` (base URL replacing everything up to the last ``/`` of the
upstream URL), ``CODECLOSS_TIMEOUT`` (seconds per connect and per read, default 30),
``CODECLOSS_RETRIES`` (retries after the first attempt, default 3), ``CODECLOSS_BACKOFF``
(first retry delay in seconds, doubled each retry, default 1).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

from filelock import FileLock, Timeout

from codecloss._progress import progress as progress_bar
from codecloss.weights.cache import local_path
from codecloss.weights.errors import DownloadError, IntegrityError, OfflineError
from codecloss.weights.integrity import check_digest, file_problems, remember, verify_file
from codecloss.weights.registry import WeightSpec

__all__ = ["candidate_urls", "fetch", "import_file", "offline"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_RETRY_STATUS = (408, 429)  # plus every 5xx
_MAX_BACKOFF_S = 60.0


class _TransferCut(OSError):
    """Fewer bytes arrived than the server announced (connection dropped mid-transfer)."""


def _env_number(name: str, default: float, kind: type) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative {kind.__name__}, got {text!r}")
    return value


def offline() -> bool:
    """True when ``CODECLOSS_OFFLINE`` is set to ``1``/``true``/``yes``/``on``."""
    return os.environ.get("CODECLOSS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def candidate_urls(spec: WeightSpec) -> list[str]:
    """URLs to try for ``spec``, in order: the ``CODECLOSS_MIRROR`` URL alone, else ``url`` then ``mirrors``.

    Example:
        >>> os.environ["CODECLOSS_MIRROR"] = "file:///srv/weights"  # doctest: +SKIP
        >>> candidate_urls(spec)  # doctest: +SKIP
        ['file:///srv/weights/bmshj2018-factorized-prior-1-446d5c7f.pth.tar']
    """
    mirror = os.environ.get("CODECLOSS_MIRROR")
    if not mirror:
        return [spec.url, *spec.mirrors]
    if urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file"):
        raise ValueError(f"CODECLOSS_MIRROR: expected an http(s):// or file:// base URL, got {mirror!r}")
    return [f"{mirror.rstrip('/')}/{spec.url.rsplit('/', 1)[1]}"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the inter-process lock of one cache file."""
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("waiting for another process to finish writing %s", path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _stream_to(source: BinaryIO, spec: WeightSpec, dest: Path, announced: int | None, origin: str,
               progress: bool | None) -> None:
    """Copy ``source`` into ``dest`` via a temporary file, verify size and digest, then rename atomically."""
    tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.partial")
    digest, received = hashlib.sha256(), 0
    try:
        with open(tmp, "xb") as out, progress_bar(
            None, progress, total=announced or spec.size, desc=spec.filename, unit="B", unit_scale=True,
            unit_divisor=1024,
        ) as bar:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if announced is not None and received < announced:
            raise _TransferCut(f"transfer ended after {received} of {announced} bytes")
        wrong = check_digest(spec, digest.hexdigest(), received)
        if wrong:
            raise IntegrityError(f"weights {spec.name!r}: {origin} does not match the registry: {'; '.join(wrong)}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    remember(dest, digest.hexdigest())


def _permanent(reason: object) -> bool:
    """Whether a URLError's reason cannot go away by retrying: a missing file:// file, or a host name that
    does not exist (``EAI_NONAME``; a temporary resolver failure, ``EAI_AGAIN``, is retried)."""
    unknown_host = isinstance(reason, socket.gaierror) and reason.errno == socket.EAI_NONAME
    return isinstance(reason, FileNotFoundError) or unknown_host


def _download(spec: WeightSpec, dest: Path, urls: list[str], progress: bool | None) -> None:
    timeout = _env_number("CODECLOSS_TIMEOUT", 30.0, float)
    retries = int(_env_number("CODECLOSS_RETRIES", 3, int))
    backoff = _env_number("CODECLOSS_BACKOFF", 1.0, float)
    errors = []
    for url in urls:
        for attempt in range(retries + 1):
            logger.info("downloading %s from %s", spec.name, url)
            request = urllib.request.Request(url, headers={"User-Agent": "codecloss"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    _stream_to(response, spec, dest, int(length) if length else None, url, progress)
                return
            except urllib.error.HTTPError as err:
                err.close()
                error, retry = f"{url}: HTTP {err.code} {err.reason}", err.code >= 500 or err.code in _RETRY_STATUS
            except IntegrityError as err:  # the server sends another file: retrying will not help
                error, retry = str(err), False
            except urllib.error.URLError as err:  # connection refused, DNS, missing file:// file
                error, retry = f"{url}: {err.reason}", not _permanent(err.reason)
            except (OSError, http.client.HTTPException) as err:  # timeouts, resets, cut transfers
                error, retry = f"{url}: {err or type(err).__name__}", True
            if not retry or attempt == retries:
                break
            delay = min(backoff * 2**attempt, _MAX_BACKOFF_S)
            logger.warning("%s; retry %d/%d in %.2g s", error, attempt + 1, retries, delay)
            time.sleep(delay)
        errors.append(error + ("" if retry else " (not retried)"))
    raise DownloadError(
        f"weights {spec.name!r}: could not download {spec.filename!r}: {' | '.join(errors)}. Without this server: "
        f"CODECLOSS_MIRROR=<http(s):// or file:// folder holding {spec.filename}> downloads from a copy, "
        f"`codecloss weights import {spec.name} FILE` imports a file fetched elsewhere, and CODECLOSS_OFFLINE=1 "
        "uses only the cache (no network attempts)"
    )


def _problems(path: Path, spec: WeightSpec) -> list[str] | None:
    """Verification problems of a cached file (``[]``: it is good), ``None`` when there is none."""
    try:
        return file_problems(path, spec)
    except FileNotFoundError:  # absent, or just moved aside by another process
        return None


def _offline_error(spec: WeightSpec, path: Path, reason: str) -> OfflineError:
    return OfflineError(
        f"weights {spec.name!r}: file {spec.filename!r} {reason} ({str(path)!r}) and CODECLOSS_OFFLINE=1 forbids "
        f"downloading it from {spec.url}. Either run `codecloss weights fetch {spec.name}` on a connected machine "
        f"and copy its cache folder {str(path.parent.parent)!r} here (or point CODECLOSS_MIRROR at a file:// copy), "
        f"or run `codecloss weights import {spec.name} FILE` with a copy of the file."
    )


def fetch(spec: WeightSpec, *, progress: bool | None = None) -> Path:
    """Return the verified local file of ``spec``, downloading it into the cache if needed.

    A cached file that fails verification is moved aside to ``<file>.corrupt`` and fetched again
    (offline: reported). N processes fetching one file download it once (inter-process lock).

    Args:
        spec: registry entry.
        progress: tqdm bar on stderr: ``True`` always, ``False`` never,
            ``None`` (default) only when stderr is a terminal.

    Returns:
        Path of the verified file (in the cache, or in the package for shipped assets).

    Raises:
        IntegrityError: a shipped asset is corrupt.
        DownloadError: every URL failed.
        OfflineError: offline and not cached.

    Example:
        >>> fetch(get_weight_spec("bmshj2018-factorized-mse-q1"))  # doctest: +SKIP
        PosixPath('/home/me/.cache/torch/codecloss/weights/bmshj2018-factorized-prior-1-446d5c7f.pth.tar')
    """
    path = local_path(spec)
    if spec.asset is not None:
        if not path.is_file():
            raise IntegrityError(f"weights {spec.name!r}: shipped file {str(path)!r} is missing; reinstall codecloss")
        verify_file(path, spec)
        return path
    if _problems(path, spec) == []:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        reason = "is not in the cache"
        wrong = _problems(path, spec)
        if wrong == []:
            return path  # another process fetched it while we waited
        if wrong:
            corrupt = path.with_name(path.name + ".corrupt")
            os.replace(path, corrupt)
            logger.warning("weights %r: cached file failed verification (%s); moved to %s",
                           spec.name, "; ".join(wrong), corrupt)
            reason = f"failed verification and was moved to {str(corrupt)!r}"
        for stale in path.parent.glob(f"{glob.escape(path.name)}.*.partial"):  # left by killed processes
            stale.unlink(missing_ok=True)
        urls = candidate_urls(spec)
        if offline():
            urls = [u for u in urls if u.startswith("file:")]
            if not urls:
                raise _offline_error(spec, path, reason)
        _download(spec, path, urls, progress)
    return path


def import_file(spec: WeightSpec, file: str | os.PathLike) -> Path:
    """Copy a local copy of an entry's file into the cache, verifying size and digest on the way.

    Args:
        spec: registry entry (not a shipped asset).
        file: the file, e.g. fetched on a connected machine.

    Returns:
        Path of the file in the cache.

    Raises:
        IntegrityError: the file does not match the entry (nothing is written to the cache).

    Example:
        >>> import_file(get_weight_spec("bmshj2018-factorized-mse-q1"), "/media/usb/f.pth.tar")  # doctest: +SKIP
    """
    if spec.asset is not None:
        raise ValueError(f"name: entry {spec.name!r} is shipped inside codecloss; there is nothing to import")
    source = Path(file)
    if not source.is_file():
        raise FileNotFoundError(f"file: no such file {str(source)!r}")
    dest = local_path(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest), open(source, "rb") as f:
        _stream_to(f, spec, dest, os.fstat(f.fileno()).st_size, repr(str(source)), progress=False)
    logger.info("imported %s into %s", source, dest)
    return dest
