"""Weight registry: one frozen :class:`WeightSpec` per downloadable or shipped file.

Built-in entries are every CompressAI zoo checkpoint (URLs taken from
``compressai.zoo.image.model_urls``; the file names carry an 8-hex SHA-256 prefix)
plus the files shipped inside the wheel (:data:`SHIPPED`, verified by full SHA-256).
Users add entries with :func:`register_weights` or a JSON file named by
``CODECLOSS_REGISTRY``, read at lookup time.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressai.zoo.image import model_urls as _ZOO_URLS
from torch.hub import HASH_REGEX

from codecloss.checkpoints import CHECKPOINT_SUFFIXES
from codecloss.specs import get_backbone_spec, list_backbones

__all__ = ["SHIPPED", "WeightSpec", "get_weight_spec", "list_weights", "register_weights"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA256_PREFIX = re.compile(r"[0-9a-f]{8,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_URL_SCHEMES = ("http", "https", "file")

_ZOO_LICENSE = "BSD-3-Clause-Clear (CompressAI)"
_ZOO_SOURCE = "CompressAI model zoo (Begaint et al., CompressAI, arXiv:2011.03029, 2020)"
_BMSHJ2018 = ("J. Balle, D. Minnen, S. Singh, S. J. Hwang, N. Johnston, "
              "Variational image compression with a scale hyperprior, ICLR 2018")
_MBT2018 = ("D. Minnen, J. Balle, G. Toderici, "
            "Joint Autoregressive and Hierarchical Priors for Learned Image Compression, NeurIPS 2018")
_CHENG2020 = ("Z. Cheng, H. Sun, M. Takeuchi, J. Katto, Learned Image Compression with "
              "Discretized Gaussian Mixture Likelihoods and Attention Modules, CVPR 2020")
_ZOO_CITATIONS = {
    "bmshj2018-factorized": _BMSHJ2018, "bmshj2018-hyperprior": _BMSHJ2018,
    "mbt2018-mean": _MBT2018, "mbt2018": _MBT2018,
    "cheng2020-anchor": _CHENG2020, "cheng2020-attn": _CHENG2020,
}


@dataclass(frozen=True, kw_only=True)
class WeightSpec:
    """One registry entry: where a file comes from and how it is verified.

    Attributes:
        name: registry name, e.g. ``"bmshj2018-hyperprior-mse-q3"`` (letters, digits, ``._-``).
        backbone: backbone id whose ``g_a`` the file initialises, ``None`` for other files (heads).
        architecture: CompressAI architecture of a codec file.
        metric: distortion the codec was trained for (``"mse"``, ``"ms-ssim"``).
        quality: zoo quality level, ``None`` outside the zoo.
        config: model constructor arguments, ``(N, M)`` or ``(N,)``.
        url: upstream ``http(s)://`` or ``file://`` URL; ``None`` for shipped files.
        mirrors: further URLs tried in order when ``url`` fails.
        sha256: full SHA-256 hex digest (always set for files this project ships or publishes).
        sha256_prefix: leading hex digits of the SHA-256, where only those are published.
        size: file size in bytes, when known.
        license: licence of the file.
        source: who publishes the file.
        citation: paper to cite.
        asset: file name under ``codecloss/assets/`` for files shipped in the wheel (never downloaded).
        default: this entry is what ``weights="default"`` means for ``backbone``.

    Example:
        >>> spec = WeightSpec(name="my-codec", url="https://example.org/w/my-codec.pth", sha256="0" * 64)
        >>> spec.filename
        'my-codec.pth'
    """

    name: str
    backbone: str | None = None
    architecture: str | None = None
    metric: str | None = None
    quality: int | None = None
    config: tuple[int, ...] = ()
    url: str | None = None
    mirrors: tuple[str, ...] = ()
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    license: str = "unknown"
    source: str = ""
    citation: str = ""
    asset: str | None = None
    default: bool = False

    def __post_init__(self) -> None:
        for field in ("config", "mirrors"):  # accept lists (JSON) as tuples
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        for field in ("sha256", "sha256_prefix"):
            if isinstance(getattr(self, field), str):
                object.__setattr__(self, field, getattr(self, field).lower())
        self._check(
            "name", isinstance(self.name, str) and _NAME.fullmatch(self.name) and not self.name.endswith(CHECKPOINT_SUFFIXES)
            and self.name != "default",
            f"a name of letters, digits, '.', '_', '-', not 'default' and not ending in {CHECKPOINT_SUFFIXES}",
        )
        for field in ("backbone", "architecture", "metric"):
            self._check(field, getattr(self, field) is None or _nonempty_str(getattr(self, field)), "a string or null")
        self._check("quality", self.quality is None or _int(self.quality), "an integer or null")
        self._check("config", isinstance(self.config, tuple) and all(_int(c) and c > 0 for c in self.config),
                    "a list of positive integers")
        self._check("url", self.url is None or _url(self.url), f"a URL with scheme {_URL_SCHEMES} ending in a file name")
        self._check("mirrors", isinstance(self.mirrors, tuple) and all(_url(u) for u in self.mirrors),
                    f"a list of URLs with scheme {_URL_SCHEMES}")
        self._check("sha256", self.sha256 is None or (isinstance(self.sha256, str) and _SHA256.fullmatch(self.sha256)),
                    "64 hex characters (the full SHA-256 digest)")
        self._check("sha256_prefix", self.sha256_prefix is None or (
            isinstance(self.sha256_prefix, str) and _SHA256_PREFIX.fullmatch(self.sha256_prefix)),
            "8 to 63 hex characters (a SHA-256 prefix)")
        self._check("sha256", self.sha256 is not None or self.sha256_prefix is not None,
                    "a digest: set sha256 (or sha256_prefix where only a prefix is published)")
        self._check("sha256_prefix", self.sha256 is None or self.sha256_prefix is None
                    or self.sha256.startswith(self.sha256_prefix), "a prefix of sha256")
        self._check("size", self.size is None or (_int(self.size) and self.size > 0), "a positive integer or null")
        for field in ("license", "source", "citation"):
            self._check(field, isinstance(getattr(self, field), str), "a string")
        self._check("asset", self.asset is None or (_nonempty_str(self.asset) and "/" not in self.asset
                    and "\\" not in self.asset), "a file name (no directories) or null")
        self._check("asset", (self.asset is None) != (self.url is None), "exactly one of url or asset")
        self._check("sha256", self.asset is None or self.sha256 is not None,
                    "the full digest: shipped files (asset) are verified by full SHA-256")
        self._check("default", isinstance(self.default, bool), "true or false")
        self._check("default", not self.default or self.backbone is not None, "false when backbone is null")

    def _check(self, field: str, ok: Any, expected: str) -> None:
        if not ok:
            raise ValueError(
                f"WeightSpec {self.name!r}: field {field!r}: expected {expected}, got {getattr(self, field)!r}"
            )

    @property
    def filename(self) -> str:
        """Name of the file in the cache (the URL's last path component) or in the assets folder."""
        if self.asset is not None:
            return self.asset
        return urllib.parse.unquote(urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1])

    @classmethod
    def for_backbone(cls, backbone: str, **fields: Any) -> "WeightSpec":
        """An entry for a codecloss backbone, taking architecture, metric, quality and config from it.

        Args:
            backbone: backbone id (see :func:`codecloss.list_backbones`).
            **fields: the other :class:`WeightSpec` fields; ``name`` defaults to ``backbone``.
                Codec fields given here must agree with the backbone.

        Returns:
            The entry.

        Example:
            >>> spec = WeightSpec.for_backbone(
            ...     "bmshj2018-factorized-mse-q1", name="my-finetune",
            ...     url="https://example.org/w/my-finetune.pth", sha256="0" * 64)
            >>> spec.config
            (128, 192)
        """
        bspec = get_backbone_spec(backbone)
        derived = {"architecture": bspec.architecture, "metric": bspec.metric, "quality": bspec.quality,
                   "config": bspec.config}
        for field, value in derived.items():
            given = fields.get(field, value)
            if (tuple(given) if isinstance(given, list) else given) != value:
                raise ValueError(
                    f"WeightSpec {fields.get('name', backbone)!r}: field {field!r}: backbone {backbone!r} "
                    f"has {value!r}, got {given!r}"
                )
        return cls(**{"name": backbone, **fields, **derived, "backbone": backbone})


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in _URL_SCHEMES and not parts.path.endswith("/") and bool(parts.path.rsplit("/", 1)[-1])


def _zoo_entries() -> list[WeightSpec]:
    entries = []
    for backbone in list_backbones():
        bspec = get_backbone_spec(backbone)
        if bspec.quality is None:
            continue
        url = _ZOO_URLS[bspec.architecture][bspec.metric][bspec.quality]
        prefix = HASH_REGEX.search(url.rsplit("/", 1)[-1]).group(1)  # torch.hub's own file-name convention
        entries.append(WeightSpec.for_backbone(
            backbone, url=url, sha256_prefix=prefix, license=_ZOO_LICENSE, source=_ZOO_SOURCE,
            citation=_ZOO_CITATIONS[bspec.architecture],
        ))
    return entries


_OWN_LICENSE = "research and non-commercial use (trained on BSDS500 and Sun-Hays80 photos)"
#: Terms of the ImageNet teacher behind the semantic codec and the distilled heads.
_VGG16_TERMS = "torchvision's ImageNet VGG16, whose ImageNet training data allows research and non-commercial use"


def _own_codec(backbone: str, sha256: str, size: int, license: str = _OWN_LICENSE) -> WeightSpec:
    """A full codec trained by ``codecloss train-codec`` on BSDS500 + Sun-Hays80, shipped as ``assets/<backbone>.pth``."""
    return WeightSpec.for_backbone(
        backbone, asset=f"{backbone}.pth", sha256=sha256, size=size, license=license,
        source="codecloss (docs/model_card.md)", citation=_BMSHJ2018 + " (architecture)", default=True,
    )


#: Files shipped inside the wheel under ``codecloss/assets/``; add one ``WeightSpec(..., asset=...)`` per file.
#: The codecs are full (g_a, g_s, entropy bottleneck with updated CDF tables; docs/model_card.md); heads are CPIPS head files.
SHIPPED: tuple[WeightSpec, ...] = (
    # The embedded default since 2026-12-07: codecloss-wide-mse trained further with a semantic term distilled
    # from ImageNet VGG16 (issue 22, beta = 3).
    _own_codec("codecloss-wide-sem", "9f8e117634daf9c20977ea50580ab628076a963f3437cdbca90a37c9e3939f09", 6084295,
               license=f"{_OWN_LICENSE}; distilled from {_VGG16_TERMS}"),
    # The default from 2026-12-02 to 2026-12-06: codecloss-small-mse widened to the zoo's N=128, M=192
    # (`train-codec --init-widen`) and trained further; parameters stored in float16, loaded into float32.
    _own_codec("codecloss-wide-mse", "35062e7cb058bc13b81242a690d5559b0573627f1f343ea715b06760b13402eb", 6080989),
    # The first embedded default.
    _own_codec("codecloss-small-mse", "7b1eb851a76bc37ac57f46e19961b72b476b30118cefca17f4d050cc98373ba7", 3083853),
    # CPIPS heads for the default, distilled from LPIPS-VGG on 20,000 natural-photo triplets (issue 19; opt-in:
    # they do not agree better than uniform heads with LPIPS-Alex/DISTS on held-out distortions, docs/metric.md).
    WeightSpec(
        name="cpips-wide-sem-lpips-vgg", asset="cpips-wide-sem-lpips-vgg.pt", size=5155,
        sha256="8514496f03d12a51975f35d703b781d37f812316b1cab3919ce215450e104d7b",
        license=f"{_OWN_LICENSE}; labels from LPIPS-VGG (BSD-2-Clause) on {_VGG16_TERMS}",
        source="codecloss train-cpips --distill lpips-vgg (docs/metric.md)",
        citation="R. Zhang et al., The Unreasonable Effectiveness of Deep Features as a Perceptual Metric, CVPR 2018",
    ),
)

_ENTRIES: dict[str, WeightSpec] = {}


def _add(entries: dict[str, WeightSpec], spec: WeightSpec, origin: str) -> None:
    """Add ``spec`` to ``entries`` unless it conflicts with what is there (same name, file or default)."""
    if not isinstance(spec, WeightSpec):
        raise TypeError(f"spec: expected a WeightSpec, got {type(spec).__name__}")
    old = entries.get(spec.name)
    if old is not None and old != spec:
        raise ValueError(f"{origin}: entry {spec.name!r} is already registered with different fields")
    for other in entries.values():
        if other.name == spec.name:
            continue
        if other.asset is None and spec.asset is None and other.filename == spec.filename and (
                (other.sha256, other.sha256_prefix) != (spec.sha256, spec.sha256_prefix)):
            raise ValueError(
                f"{origin}: entry {spec.name!r}: file name {spec.filename!r} is already used by entry "
                f"{other.name!r} with a different digest (files share one cache folder)"
            )
        if spec.default and other.default and other.backbone == spec.backbone:
            raise ValueError(
                f"{origin}: entry {spec.name!r}: entry {other.name!r} is already the default of backbone "
                f"{spec.backbone!r}"
            )
    entries[spec.name] = spec


for _spec in (*SHIPPED, *_zoo_entries()):
    _add(_ENTRIES, _spec, "codecloss built-in registry")


def register_weights(spec: WeightSpec, *, replace: bool = False) -> None:
    """Add an entry to the registry of this process.

    Args:
        spec: the entry; registering an identical entry again is a no-op.
        replace: replace an existing entry of the same name instead of raising.

    Example:
        >>> register_weights(WeightSpec.for_backbone(
        ...     "bmshj2018-factorized-mse-q1", name="my-finetune",
        ...     url="https://example.org/w/my-finetune.pth", sha256="0" * 64))  # doctest: +SKIP
    """
    if replace and isinstance(spec, WeightSpec):
        _ENTRIES.pop(spec.name, None)
    _add(_ENTRIES, spec, "register_weights")


_USER_FILE_CACHE: dict[tuple[str, int, int], list[WeightSpec]] = {}


def _read_user_file(path: Path) -> list[WeightSpec]:
    where = f"CODECLOSS_REGISTRY file {str(path)!r}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: not readable JSON: {err}") from None
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a JSON list of entries, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(WeightSpec)}
    specs = []
    for index, entry in enumerate(data):
        label = f"{where}: entry {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{label}: expected an object, got {type(entry).__name__}")
        label += f" ({entry.get('name')!r})"
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"{label}: unknown field(s) {unknown}; expected fields among {sorted(known)}")
        if "name" not in entry:
            raise ValueError(f"{label}: field 'name' is required")
        try:
            if entry.get("backbone") in list_backbones():
                specs.append(WeightSpec.for_backbone(**entry))
            else:
                specs.append(WeightSpec(**entry))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{label}: {err}") from None
    return specs


def _user_entries() -> tuple[str, list[WeightSpec]]:
    path = os.environ.get("CODECLOSS_REGISTRY")
    if not path:
        return "", []
    path = Path(path).expanduser()
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return str(path), _read_user_file(path)  # raises the clear error
    if key not in _USER_FILE_CACHE:
        _USER_FILE_CACHE[key] = _read_user_file(path)
    return str(path), _USER_FILE_CACHE[key]


def _entries() -> dict[str, WeightSpec]:
    """Built-in, registered and ``CODECLOSS_REGISTRY`` entries, read at call time."""
    path, user = _user_entries()
    if not user:
        return _ENTRIES
    entries = dict(_ENTRIES)
    for spec in user:
        _add(entries, spec, f"CODECLOSS_REGISTRY file {path!r}")
    return entries


def list_weights(backbone: str | None = None) -> list[str]:
    """Names of the registry entries.

    Args:
        backbone: only entries for this backbone id.

    Returns:
        Entry names in registration order (shipped files, CompressAI zoo, yours).

    Example:
        >>> "bmshj2018-hyperprior-mse-q3" in list_weights()
        True
    """
    return [s.name for s in _entries().values() if backbone is None or s.backbone == backbone]


def get_weight_spec(name: str, backbone: str | None = None) -> WeightSpec:
    """Look up an entry by name; ``"default"`` means the default entry of ``backbone``.

    Args:
        name: entry name or ``"default"``.
        backbone: backbone id; when given, the entry must be for this backbone.

    Returns:
        The :class:`WeightSpec`.

    Raises:
        ValueError: unknown name (close matches are listed) or an entry of another backbone.

    Example:
        >>> get_weight_spec("default", "bmshj2018-factorized-mse-q1").sha256_prefix
        '446d5c7f'
    """
    if not isinstance(name, str):
        raise TypeError(f"weights: expected a registry name (str), got {type(name).__name__}")
    entries = _entries()
    if name == "default":
        if backbone is None:
            raise ValueError("weights: 'default' needs a backbone id to resolve")
        flagged = [s for s in entries.values() if s.default and s.backbone == backbone]
        spec = flagged[0] if flagged else entries.get(backbone)
        if spec is None:
            raise ValueError(
                f"weights: no default weights registered for backbone {backbone!r}; entries for it: "
                f"{list_weights(backbone)}; pass one of them, a checkpoint path, or weights=None"
            )
    else:
        spec = entries.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(entries), n=5, cutoff=0.6)
            hint = f"; did you mean {close}?" if close else "; see `codecloss weights list`"
            raise ValueError(f"weights: unknown registry name {name!r}{hint}")
    if backbone is not None and spec.backbone != backbone:
        raise ValueError(
            f"weights: entry {spec.name!r} is for backbone {spec.backbone!r}, not {backbone!r}"
        )
    return spec
