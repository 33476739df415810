"""Measure the codecloss settings that stand in for four VGG perceptual losses (the numbers in docs/migrating.md).

For each reference loss, at a stated operating point (real images plus a typical degradation), this measures
the reference term's value and the L2 norm of its gradient with respect to the prediction, the same for each
codec tap that replaces a group of VGG layers, and chooses per-tap codec weights so that the gradient norms
match group by group (then one common factor makes the totals' gradient norms equal). The suggested
``CodecPerceptualLoss`` is then built through the public API and measured again, at the operating point where
the weights were chosen and at a second one, and both ratios (value and gradient norm) are reported.

References (formulas re-implemented from their sources, or the installed package itself):

* ``fast_neural_style``: pytorch/examples ``fast_neural_style/neural_style/{neural_style,utils,vgg}.py``;
* ``esrgan``, ``realesrgan``: BasicSR ``basicsr/losses/basic_loss.py`` (``PerceptualLoss``) with
  ``basicsr/archs/vgg_arch.py``, options ``options/train/ESRGAN/train_ESRGAN_x4.yml`` and Real-ESRGAN
  ``options/train_realesrgan_x4plus.yml``;
* ``piq``: ``piq.ContentLoss`` / ``piq.StyleLoss`` (installed), defaults;
* ``lpips``: ``lpips.LPIPS(net="vgg")`` (installed, optional), the lin layers shipped in its wheel.

Every VGG is :func:`codecloss.reference.trunk`: randomly initialised with ``--seed`` (torchvision's VGG init)
unless ``--vgg16-weights`` / ``--vgg19-weights`` name torchvision state dicts, full (``vgg16-397923af.pth``) or
``features.*`` only (``$CODECLOSS_TRUNKS/vgg16_features.pth``); loaded with ``weights_only=True``, strictly.
VGG feature magnitudes depend strongly on the weights, so weights measured with random VGGs must be re-measured
with real ones.

Run from the repository root (under 5 minutes with one thread on this project's shared 2-core CPU)::

    python benchmarks/migration.py --out benchmarks/results/migration.json
    python benchmarks/migration.py --vgg16-weights $CODECLOSS_TRUNKS/vgg16_features.pth --out mine.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

import codecloss
import codecloss.reference
from codecloss.reference import Trunk
from codecloss.evaluate.images import center_crop, list_images, read_image

logger = logging.getLogger("migration")

#: Terms a loss yields for a prediction: name -> scalar (already weighted as the loss weights them).
Terms = Callable[[Tensor], "dict[str, Tensor]"]

LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
DEFAULT_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
STYLE_IMAGE = "udnie"  # one of pytorch/examples' fast_neural_style images


@dataclass(frozen=True)
class Case:
    """One reference loss and its codec counterpart.

    Attributes:
        name: case id (``--cases``).
        reference: what the reference computes, in words.
        source: upstream file(s) the formula follows.
        kind: codec term: ``"l2"``, ``"l1"``, ``"normalized_l2"`` (content) or ``"gram"`` (style).
        groups: codec tap -> the reference layers it replaces (paired by receptive field).
        photos: ``"kodak"`` (SR-style crops at native resolution) or ``"content"`` (style-transfer photos).
        points: operating points; weights are chosen at the first, the second checks how far they carry.
        size: side of the square images: the reference's training crop (256 for fast_neural_style and
            Real-ESRGAN, 128 for ESRGAN), piq's docstring example (256), an SR training crop for LPIPS (128).
    """

    name: str
    reference: str
    source: str
    kind: str
    groups: Mapping[str, tuple[str, ...]]
    photos: str
    points: tuple[str, str]
    size: int


CASES = (
    Case(
        "fast_neural_style.content",
        "1e5 * MSE(VGG16 relu2_2) of ImageNet-normalised x/255 (x in [0, 255])",
        "pytorch/examples fast_neural_style/neural_style/neural_style.py, utils.py, vgg.py",
        "l2", {"gdn2": ("relu2_2",)}, "content", ("blend_style", "bicubic_x4"), 256,
    ),
    Case(
        "fast_neural_style.style",
        "1e10 * sum over relu1_2, relu2_2, relu3_3, relu4_3 of MSE(Gram / (C*H*W)), VGG16",
        "pytorch/examples fast_neural_style/neural_style/neural_style.py, utils.py, vgg.py",
        "gram", {"gdn1": ("relu1_2",), "gdn2": ("relu2_2",), "gdn3": ("relu3_3",), "y": ("relu4_3",)},
        "content", ("content_vs_style", "noise_vs_style"), 256,
    ),
    Case(
        "esrgan",
        "BasicSR PerceptualLoss({'conv5_4': 1}, vgg19, use_input_norm, range_norm False, L1), weight 1",
        "BasicSR basicsr/losses/basic_loss.py, basicsr/archs/vgg_arch.py, options/train/ESRGAN/train_ESRGAN_x4.yml",
        "l1", {"y": ("conv5_4",)}, "kodak", ("bicubic_x4", "noise_0.05"), 128,
    ),
    Case(
        "realesrgan",
        "BasicSR PerceptualLoss({conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1, conv5_4: 1}, vgg19, L1)",
        "Real-ESRGAN options/train_realesrgan_x4plus.yml with BasicSR basic_loss.py",
        "l1", {"gdn1": ("conv1_2",), "gdn2": ("conv2_2",), "gdn3": ("conv3_4",), "y": ("conv4_4", "conv5_4")},
        "kodak", ("bicubic_x4", "noise_0.05"), 256,
    ),
    Case(
        "piq.ContentLoss",
        "piq.ContentLoss() defaults: vgg16 relu3_3, MSE per element, spatial mean, summed over channels",
        "piq/perceptual.py (installed)",
        "l2", {"gdn3": ("relu3_3",)}, "kodak", ("bicubic_x4", "noise_0.05"), 256,
    ),
    Case(
        "piq.StyleLoss",
        "piq.StyleLoss() defaults: vgg16 relu3_3, unnormalised Gram (sum over H*W), MSE over C*C",
        "piq/perceptual.py (installed)",
        "gram", {"gdn3": ("relu3_3",)}, "content", ("content_vs_style", "noise_vs_style"), 256,
    ),
    Case(
        "lpips",
        "lpips.LPIPS(net='vgg', lin layers v0.1 from the wheel), normalize=True, mean over the batch",
        "lpips/lpips.py (installed)",
        "normalized_l2",
        {"gdn1": ("relu1_2",), "gdn2": ("relu2_2",), "gdn3": ("relu3_3",), "y": ("relu4_3", "relu5_3")},
        "kodak", ("bicubic_x4", "noise_0.05"), 128,
    ),
)
CASE_NAMES = tuple(case.name for case in CASES)


# --------------------------------------------------------------------------- measuring and matching


def measure_terms(
    terms_of: Terms, pred: Tensor, groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, dict[str, float]]:
    """Value and input-gradient norm of every term of a loss, of groups of terms, and of their sum, at ``pred``.

    Args:
        terms_of: maps a prediction to ``{name: scalar}`` (one forward pass for all terms).
        pred: the prediction (N, 3, H, W) in [0, 1]; not modified.
        groups: optional ``{group: [term names]}``: measure these sums of terms instead of each term.

    Returns:
        ``{name: {"value": v, "grad_norm": g}}`` for each term (or each group) and ``"total"`` (the sum of all
        terms), where ``g`` is the L2 norm of d(term)/d(pred) over the whole batch tensor.

    Example:
        >>> x, y = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
        >>> measure_terms(lambda p: {"mse": F.mse_loss(p, y)}, x)["mse"]
        {'value': 1.0, 'grad_norm': 0.28867512941360474}
    """
    x = pred.detach().clone().requires_grad_(True)
    terms = terms_of(x)
    if not terms:
        raise ValueError("terms_of: returned no terms")
    sums = {name: (name,) for name in terms} if groups is None else {}
    for group, members in (groups or {}).items():
        unknown = set(members) - set(terms)
        if unknown:
            raise ValueError(f"groups: {group!r} names unknown terms {sorted(unknown)}; the terms are {list(terms)}")
        sums[group] = tuple(members)
    sums["total"] = tuple(terms)
    by_members: dict[frozenset[str], dict[str, float]] = {}  # one backward per distinct set of terms
    pending = list(dict.fromkeys(frozenset(m) for m in sums.values()))
    for i, members in enumerate(pending):
        value = sum(terms[name] for name in members)
        (grad,) = torch.autograd.grad(value, x, retain_graph=i < len(pending) - 1)
        by_members[members] = {"value": float(value.detach()), "grad_norm": float(grad.norm())}
    return {name: dict(by_members[frozenset(members)]) for name, members in sums.items()}


Stats = Mapping[str, Mapping[str, float]]


def match_weights(reference: Stats, codec: Stats) -> dict[str, float]:
    """Per-tap weights that give each codec tap the gradient norm of the reference group it replaces.

    Args:
        reference: ``{tap: {"grad_norm": g_ref}}``, the reference layers grouped by the codec tap replacing them.
        codec: ``{tap: {"grad_norm": g_codec}}``, each unweighted codec tap term.

    Returns:
        ``{tap: g_ref / g_codec}`` in the order of ``reference``.
    """
    weights = {}
    for tap, ref in reference.items():
        if tap not in codec:
            raise ValueError(f"codec: no measurement for tap {tap!r} (got {sorted(codec)})")
        if not codec[tap]["grad_norm"] > 0:
            raise ValueError(f"codec: tap {tap!r} has zero gradient at this operating point; cannot match it")
        weights[tap] = ref["grad_norm"] / codec[tap]["grad_norm"]
    return weights


def round_sig(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant figures."""
    return float(f"{value:.{digits}g}")


def ratios(codec: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """Codec / reference ratios of value and gradient norm."""
    return {
        "value_ratio": codec["value"] / reference["value"],
        "grad_ratio": codec["grad_norm"] / reference["grad_norm"],
    }


# --------------------------------------------------------------------------- images and operating points


def _square(image: Tensor, size: int, resize: bool) -> Tensor:
    """A ``size`` x ``size`` centre crop; with ``resize`` the shorter side is first resized to ``size``."""
    if resize:
        h, w = image.shape[-2:]
        scale = size / min(h, w)
        shape = (max(size, round(h * scale)), max(size, round(w * scale)))
        image = F.interpolate(image[None], size=shape, mode="bicubic", antialias=True, align_corners=False)[0]
    if min(image.shape[-2:]) < size:
        raise ValueError(f"image of shape {tuple(image.shape)} is smaller than --size {size}")
    return center_crop(image, size).clamp(0, 1)


def _center(batch: Tensor, size: int) -> Tensor:
    """The centre ``size`` x ``size`` window of an (N, C, H, W) batch."""
    top, left = (batch.shape[-2] - size) // 2, (batch.shape[-1] - size) // 2
    return batch[..., top:top + size, left:left + size].contiguous()


def synthetic_texture(batch: int, size: int, seed: int) -> Tensor:
    """Seeded stand-in for photos: random oriented gratings plus smoothed noise, in [0, 1], (batch, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.zeros(batch, 3, size, size)
    for _ in range(6):
        scale = torch.tensor([40.0, math.pi, 2 * math.pi]).view(3, 1, 1, 1, 1)  # frequency, angle, phase
        freq, angle, phase = torch.rand(3, batch, 3, 1, 1, generator=g) * scale
        images += torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase) / 6
    noise = F.avg_pool2d(torch.rand(batch, 3, size, size, generator=g), 5, stride=1, padding=2)
    return (0.5 + 0.35 * images + 0.6 * (noise - 0.5)).clamp(0, 1)


@dataclass
class Images:
    """The images every operating point is made of, and where they came from."""

    kodak: Tensor
    content: Tensor
    style: Tensor
    sources: dict[str, str]


def load_images(data: Path, size: int, batch: int, seed: int) -> Images:
    """Kodak crops at native resolution, style-transfer content photos and one style painting.

    Each set falls back to :func:`synthetic_texture` (with a warning) when its folder is missing or empty.
    """
    sources: dict[str, str] = {}

    def folder(key: str, path: Path, resize: bool, pick: Callable[[list[Path]], list[Path]], count: int) -> Tensor:
        try:
            files = pick(list(list_images(path).values()))
        except FileNotFoundError:
            files = []
        if not files:
            logger.warning("%s: no images in %s; using a synthetic texture", key, path)
            texture_seed = seed + len(sources)  # a different texture for each set
            sources[key] = f"synthetic texture (seed {texture_seed})"
            return synthetic_texture(count, size, texture_seed)
        sources[key] = ", ".join(str(f.relative_to(data)) for f in files)
        images = torch.stack([_square(read_image(f), size, resize) for f in files])
        return images.repeat((count + len(files) - 1) // len(files), 1, 1, 1)[:count]

    kodak = folder("kodak", data / "eval" / "kodak", False, lambda fs: fs[:: max(1, len(fs) // batch)][:batch], batch)
    content = folder("content", data / "style" / "content", True, lambda fs: fs[:batch], batch)
    style = folder(
        "style", data / "style" / "style", True,
        lambda fs: [f for f in fs if f.stem == STYLE_IMAGE][:1] or fs[:1], 1,
    )
    return Images(kodak, content, style, sources)


def bicubic_x4(x: Tensor) -> Tensor:
    """Bicubic x4 down (antialiased, as MATLAB's imresize) and back up: the SR input the network starts from."""
    low = F.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(low, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)


#: What each operating point is, in words (copied into the JSON).
POINTS = {
    "bicubic_x4": "prediction = photo bicubic-downscaled x4 and upscaled back; target = photo",
    "noise_0.05": "prediction = photo + Gaussian noise (sigma 0.05, clamped); target = photo",
    "blend_style": "prediction = (photo + style painting) / 2, a half-stylised stand-in; target = photo",
    "content_vs_style": "prediction = photo (Gatys/Johnson start from the content); Gram target = style painting",
    "noise_vs_style": "prediction = uniform noise (texture-synthesis start); Gram target = style painting",
}


def operating_point(name: str, photos: Tensor, style: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """(prediction, target) of operating point ``name`` (see :data:`POINTS`)."""
    g = torch.Generator().manual_seed(seed)
    styles = style.expand_as(photos)
    if name == "bicubic_x4":
        return bicubic_x4(photos), photos
    if name == "noise_0.05":
        return (photos + 0.05 * torch.randn(photos.shape, generator=g)).clamp(0, 1), photos
    if name == "blend_style":
        return (photos + styles) / 2, photos
    if name == "content_vs_style":
        return photos, styles.contiguous()
    if name == "noise_vs_style":
        return torch.rand(photos.shape, generator=g), styles.contiguous()
    raise ValueError(f"operating point: got {name!r}, expected one of {sorted(POINTS)}")


# --------------------------------------------------------------------------- reference losses


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vgg_trunk(arch: str, weights_file: Path | None, seed: int) -> tuple[Trunk, str]:
    """:func:`codecloss.reference.trunk` ``arch`` (random init with ``seed`` without a file), and where its weights came from."""
    trunk = codecloss.reference.trunk(arch, weights_file, seed)
    source = f"{weights_file} (sha256 {_sha256(weights_file)})" if weights_file is not None else trunk.weights_source
    return trunk, source


def _fixed(fn: Callable[[Tensor], dict[str, Tensor]], target: Tensor) -> dict[str, Tensor]:
    with torch.no_grad():
        return fn(target)


def reference_terms(case: Case, nets: Mapping[str, nn.Module], target: Tensor) -> Terms:
    """The reference loss of ``case`` against ``target``, split into its layers (each already weighted)."""
    if case.name.startswith("fast_neural_style"):
        # neural_style.py feeds x in [0, 255]; normalize_batch divides by 255 before ImageNet normalisation, so
        # as a function of the [0, 1] image the loss is the same; gradients w.r.t. [0, 255] pixels are 1/255 of these.
        layers = [n for g in case.groups.values() for n in g]
        fixed = _fixed(lambda t: nets["vgg16"](t, layers), target)
        if case.kind == "gram":
            grams = {n: codecloss.gram_matrix(f) for n, f in fixed.items()}  # utils.gram_matrix: / (C*H*W)
            return lambda x: {
                n: 1e10 * F.mse_loss(codecloss.gram_matrix(f), grams[n])
                for n, f in nets["vgg16"](x, layers).items()
            }
        return lambda x: {n: 1e5 * F.mse_loss(f, fixed[n]) for n, f in nets["vgg16"](x, layers).items()}
    if case.name in ("esrgan", "realesrgan"):
        layer_weights = {"conv5_4": 1.0} if case.name == "esrgan" else {
            "conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0
        }
        layers = list(layer_weights)
        fixed = _fixed(lambda t: nets["vgg19"](t, layers), target)
        return lambda x: {
            n: layer_weights[n] * F.l1_loss(f, fixed[n]) for n, f in nets["vgg19"](x, layers).items()
        }
    if case.name.startswith("piq."):
        loss = nets[case.name]
        return lambda x: {"relu3_3": loss(x, target)}
    if case.name == "lpips":
        loss = nets["lpips"]

        def terms(x: Tensor) -> dict[str, Tensor]:
            _, per_layer = loss(x, target, retPerLayer=True, normalize=True)
            return {n: r.mean() for n, r in zip(LPIPS_LAYERS, per_layer)}

        return terms
    raise ValueError(f"case: got {case.name!r}, expected one of {CASE_NAMES}")


def build_reference_nets(
    cases: Sequence[Case], vgg16_file: Path | None, vgg19_file: Path | None, seed: int
) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The VGG networks and installed reference losses the chosen cases need, and their weight sources."""
    names = {c.name for c in cases}
    nets: dict[str, nn.Module] = {}
    sources: dict[str, str] = {}
    if names & {"fast_neural_style.content", "fast_neural_style.style", "piq.ContentLoss", "piq.StyleLoss", "lpips"}:
        nets["vgg16"], sources["vgg16"] = vgg_trunk("vgg16", vgg16_file, seed)
    if names & {"esrgan", "realesrgan"}:
        nets["vgg19"], sources["vgg19"] = vgg_trunk("vgg19", vgg19_file, seed)
    for name in names & {"piq.ContentLoss", "piq.StyleLoss"}:
        import piq
        from piq.perceptual import VGG16_LAYERS

        factory = piq.ContentLoss if name == "piq.ContentLoss" else piq.StyleLoss
        # piq's own class and defaults; only the feature extractor is passed (piq's "vgg16" would download).
        # Truncating after relu3_3 changes no value: piq only reads the layers it is asked for.
        truncated = nets["vgg16"].features[: nets["vgg16"].tap("relu3_3").index + 1]
        nets[name] = factory(feature_extractor=truncated, layers=[VGG16_LAYERS["relu3_3"]])
    if "lpips" in names:
        # the lpips package's own model on the same VGG16 as every other case (random or from --vgg16-weights)
        nets["lpips"] = codecloss.reference.lpips("vgg", nets["vgg16"]).model
        version = importlib.metadata.version("lpips")
        sources["lpips_lin"] = f"lpips {version} weights/v0.1/vgg.pth (shipped in the wheel)"
    return nets, sources


# --------------------------------------------------------------------------- codec side


def parse_backbone(spec: str) -> tuple[str, str | None]:
    """``"id"`` -> (id, "default"); ``"id:random"`` -> (id, None)."""
    backbone, _, mode = spec.partition(":")
    if backbone not in codecloss.list_backbones():
        raise ValueError(f"--backbones: unknown backbone {backbone!r}; see codecloss.list_backbones()")
    if mode not in ("", "random"):
        raise ValueError(f"--backbones: got {spec!r}, expected ID or ID:random")
    return backbone, ("default" if mode == "" else None)


def load_codec_backbones(specs: Sequence[str], seed: int) -> dict[str, codecloss.FeatureExtractor]:
    """One frozen feature extractor per ``--backbones`` entry (random init seeded with ``seed``)."""
    extractors = {}
    for spec in specs:
        backbone, weights = parse_backbone(spec)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(seed)
            warnings.simplefilter("ignore", UserWarning)  # weights=None warns; the JSON says so
            extractors[spec] = codecloss.load_backbone(backbone, weights)
    return extractors


def codec_loss(
    backbone: str | codecloss.FeatureExtractor, kind: str, tap_weights: Mapping[str, float]
) -> codecloss.CodecPerceptualLoss:
    """The suggested loss, as :func:`suggested_snippet` writes it, through the public API."""
    if kind == "gram":
        return codecloss.CodecPerceptualLoss(backbone, layers={}, style_layers=dict(tap_weights), style_weight=1.0)
    return codecloss.CodecPerceptualLoss(backbone, layers=dict(tap_weights), content=kind)


def codec_terms(extractor: codecloss.CodecPerceptualLoss, kind: str, target: Tensor) -> Terms:
    """Unweighted codec term per tap: ``content_loss`` or ``style_loss`` of ``extractor.features``, batch mean."""
    fixed = _fixed(extractor.features, target)
    if kind == "gram":
        return lambda x: {t: codecloss.style_loss(f, fixed[t]).mean() for t, f in extractor.features(x).items()}
    return lambda x: {t: codecloss.content_loss(f, fixed[t], kind).mean() for t, f in extractor.features(x).items()}


def suggested_snippet(case: Case, backbone: str, weights: str | None, tap_weights: Mapping[str, float]) -> str:
    """The ``CodecPerceptualLoss(...)`` call with the matched weights, as code."""
    args = [] if backbone == codecloss.DEFAULT_BACKBONE else [repr(backbone)]
    if case.kind == "gram":
        args += ["layers={}", f"style_layers={dict(tap_weights)}", "style_weight=1.0"]
    else:
        args += [f"layers={dict(tap_weights)}", f"content={case.kind!r}"]
    if weights is None:
        args.append("weights=None")
    return f"codecloss.CodecPerceptualLoss({', '.join(args)})"


# --------------------------------------------------------------------------- one case


def run_case(
    case: Case,
    nets: Mapping[str, nn.Module],
    extractors: Mapping[str, codecloss.FeatureExtractor],
    images: Images,
    seed: int,
    size: int,
) -> dict:
    """Measure ``case`` at its operating points for every backbone; choose and check the codec weights."""
    photos = _center(images.kodak if case.photos == "kodak" else images.content, size)
    style = _center(images.style, size)
    points = {name: operating_point(name, photos, style, seed) for name in case.points}
    chosen_at = case.points[0]
    reference = {  # per codec tap (the sum of the reference layers it replaces) where matched; the total elsewhere
        name: measure_terms(reference_terms(case, nets, target), pred, case.groups if name == chosen_at else {})
        for name, (pred, target) in points.items()
    }
    result = {
        "reference": case.reference,
        "source": case.source,
        "codec_term": case.kind,
        "pairing": {tap: list(layers) for tap, layers in case.groups.items()},
        "size": size,
        "batch": int(photos.shape[0]),
        "operating_points": {name: POINTS[name] for name in case.points},
        "matched_at": case.points[0],
        "reference_stats": reference,
        "codec": {},
    }
    for spec, extractor in extractors.items():
        features = codecloss.CodecPerceptualLoss(extractor, layers=list(case.groups))  # only for .features()
        pred, target = points[chosen_at]
        terms_of = codec_terms(features, case.kind, target)
        per_tap = measure_terms(terms_of, pred)
        matched = match_weights({tap: reference[chosen_at][tap] for tap in case.groups}, per_tap)
        factor = 1.0  # one tap: already matched
        if len(matched) > 1:  # gradient norms do not add: one common factor makes the totals equal
            weighted = measure_terms(lambda x: {"total": sum(matched[t] * v for t, v in terms_of(x).items())}, pred)
            factor = reference[chosen_at]["total"]["grad_norm"] / weighted["total"]["grad_norm"]
        final = {tap: round_sig(w * factor) for tap, w in matched.items()}
        loss = codec_loss(extractor, case.kind, final)
        checks = {}
        for name, (pred, target) in points.items():
            stats = measure_terms(lambda x: {"total": loss(x, target)}, pred)["total"]
            checks[name] = {**stats, **ratios(stats, reference[name]["total"])}
        backbone, weights = parse_backbone(spec)
        result["codec"][spec] = {
            "backbone": backbone,
            "weights": "trained (default)" if weights else "random init (seed %d)" % seed,
            "per_tap_unweighted": per_tap,  # at matched_at
            "group_matched_weights": matched,
            "common_factor": factor,
            "weights_suggested": final,
            "snippet": suggested_snippet(case, backbone, weights, final),
            "check": checks,
        }
    return result


# --------------------------------------------------------------------------- report


def _g(value: float) -> str:
    return f"{value:.3g}"


def format_tables(report: Mapping) -> str:
    """Markdown tables of a report: one summary row per case and backbone, then every matched tap."""
    lines = [
        "| reference | codec backbone | suggested codec terms | value ratio | grad ratio "
        "| value ratio (2nd point) | grad ratio (2nd point) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, case in report["cases"].items():
        first, second = case["operating_points"]
        for spec, codec in case["codec"].items():
            a, b = codec["check"][first], codec["check"][second]
            terms = ", ".join(f"{tap} x {_g(w)}" for tap, w in codec["weights_suggested"].items())
            lines.append(
                f"| {name} @ {first} | {spec} | {case['codec_term']}: {terms} "
                f"| {_g(a['value_ratio'])} | {_g(a['grad_ratio'])} "
                f"| {_g(b['value_ratio'])} ({second}) | {_g(b['grad_ratio'])} |"
            )
    lines += [
        "",
        "| reference | reference layers | codec tap | reference value | reference grad norm "
        "| codec value (w=1) | codec grad norm (w=1) | weight |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, case in report["cases"].items():
        point = case["matched_at"]
        ref = case["reference_stats"][point]
        for spec, codec in case["codec"].items():
            for tap, layers in case["pairing"].items():
                unweighted = codec["per_tap_unweighted"][tap]
                lines.append(
                    f"| {name} ({spec}) | {' + '.join(layers)} | {tap} "
                    f"| {_g(ref[tap]['value'])} | {_g(ref[tap]['grad_norm'])} "
                    f"| {_g(unweighted['value'])} | {_g(unweighted['grad_norm'])} "
                    f"| {_g(codec['weights_suggested'][tap])} |"
                )
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--cases", nargs="+", choices=CASE_NAMES, default=list(CASE_NAMES), help="reference losses to measure"
    )
    parser.add_argument(
        "--backbones", nargs="+", default=[codecloss.DEFAULT_BACKBONE, f"{codecloss.DEFAULT_BACKBONE}:random"],
        help="codec backbones; ID:random measures one at random init (default: the default one, trained and random)",
    )
    parser.add_argument("--vgg16-weights", type=Path, help="torchvision vgg16 state dict (default: random init)")
    parser.add_argument("--vgg19-weights", type=Path, help="torchvision vgg19 state dict (default: random init)")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="shared data folder (synthetic textures where absent)"
    )
    parser.add_argument("--size", type=int, help="image side for every case (default: each reference's training crop)")
    parser.add_argument("--batch", type=int, default=4, help="images per operating point")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random VGGs, random codecs and noise")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--tables", action="store_true", help="print the markdown tables of docs/migrating.md")
    args = parser.parse_args(argv)
    for flag in ("vgg16_weights", "vgg19_weights"):
        path = getattr(args, flag)
        if path is not None and not path.is_file():
            parser.error(f"--{flag.replace('_', '-')}: no such file {str(path)!r}")
    if args.size is not None and args.size < 32:
        parser.error(f"--size: got {args.size}, expected >= 32 (the codec's y tap has stride 16)")
    if args.batch < 1:
        parser.error(f"--batch: got {args.batch}, expected >= 1")
    try:
        for spec in args.backbones:
            parse_backbone(spec)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the measurements, write ``--out``, return the result."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c for c in CASES if c.name in args.cases]
    if "lpips" in args.cases and importlib.util.find_spec("lpips") is None:
        logger.warning("lpips is not installed; skipping the lpips case (pip install lpips)")
        cases = [c for c in cases if c.name != "lpips"]
    started = time.perf_counter()
    nets, weight_sources = build_reference_nets(cases, args.vgg16_weights, args.vgg19_weights, args.seed)
    largest = max(args.size or c.size for c in cases)
    images = load_images(args.data, largest, args.batch, args.seed)
    extractors = load_codec_backbones(args.backbones, args.seed)
    results = {}
    for case in cases:
        t0 = time.perf_counter()
        results[case.name] = run_case(case, nets, extractors, images, args.seed, args.size or case.size)
        logger.info("%s: %.1f s", case.name, time.perf_counter() - t0)
    report = {
        "command": "python benchmarks/migration.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "seed": args.seed,
            "batch": args.batch,
            "threads": torch.get_num_threads(),
            "vgg_weights": weight_sources,
            "vgg_is_random": {k: v.startswith("random") for k, v in weight_sources.items() if k.startswith("vgg")},
            "data": str(args.data),
            "images": images.sources,
            "gradient": "L2 norm of d(loss)/d(prediction) over the whole (N, 3, H, W) batch, prediction in [0, 1], "
                        "loss averaged over the batch",
            "matching": "per codec tap, weight = reference group's gradient norm / unweighted tap's; then one common "
                        "factor so the totals' gradient norms are equal; rounded to 3 significant figures",
        },
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "codecloss": codecloss.__version__,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, args.out)
    logger.info("wrote %s (%.0f s)", args.out, report["seconds"])
    if args.tables:
        print(format_tables(report))
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
