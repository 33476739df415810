"""Weight registry with SHA-256-verified downloads, a lazily resolved cache and offline use.

See ``docs/weights.md``. The registry lists every CompressAI zoo checkpoint and the files
shipped with codecloss; :func:`register_weights` and ``CODECLOSS_REGISTRY`` add yours.

Example:
    >>> from codecloss.weights import get_weights_file, list_weights
    >>> len(list_weights("bmshj2018-hyperprior-mse-q3"))
    1
    >>> get_weights_file("bmshj2018-hyperprior-mse-q3")  # doctest: +SKIP
    PosixPath('/home/me/.cache/torch/codecloss/weights/bmshj2018-hyperprior-3-6d87be32.pth.tar')
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from codecloss.checkpoints import load_codec_state_dict
from codecloss.weights.cache import cache_dir
from codecloss.weights.download import fetch, import_file
from codecloss.weights.errors import DownloadError, IntegrityError, OfflineError, WeightsError
from codecloss.weights.registry import WeightSpec, get_weight_spec, list_weights, register_weights

__all__ = [
    "DownloadError",
    "IntegrityError",
    "OfflineError",
    "WeightSpec",
    "WeightsError",
    "cache_dir",
    "get_weight_spec",
    "get_weights_file",
    "import_weights",
    "list_weights",
    "register_weights",
    "registered_state_dict",
]


def get_weights_file(name: str, backbone: str | None = None, *, progress: bool | None = None) -> Path:
    """Resolve a registry entry to a verified local file, downloading it into the cache if needed.

    Works for any entry (codec checkpoints, CPIPS heads, your own files).

    Args:
        name: entry name, or ``"default"`` (needs ``backbone``).
        backbone: backbone id; when given, the entry must belong to it.
        progress: tqdm bar on stderr while downloading: ``True`` always, ``False`` never,
            ``None`` (default) only when stderr is a terminal.

    Returns:
        Path of the verified file.

    Raises:
        ValueError: unknown name or backbone mismatch.
        WeightsError: download failed, file corrupt, or offline without a cached copy.

    Example:
        >>> path = get_weights_file("default", "bmshj2018-factorized-mse-q1")  # doctest: +SKIP
    """
    return fetch(get_weight_spec(name, backbone), progress=progress)


def registered_state_dict(name: str, backbone_id: str) -> dict[str, Tensor]:
    """Load the verified state_dict of a registry entry for a backbone (``torch.load(weights_only=True)``).

    Args:
        name: entry name or ``"default"``.
        backbone_id: backbone the weights are for; the entry's ``backbone`` must equal it.

    Returns:
        The flat state_dict of the checkpoint.

    Example:
        >>> state = registered_state_dict("default", "bmshj2018-factorized-mse-q1")  # doctest: +SKIP
    """
    return load_codec_state_dict(get_weights_file(name, backbone_id))


def import_weights(name: str, file: str | os.PathLike) -> Path:
    """Verify a local copy of an entry's file and copy it atomically into the cache (air-gapped use).

    Args:
        name: entry name.
        file: the file, e.g. downloaded on a connected machine.

    Returns:
        Path of the file in the cache.

    Raises:
        IntegrityError: size or digest mismatch (the cache is left untouched).

    Example:
        >>> import_weights("bmshj2018-factorized-mse-q1", "bmshj2018-factorized-prior-1-446d5c7f.pth.tar")  # doctest: +SKIP
    """
    return import_file(get_weight_spec(name), file)
