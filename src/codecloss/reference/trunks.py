"""Frozen torchvision ImageNet trunks (VGG16, VGG19, AlexNet ``features``) with named taps.

A :class:`Trunk` has the interface of the codec's :class:`~codecloss.features.FeatureExtractor`
(``tap``, ``tap_names``, ``taps``, ``extract``, ``backbone_id``; frozen, always in eval mode, stops
after the deepest tap asked for), so every task that takes a codec feature extractor takes a trunk.

Tap names: VGG ``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}`` (block ``b``, convolution ``i`` in the
block, as in Gatys et al. and BasicSR); AlexNet ``conv{k}``, ``relu{k}`` (``k``-th convolution) and
``pool{k}`` after ``relu{k}`` (``pool1, pool2, pool5``).

Weights come from a file (torchvision's full state dict or its ``features.*`` part, e.g. the files of
the folder named by ``CODECLOSS_TRUNKS``), from torchvision's own download (``"torchvision"``), or
are a seeded random initialisation (``None``). A file that does not fit is refused, never skipped.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from codecloss._validate import check_choice
from codecloss.features import TapInfo, TappedNetwork

__all__ = ["DEFAULT_LAYERS", "TRUNK_NAMES", "TRUNKS_ENV", "Trunk", "WeightsArg", "as_trunk", "trunk", "trunk_file"]

logger = logging.getLogger(__name__)

#: Trunks :func:`trunk` builds.
TRUNK_NAMES = ("vgg16", "vgg19", "alexnet")

#: Environment variable naming the default folder of trunk files (``{name}_features.pth``).
TRUNKS_ENV = "CODECLOSS_TRUNKS"

#: ``None`` (random init), ``"torchvision"`` (torchvision's download and cache) or a file path.
WeightsArg = Union[str, "os.PathLike[str]", None]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_VGG_CONFIGS = {"vgg16": "D", "vgg19": "E"}  # torchvision.models.vgg.cfgs keys
_ALEXNET_CONVS = (0, 3, 6, 8, 10)  # indices of the convolutions in torchvision's alexnet().features
#: Each trunk's default taps: LPIPS's ReLU outputs (VGG16, AlexNet), Gatys et al.'s style taps (VGG19).
DEFAULT_LAYERS = {
    "vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
    "vgg19": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    "alexnet": ("relu1", "relu2", "relu3", "relu4", "relu5"),
}
_TORCHVISION_WEIGHTS = {"vgg16": "VGG16_Weights", "vgg19": "VGG19_Weights", "alexnet": "AlexNet_Weights"}


def trunk_file(name: str, trunks: str | os.PathLike[str] | None = None) -> Path | None:
    """The trunk file ``{name}_features.pth`` in ``trunks`` or, by default, in the folder ``CODECLOSS_TRUNKS`` names.

    Args:
        name: one of :data:`TRUNK_NAMES`.
        trunks: folder of trunk files; ``None`` reads ``CODECLOSS_TRUNKS``.

    Returns:
        The file, or ``None`` when no folder is named or it has no file for ``name``.

    Raises:
        FileNotFoundError: the folder named does not exist.

    Example:
        >>> trunk_file("alexnet", "../shared/data/reference/imagenet_features")  # doctest: +SKIP
        PosixPath('../shared/data/reference/imagenet_features/alexnet_features.pth')
    """
    check_choice("name", name, TRUNK_NAMES)
    argument = "trunks" if trunks is not None else TRUNKS_ENV
    folder = trunks if trunks is not None else os.environ.get(TRUNKS_ENV) or None
    if folder is None:
        return None
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{argument}: no such folder {os.fspath(folder)!r}; expected one holding {name}_features.pth")
    path = Path(folder) / f"{name}_features.pth"
    return path if path.is_file() else None


def _tap_infos(name: str, features: nn.Sequential) -> tuple[TapInfo, ...]:
    """Name, channels and stride of every module of a torchvision ``features`` (see the module docstring)."""
    vgg = name in _VGG_CONFIGS
    taps, block, index, convs, channels, stride = [], 1, 0, 0, 3, 1
    for position, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            stride *= module.stride if isinstance(module.stride, int) else module.stride[0]
            taps.append(TapInfo(f"pool{block if vgg else convs}", position, channels, stride))
            block, index = block + 1, 0
            continue
        if isinstance(module, nn.Conv2d):
            index, convs, channels, stride = index + 1, convs + 1, module.out_channels, stride * module.stride[0]
        elif not isinstance(module, nn.ReLU):
            raise TypeError(f"{name}: unexpected module {type(module).__name__} in features")
        kind = "conv" if isinstance(module, nn.Conv2d) else "relu"
        taps.append(TapInfo(f"{kind}{f'{block}_{index}' if vgg else convs}", position, channels, stride))
    return tuple(taps)


class Trunk(TappedNetwork):
    """A frozen torchvision trunk with named taps; build one with :func:`trunk`.

    Inputs are RGB, mapped to [0, 1] and ImageNet-normalised inside. A ReLU overwrites its convolution's
    output (as torchvision's in-place ReLUs do, saving a map per layer) unless that output is a requested
    tap (BasicSR's "before ReLU" features), which is then kept.

    Args:
        name: one of :data:`TRUNK_NAMES`, reported as ``backbone_id``.
        features: torchvision's ``features`` of that network (frozen here).
        weights_source: where the weights came from, for logs and reports.
    """

    def __init__(self, name: str, features: nn.Sequential, weights_source: str) -> None:
        super().__init__()
        self.backbone_id = name
        self.weights_source = weights_source
        for module in features:
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.features = features.eval().requires_grad_(False)
        self.taps = _tap_infos(name, features)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor, layers: Sequence[str]) -> "OrderedDict[str, Tensor]":
        """Run the trunk up to the deepest tap in ``layers``.

        Args:
            x: images (N, 3, H, W) in [0, 1].
            layers: tap names to return.

        Returns:
            Ordered dict tap name -> feature map, in forward order.
        """
        wanted = {self.tap(name).index: name for name in layers}
        out: OrderedDict[str, Tensor] = OrderedDict()
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        for index in range(max(wanted, default=-1) + 1):
            module = self.features[index]
            x = torch.relu_(x) if isinstance(module, nn.ReLU) and index - 1 not in wanted else module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

    @property
    def default_layers(self) -> list[str]:
        """The taps a loss uses when none are named (:data:`DEFAULT_LAYERS`)."""
        return list(DEFAULT_LAYERS[self.backbone_id])

    def extra_repr(self) -> str:
        return f"backbone_id={self.backbone_id!r}, weights={self.weights_source!r}"


def trunk(name: str, weights: WeightsArg = None, seed: int = 0) -> Trunk:
    """A frozen VGG16, VGG19 or AlexNet trunk with named taps.

    Args:
        name: ``"vgg16"``, ``"vgg19"`` or ``"alexnet"``.
        weights: a file (torchvision's full state dict or its ``features.*`` part, loaded with
            ``weights_only=True``; see :func:`trunk_file`), ``"torchvision"`` (torchvision's ImageNet
            weights from its cache or a download), or ``None`` for a random initialisation with ``seed``.
        seed: seed of the random initialisation (torchvision's init; ignored when ``weights`` is given).

    Returns:
        A :class:`Trunk`.

    Raises:
        ValueError: unknown ``name``, or a file that is not a state dict of this network.
        FileNotFoundError: ``weights`` names no file.
        RuntimeError: ``"torchvision"`` weights not in torchvision's cache and not downloadable.

    Example:
        >>> vgg = trunk("vgg16", seed=0)
        >>> feats = vgg.extract(torch.rand(1, 3, 32, 32), ["relu1_2", "relu2_2"])
        >>> [tuple(f.shape) for f in feats.values()]
        [(1, 64, 32, 32), (1, 128, 16, 16)]
    """
    check_choice("name", name, TRUNK_NAMES)
    return _build(name, weights, seed, "weights")


def as_trunk(name: str, value: "Trunk | WeightsArg", argument: str = "trunk") -> Trunk:
    """``value`` if it is a :class:`Trunk` of ``name``, else :func:`trunk` with ``weights=value``, where
    ``None`` means the file :func:`trunk_file` finds (there is no silent random fallback).

    Raises:
        FileNotFoundError: ``value`` is ``None`` and ``CODECLOSS_TRUNKS`` names no file for ``name``.
        ValueError: a trunk of another network, or a file that does not fit (messages start with ``argument``).
    """
    if isinstance(value, Trunk):
        if value.backbone_id != name:
            raise ValueError(f"{argument}: got a trunk of {value.backbone_id}, expected one of {name}")
        return value
    if value is None:
        value = trunk_file(name)
        if value is None:
            raise FileNotFoundError(
                f"{argument}: no {name} trunk given and {TRUNKS_ENV} names no folder holding {name}_features.pth "
                f"(currently {os.environ.get(TRUNKS_ENV)!r}); pass {argument}=PATH"
            )
    return _build(name, value, 0, argument)


def _build(name: str, weights: WeightsArg, seed: int, argument: str) -> Trunk:
    features = _random_features(name, seed)
    if weights is None:
        source = f"random init (seed {seed})"
    elif isinstance(weights, str) and weights == "torchvision":
        state, source = _torchvision_state(name, argument)
        _load(name, features, state, f"torchvision's {name} weights", argument)
    else:
        path = os.fspath(weights)
        _load(name, features, _read_state(name, path, argument), repr(path), argument)
        source = path
    logger.info("%s trunk: %s", name, source)
    return Trunk(name, features, source)


def _random_features(name: str, seed: int) -> nn.Sequential:
    """torchvision's ``features`` of ``name`` with torchvision's initialisation, seeded, without the classifier."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name in _VGG_CONFIGS:
            from torchvision.models.vgg import cfgs, make_layers

            features = make_layers(cfgs[_VGG_CONFIGS[name]])
            for module in features.modules():  # torchvision's VGG initialisation
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(module.bias)
            return features
        with torch.device("meta"):  # skip allocating AlexNet's 59M-parameter classifier
            features = torchvision.models.alexnet(weights=None).features
        features = features.to_empty(device="cpu")
        for module in features:  # PyTorch's default initialisation, which torchvision's AlexNet keeps
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        return features


def _read_state(name: str, path: str, argument: str) -> dict[str, Tensor]:
    expected = f"expected torchvision's {name} state dict (full or features.*), saved with torch.save"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{argument}: no such file {path!r}; {expected}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, pickled objects: one line, the cause kept
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{argument}: cannot read {path!r} ({reason}); {expected}") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{argument}: {path!r} holds a {type(state).__name__} that is not a state dict of tensors; {expected}")
    return dict(state)


def _feature_keys(name: str) -> set[str]:
    """``features.*`` parameter names of torchvision's ``name``, without building it."""
    if name in _VGG_CONFIGS:
        from torchvision.models.vgg import cfgs

        convs, index = [], 0
        for layer in cfgs[_VGG_CONFIGS[name]]:
            if layer != "M":
                convs.append(index)
            index += 1 if layer == "M" else 2
    else:
        convs = list(_ALEXNET_CONVS)
    return {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}


def _load(name: str, features: nn.Sequential, state: Mapping[str, Tensor], what: str, argument: str) -> None:
    """Load the ``features.*`` entries of ``state`` into ``features``, strictly (key set and shapes)."""
    expected = f"expected torchvision's {name} state dict (full or features.*)"
    stray = sorted(k for k in state if not k.startswith(("features.", "classifier.")))
    if stray:
        raise ValueError(f"{argument}: {what} has keys that are not torchvision's ({stray[:3]}...); {expected}")
    got = {k: v for k, v in state.items() if k.startswith("features.")}
    if set(got) != _feature_keys(name):
        looks = [other for other in TRUNK_NAMES if set(got) == _feature_keys(other)]
        hint = f"it looks like {looks[0]}" if looks else f"missing {sorted(_feature_keys(name) - set(got))[:3]}"
        raise ValueError(f"{argument}: {what} does not hold {name}'s convolutions ({hint}); {expected}")
    for key, param in features.state_dict().items():
        value = got[f"features.{key}"]
        if value.shape != param.shape:
            raise ValueError(
                f"{argument}: {what} has features.{key} of shape {tuple(value.shape)}, expected {tuple(param.shape)}; {expected}"
            )
    features.load_state_dict({k[len("features."):]: v for k, v in got.items()}, strict=True)


def _torchvision_state(name: str, argument: str) -> tuple[dict[str, Tensor], str]:
    """torchvision's ImageNet state dict of ``name`` (its cache, else a download) and its description."""
    import torchvision

    from codecloss.weights.download import offline

    spec = getattr(torchvision.models, _TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / spec.url.rsplit("/", 1)[-1]
    if offline() and not cached.is_file():
        raise RuntimeError(
            f"{argument}: 'torchvision' needs {spec.url} but CODECLOSS_OFFLINE is set and it is not in {cached.parent}; "
            f"pass a file instead (e.g. $CODECLOSS_TRUNKS/{name}_features.pth)"
        )
    try:
        state = spec.get_state_dict(progress=False, check_hash=True)
    except OSError as err:
        raise RuntimeError(
            f"{argument}: could not get torchvision's {name} weights from {spec.url} ({err}); pass a file instead"
        ) from err
    return state, f"torchvision {spec} ({spec.url})"
