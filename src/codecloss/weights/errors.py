"""Errors of the weight registry's jobs (download, verification, offline); bad arguments raise ValueError."""

from __future__ import annotations

__all__ = ["DownloadError", "IntegrityError", "OfflineError", "WeightsError"]


class WeightsError(RuntimeError):
    """A weight file could not be provided (the job failed; the CLI exits with 1)."""


class IntegrityError(WeightsError):
    """A file's size or SHA-256 does not match its registry entry."""


class DownloadError(WeightsError):
    """Every URL of an entry failed (HTTP error, network error, timeout or a file that does not verify)."""


class OfflineError(WeightsError):
    """``CODECLOSS_OFFLINE=1`` and the file is not in the cache."""
