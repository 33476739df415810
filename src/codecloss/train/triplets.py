"""BAPPS-like 2AFC triplets from natural crops, labelled by a teacher metric (distilling LPIPS-VGG into CPIPS heads).

A triplet is a clean crop ``ref`` and two distortions of it, ``p0`` and ``p1``, each of a random kind from
:data:`DISTORTION_KINDS` (with probability ``combine`` the composition of two kinds) at a random strength. The
soft label is the probability that ``p1`` is closer to ``ref`` than ``p0`` is, as the teacher sees it::

    h = sigmoid((d0 - d1) / (temperature * (d0 + d1)))

a logistic of the *relative* distance difference (scale-free: LPIPS distances of 64 px crops differ by content
far more than by the pair), so ``d1 = 0.8 * d0`` gives ``h = 0.75`` at the default temperature 0.1. Triplets
are stored as uint8 (like BAPPS's PNGs) and the teacher sees exactly those images.

Example:
    >>> bank = ImageBank.from_folders(NATURAL_TRAIN_DIRS, min_side=64)  # doctest: +SKIP
    >>> t = make_triplets(bank, 100, crop=64, seed=0)  # doctest: +SKIP
    >>> t["judge"] = soft_labels(reference.lpips("vgg"), t)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from codecloss._io import atomic_torch_save
from codecloss.evaluate.sanity import distort
from codecloss.train.data import ImageBank

__all__ = [
    "DISTORTION_KINDS", "TRAIN_KINDS", "TripletDataset", "apply_distortion", "make_triplets", "soft_labels",
    "JUDGE_TEACHERS", "TEACHERS", "distill_triplets", "read_triplets", "teacher_distances", "write_triplets",
]

logger = logging.getLogger(__name__)

Codec = Callable[[Tensor], Tensor]

#: Distortion kind -> strength range (low, high), drawn uniformly.
DISTORTION_KINDS: dict[str, tuple[float, float]] = {
    "noise": (0.01, 0.15),  # std of additive Gaussian noise
    "blur": (0.3, 3.0),  # Gaussian blur sigma in pixels
    "jpeg": (5, 90),  # Pillow JPEG quality
    "color": (-0.15, 0.15),  # offset along (+R, -B) / sqrt(2)
    "contrast": (0.4, 1.4),  # factor around each channel's mean
    "codec": (0.5, 1.5),  # scale of the learned codec's residual x_hat - x
    "warp": (0.3, 2.0),  # peak displacement in pixels of a smooth random field
}
#: Kinds the distilled heads are trained on by default; ``codec`` and ``warp`` are held out for evaluation.
TRAIN_KINDS = ("noise", "blur", "jpeg", "color", "contrast")

_WARP_GRID = 4  # the displacement field is random on a 4x4 grid, upsampled bicubically


def _warp(image: Tensor, pixels: float, generator: torch.Generator) -> Tensor:
    height, width = image.shape[1:]
    field = torch.randn(1, 2, _WARP_GRID, _WARP_GRID, generator=generator)
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=True)
    field = field / field.abs().amax().clamp_min(1e-6) * pixels  # peak displacement in pixels
    scale = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)  # pixels -> grid_sample units
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1).unsqueeze(0) + (field * scale).permute(0, 2, 3, 1)
    out = F.grid_sample(image.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.squeeze(0)


def apply_distortion(
    image: Tensor, kind: str, strength: float, generator: torch.Generator, codec: Codec | None = None
) -> Tensor:
    """One distortion of a (3, H, W) image in [0, 1] at a given strength.

    Args:
        image: the clean image.
        kind: a key of :data:`DISTORTION_KINDS`.
        strength: its strength (see :data:`DISTORTION_KINDS`).
        generator: draws the noise field and the warp field.
        codec: ``codec(x (N, 3, H, W)) -> x_hat``, required for ``"codec"``.

    Returns:
        The distorted image, same shape, clamped to [0, 1].
    """
    if kind == "noise":
        return distort(image, "noise", strength, torch.randn(image.shape, generator=generator))
    if kind in ("blur", "jpeg", "color", "contrast"):
        return distort(image, kind, round(strength) if kind == "jpeg" else strength)
    if kind == "codec":
        if codec is None:
            raise ValueError("codec: the 'codec' distortion needs a codec, got None")
        with torch.no_grad():
            decoded = codec(image.unsqueeze(0)).squeeze(0)
        return (image + strength * (decoded - image)).clamp(0, 1)
    if kind == "warp":
        return _warp(image, strength, generator).clamp(0, 1)
    raise ValueError(f"kind: got {kind!r}, expected one of {list(DISTORTION_KINDS)}")


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _random_distortion(
    image: Tensor, kinds: Sequence[str], combine: float, generator: torch.Generator, codec: Codec | None
) -> tuple[Tensor, str]:
    count = 2 if len(kinds) > 1 and float(torch.rand((), generator=generator)) < combine else 1
    chosen = [kinds[int(i)] for i in torch.randperm(len(kinds), generator=generator)[:count]]
    for kind in chosen:
        image = apply_distortion(image, kind, _uniform(*DISTORTION_KINDS[kind], generator), generator, codec)
    return image, "+".join(chosen)


def _to_uint8(images: Tensor) -> Tensor:
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def make_triplets(
    bank: ImageBank,
    count: int,
    crop: int = 64,
    kinds: Sequence[str] = TRAIN_KINDS,
    seed: int = 0,
    combine: float = 0.3,
    codec: Codec | None = None,
) -> dict[str, Tensor | list[str]]:
    """Seeded 2AFC triplets: random crops of ``bank`` and two random distortions of each.

    Args:
        bank: clean images (random crops with flips, :meth:`ImageBank.sample`).
        count: number of triplets.
        crop: crop side in pixels (BAPPS: 64).
        kinds: distortion kinds to draw from (keys of :data:`DISTORTION_KINDS`).
        seed: the same seed gives the same triplets.
        combine: probability that a distorted image gets two kinds instead of one.
        codec: ``codec(x) -> x_hat`` for the ``"codec"`` kind (e.g. ``lambda x: model(x)["x_hat"]``).

    Returns:
        ``{"ref", "p0", "p1"}``: uint8 (count, 3, crop, crop); ``"kinds0"``, ``"kinds1"``: the kind names
        (``"blur+jpeg"`` for a combination).

    Example:
        >>> bank = ImageBank([torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)])
        >>> make_triplets(bank, 2, crop=32)["p0"].shape
        torch.Size([2, 3, 32, 32])
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count: expected an integer >= 1, got {count!r}")
    if not kinds or any(kind not in DISTORTION_KINDS for kind in kinds):
        raise ValueError(f"kinds: expected some of {list(DISTORTION_KINDS)}, got {list(kinds)}")
    if "codec" in kinds and codec is None:
        raise ValueError("codec: kinds include 'codec' but no codec was given")
    if not 0 <= combine <= 1:
        raise ValueError(f"combine: expected a probability in [0, 1], got {combine!r}")
    generator = torch.Generator().manual_seed(seed)
    refs, _ = bank.sample(count, crop, generator)
    out: dict[str, list] = {"p0": [], "p1": [], "kinds0": [], "kinds1": []}
    for ref in refs:
        for side in ("0", "1"):
            image, name = _random_distortion(ref, kinds, combine, generator, codec)
            out[f"p{side}"].append(image)
            out[f"kinds{side}"].append(name)
    logger.info("made %d triplets of %dx%d crops from kinds %s", count, crop, crop, list(kinds))
    return {"ref": _to_uint8(refs), "p0": _to_uint8(torch.stack(out["p0"])), "p1": _to_uint8(torch.stack(out["p1"])),
            "kinds0": out["kinds0"], "kinds1": out["kinds1"]}


def teacher_distances(
    teacher: Callable[[Tensor, Tensor], Tensor], triplets: dict, batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """``(d0, d1)``: the teacher's distances ref-p0 and ref-p1 on the uint8 triplets (as float in [0, 1]).

    Args:
        teacher: ``teacher(x, y) -> (N,)`` distances on images in [0, 1] (e.g. ``reference.lpips("vgg")``).
        triplets: the output of :func:`make_triplets`.
        batch_size: triplets per teacher call.
    """
    d0, d1 = [], []
    with torch.no_grad():
        for start in range(0, len(triplets["ref"]), batch_size):
            ref, p0, p1 = (triplets[k][start:start + batch_size].float() / 255 for k in ("ref", "p0", "p1"))
            d0.append(teacher(ref, p0).flatten().double())
            d1.append(teacher(ref, p1).flatten().double())
    return torch.cat(d0), torch.cat(d1)


def soft_labels(
    teacher: Callable[[Tensor, Tensor], Tensor], triplets: dict, temperature: float = 0.1, batch_size: int = 64
) -> Tensor:
    """Soft 2AFC labels ``sigmoid((d0 - d1) / (temperature * (d0 + d1)))`` from a teacher metric (float32).

    Args:
        teacher: ``teacher(x, y) -> (N,)`` distances on images in [0, 1]; never the metric you evaluate with.
        triplets: the output of :func:`make_triplets`.
        temperature: > 0; smaller gives harder labels.
        batch_size: triplets per teacher call.

    Returns:
        (N,) probabilities that ``p1`` is closer to ``ref`` (0.5 where both distances are 0).
    """
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature!r}")
    d0, d1 = teacher_distances(teacher, triplets, batch_size)
    logits = (d0 - d1) / (temperature * (d0 + d1)).clamp_min(1e-12)
    return torch.sigmoid(logits).float()


class TripletDataset(Dataset):
    """Labelled triplets in memory as the head-training loop reads them: ``{"ref", "p0", "p1", "judge"}``.

    Args:
        triplets: ``{"ref", "p0", "p1"}`` uint8 (N, 3, H, W) and ``"judge"`` (N,) in [0, 1].
    """

    def __init__(self, triplets: dict) -> None:
        lengths = {len(triplets[k]) for k in ("ref", "p0", "p1", "judge")}
        if len(lengths) != 1:
            raise ValueError(f"triplets: ref, p0, p1 and judge must have the same length, got {sorted(lengths)}")
        self.triplets = triplets

    def __len__(self) -> int:
        return len(self.triplets["judge"])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = {k: self.triplets[k][index].float() / 255 for k in ("ref", "p0", "p1")}
        item["judge"] = self.triplets["judge"][index].float()
        return item



def write_triplets(
    path: str | os.PathLike[str],
    bank: ImageBank,
    teacher: Callable[[Tensor, Tensor], Tensor],
    settings: dict[str, Any],
    codec: Codec | None = None,
) -> Path:
    """Make, label and save triplets once; an existing file made with the same ``settings`` is reused.

    Args:
        path: the triplet file (``torch.save`` of the triplets, ``"judge"`` and ``"settings"``).
        bank: clean images.
        teacher: labels them (:func:`soft_labels`).
        settings: ``count``, ``crop``, ``kinds``, ``seed``, ``combine``, ``temperature`` and any description of
            the teacher (e.g. ``"teacher": "lpips-vgg"``); stored, and compared when the file exists.
        codec: for the ``"codec"`` kind.

    Returns:
        ``path``.
    """
    path = Path(path)
    if _made_with(path, settings):
        return path
    triplets: dict[str, Any] = make_triplets(bank, settings["count"], settings["crop"], settings["kinds"],
                                             settings["seed"], settings["combine"], codec)
    triplets["judge"] = soft_labels(teacher, triplets, settings["temperature"])
    triplets["settings"] = settings
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(triplets, path)
    logger.info("wrote %d labelled triplets to %s", settings["count"], path)
    return path


def _made_with(path: Path, settings: dict[str, Any]) -> bool:
    """True when ``path`` exists and was made with ``settings``; an error when it was made with others."""
    if not path.is_file():
        return False
    saved = read_triplets(path)["settings"]
    if saved != settings:
        raise ValueError(f"triplets: {str(path)!r} was made with {saved}, not {settings}; use another output")
    logger.info("reusing the triplets in %s", path)
    return True


def read_triplets(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a file written by :func:`write_triplets` (``weights_only=True``)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"triplets: no such file {str(path)!r}")
    return torch.load(path, map_location="cpu", weights_only=True)


#: Teachers ``--distill`` accepts -> LPIPS ``net``. LPIPS-Alex is never one: it judges the distilled heads.
TEACHERS = {"lpips-vgg": "vgg"}
JUDGE_TEACHERS = ("lpips-alex",)


def distill_triplets(
    path: str | os.PathLike[str],
    data_dirs: Sequence[str | os.PathLike[str]],
    teacher: str = "lpips-vgg",
    trunks: str | os.PathLike[str] | None = None,
    count: int = 10_000,
    crop: int = 64,
    kinds: Sequence[str] = TRAIN_KINDS,
    seed: int = 0,
    combine: float = 0.3,
    temperature: float = 0.1,
) -> Path:
    """Labelled training triplets for distilling a teacher into CPIPS heads (see :func:`write_triplets`).

    Args:
        path: the triplet file to write (or reuse when made with the same settings).
        data_dirs: training photo folders (e.g. ``codecloss._data_paths.NATURAL_TRAIN_DIRS``; never Kodak).
        teacher: a key of :data:`TEACHERS`.
        trunks: folder of the ImageNet trunk files (``None``: ``CODECLOSS_TRUNKS``).
        count, crop, kinds, seed, combine: as for :func:`make_triplets`.
        temperature: as for :func:`soft_labels`.

    Returns:
        ``path``.

    Example:
        >>> distill_triplets("runs/distill/triplets.pt", NATURAL_TRAIN_DIRS, trunks="trunks")  # doctest: +SKIP
    """
    from codecloss import reference
    from codecloss.backbones import load_codec
    from codecloss.reference.lpips_model import LPIPS_NETS

    if teacher in JUDGE_TEACHERS:
        raise ValueError(f"distill: {teacher!r} is the judge of distilled heads and is never a teacher; use lpips-vgg")
    if teacher not in TEACHERS:
        raise ValueError(f"distill: got {teacher!r}, expected one of {list(TEACHERS)}")
    net = TEACHERS[teacher]
    trunk = reference.trunk_file(LPIPS_NETS[net], trunks)
    if trunk is None:
        raise FileNotFoundError(f"trunks: no {LPIPS_NETS[net]} trunk file in {trunks!r} "
                                f"(or ${reference.TRUNKS_ENV})")
    settings = {"count": count, "crop": crop, "kinds": list(kinds), "seed": seed, "combine": combine,
                "temperature": temperature, "teacher": teacher, "data_dirs": [str(d) for d in data_dirs]}
    if _made_with(Path(path), settings):
        return Path(path)
    codec = None
    if "codec" in kinds:
        model = load_codec("codecloss-small-mse")
        codec = lambda x: model(x)["x_hat"]  # noqa: E731
    bank = ImageBank.from_folders(data_dirs, min_side=crop)
    return write_triplets(path, bank, reference.lpips(net, trunk=trunk), settings, codec)
