"""x4 upscaler model files (the SR study's network) and exact tiled inference on images of any size.

A model file is a ``torch.save`` dict: ``format`` (:data:`MODEL_FORMAT`), ``arch`` (:data:`ARCH`), ``scale``,
``config`` (the :class:`~codecloss.tasks.sr_net.SRNet` arguments), ``state_dict`` (float32, or float16 when
float32 would exceed :data:`MAX_MODEL_BYTES`) and ``meta`` (JSON-ready facts: loss, steps, validation PSNR).

Example:
    >>> net = load_upscaler("runs/sr/pretrain.pth")  # doctest: +SKIP
    >>> sr = upscale_image(net, lr, tile=128)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codecloss._io import atomic_torch_save
from codecloss.checkpoints import load_torch_file
from codecloss.tasks.sr_net import SRNet

__all__ = ["ARCH", "MAX_MODEL_BYTES", "MODEL_FORMAT", "SCALE", "load_upscaler", "save_upscaler", "upscale_image"]

#: ``"format"`` of an upscaler model file.
MODEL_FORMAT = "codecloss-sr-upscaler"
#: ``"arch"`` of the networks this module builds.
ARCH = "srnet-edsr-baseline-bicubic-skip"
#: The only scale the study trains.
SCALE = 4
#: Largest model file written in float32; larger networks are stored in float16.
MAX_MODEL_BYTES = 2_000_000


def save_upscaler(net: SRNet, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write an upscaler model file atomically (float16 when float32 would exceed :data:`MAX_MODEL_BYTES`).

    Args:
        net: the trained network.
        path: destination file.
        meta: JSON-ready facts stored beside the weights.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    half = 4 * net.num_parameters() > MAX_MODEL_BYTES
    state = {k: (v.half() if half else v).detach().cpu().clone() for k, v in net.state_dict().items()}
    return atomic_torch_save({"format": MODEL_FORMAT, "arch": ARCH, "scale": net.scale, "config": net.config(),
                              "state_dict": state, "meta": dict(meta or {})}, path)


def load_upscaler(path: str | os.PathLike[str], device: str | torch.device = "cpu", argument: str = "model") -> SRNet:
    """Load a x4 model file written by :func:`save_upscaler` (``codecloss sr-study`` writes them).

    Args:
        path: the model file (e.g. ``RUN/pretrain.pth``).
        device: where to put the network.
        argument: the argument named in error messages (``"--model"`` for the command line).

    Returns:
        The :class:`~codecloss.tasks.sr_net.SRNet` in eval mode, float32, its file's ``meta`` in ``net.meta``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an upscaler model file, or one of another scale or architecture.

    Example:
        >>> net = load_upscaler("runs/sr/pretrain.pth")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{argument}: no such file {str(path)!r}")
    blob = load_torch_file(path, argument, f"an upscaler model ({MODEL_FORMAT!r}) from `codecloss sr-study`")
    found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
    if found != MODEL_FORMAT:
        raise ValueError(f"{argument}: {str(path)!r} is not an upscaler model (format {found!r}, expected {MODEL_FORMAT!r})")
    if blob.get("scale") != SCALE:
        raise ValueError(f"{argument}: {str(path)!r} is a x{blob.get('scale')} upscaler; only x{SCALE} is supported")
    if blob.get("arch") != ARCH:
        raise ValueError(f"{argument}: {str(path)!r} holds a {blob.get('arch')!r} network; expected {ARCH!r}")
    net = SRNet(**blob["config"])
    try:
        net.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    except RuntimeError as err:
        raise ValueError(f"{argument}: {str(path)!r} does not match its own config {blob['config']}: "
                         f"{str(err).splitlines()[0]}") from None
    net.meta = blob.get("meta", {})
    return net.to(device).eval()


def upscale_image(net: SRNet, lr: Tensor, tile: int | None = None) -> Tensor:
    """Super-resolve (N, 3, h, w) images, in overlapping tiles of ``tile`` LR pixels when larger.

    Each tile is run with :attr:`SRNet.halo <codecloss.tasks.sr_net.SRNet.halo>` extra LR pixels on every
    side (clipped at the image), and only its own part is kept, so the result equals the untiled output up
    to float rounding.

    Args:
        net: the network (its device is used).
        lr: images in [0, 1].
        tile: tile side in LR pixels; ``None`` runs the whole image at once.

    Returns:
        (N, 3, h * scale, w * scale) images, clamped to [0, 1].
    """
    h, w = lr.shape[-2:]
    s, halo = net.scale, net.halo
    with torch.no_grad():
        if tile is None or (h <= tile and w <= tile):
            return net(lr).clamp(0, 1)
        out = lr.new_empty(lr.shape[0], 3, h * s, w * s)
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(h, top + tile), min(w, left + tile)
                t0, l0 = max(0, top - halo), max(0, left - halo)
                y = net(lr[..., t0 : min(h, bottom + halo), l0 : min(w, right + halo)])
                out[..., top * s : bottom * s, left * s : right * s] = y[
                    ..., (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
                ]
        return out.clamp(0, 1)
