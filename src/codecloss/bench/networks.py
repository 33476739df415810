"""Networks the benchmark compares, all randomly initialised (speed does not depend on weight values).

Every network is a loss ``fn(x, y) -> scalar`` on images in [0, 1]:

* codec backbones (any id of :func:`codecloss.list_backbones`): :class:`~codecloss.CodecPerceptualLoss`
  with the backbone's default taps, or with the taps named after a colon (``ID:TAP,TAP,...``, e.g.
  ``bmshj2018-hyperprior-mse-q3:gdn1,gdn2,gdn3,y,h1,h2`` to include a hyperprior's ``h_a`` taps);
* ``vgg16-lpips``, ``vgg19-gatys``, ``alexnet-lpips``: the :func:`codecloss.reference.trunk` networks
  (random init) run to their deepest tap through the *same* loss code as the codecs
  (:class:`~codecloss.CodecPerceptualLoss`), so only the feature network differs;
* ``piq-lpips``, ``piq-dists``, ``piq-content``, ``piq-style``: piq's own modules, built without
  downloading (see :func:`_piq_offline`);
* ``lpips-vgg``, ``lpips-alex``: the ``lpips`` package (when installed) with ``pretrained=False,
  pnet_rand=True``;
* ``compressai-plain``: CompressAI's own ``g_a`` of ``bmshj2018-hyperprior-mse-q3`` tapped with
  forward hooks, i.e. the codec loss without codecloss's feature path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence
from unittest import mock

import torch
from torch import Tensor, nn

from codecloss.backbones import DEFAULT_BACKBONE, get_backbone_spec, list_backbones, load_backbone
from codecloss.losses import CodecPerceptualLoss, content_loss

__all__ = [
    "BASELINE",
    "BenchNetwork",
    "NetworkUnavailable",
    "REFERENCE_NETWORKS",
    "build_network",
    "default_networks",
    "is_codec",
    "list_networks",
]

#: Network every result's speed-up is measured against.
BASELINE = "vgg16-lpips"

LossFn = Callable[[Tensor, Tensor], Tensor]

_VGG19_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
_VGG19_CONTENT = ("relu4_2",)
#: Codec whose plain CompressAI ``g_a`` is measured as ``compressai-plain`` (the issue's reference setting).
_PLAIN_BACKBONE = "bmshj2018-hyperprior-mse-q3"


class NetworkUnavailable(RuntimeError):
    """A network cannot be built here (e.g. its optional package is not installed)."""


@dataclass
class BenchNetwork:
    """One benchmarked network.

    Attributes:
        name: network name as given to :func:`build_network`.
        kind: ``"codec"``, ``"torchvision"``, ``"piq"`` or ``"lpips"``.
        taps: human-readable description of the taps used.
        module: the module holding all parameters (moved to the device / memory format by the runner).
        content: loss ``fn(x, y)`` for the ``forward`` and ``forward_backward`` modes.
        style: content + Gram style loss for the ``content_style`` mode, ``None`` when not applicable.
        note: caveats shown in reports (e.g. internal resizing).
    """

    name: str
    kind: str
    taps: str
    module: nn.Module
    content: LossFn
    style: LossFn | None
    note: str = ""

    @property
    def params(self) -> int:
        """Number of parameters of the whole network (frozen or not)."""
        return sum(p.numel() for p in self.module.parameters())


def _tapped_network(name: str, arch: str, content: Sequence[str] | None = None,
                    style: Sequence[str] | None = None) -> BenchNetwork:
    """A :func:`codecloss.reference.trunk` at random init, through codecloss's own loss code.

    ``content`` and ``style`` default to the trunk's :attr:`~codecloss.reference.Trunk.default_layers`.
    """
    from codecloss.reference import trunk

    extractor = trunk(arch, weights=None)
    content = list(content or extractor.default_layers)
    style = list(style or content)
    content_loss_fn = CodecPerceptualLoss(extractor, layers=list(dict.fromkeys([*content, *style])))
    style_loss_fn = CodecPerceptualLoss(extractor, layers=content, style_layers=style, style_weight=1.0)
    labels = ", ".join(content) if content == style else f"content {', '.join(content)}; style {', '.join(style)}"
    return BenchNetwork(name, "torchvision", labels, extractor, content_loss_fn, style_loss_fn)


def _codec(name: str) -> BenchNetwork:
    backbone, _, taps = name.partition(":")
    layers = taps.split(",") if taps else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # weights=None warns; the report says weights are random
        extractor = load_backbone(backbone, weights=None)
    content = CodecPerceptualLoss(extractor, layers=layers)
    style = CodecPerceptualLoss(extractor, layers=layers, style_weight=1.0)
    return BenchNetwork(name, "codec", ", ".join(content.layer_weights), extractor, content, style)


class _PlainCompressAILoss(nn.Module):
    """The same content loss on CompressAI's own, unmodified ``g_a``, tapped with forward hooks.

    This is what a user gets without codecloss's feature path: CompressAI's GDN recomputes its
    reparametrised beta/gamma on every call and the whole ``g_a`` always runs. Measured beside the
    codecloss backbone of the same id, it shows what that path saves.
    """

    def __init__(self, backbone: str) -> None:
        super().__init__()
        from compressai.layers import GDN

        self.g_a = get_backbone_spec(backbone).build_codec().g_a
        self._features: list[Tensor] = []
        for module in self.g_a:
            if isinstance(module, GDN):
                module.register_forward_hook(lambda _m, _i, out: self._features.append(out))

    def _taps(self, x: Tensor) -> list[Tensor]:
        self._features = []
        y = self.g_a(x)
        return [*self._features, y]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return sum(content_loss(fx, fy).mean() for fx, fy in zip(self._taps(x), self._taps(y)))


def _plain_compressai(name: str) -> BenchNetwork:
    module = _PlainCompressAILoss(_PLAIN_BACKBONE)
    note = f"CompressAI's own g_a of {_PLAIN_BACKBONE} with forward hooks (no codecloss feature path)"
    return BenchNetwork(name, "compressai", "gdn1, gdn2, gdn3, y", module, module, None, note)


def _random_vgg16(*_args: object, **_kwargs: object) -> nn.Module:
    import torchvision

    return torchvision.models.vgg16(weights=None)


@contextlib.contextmanager
def _piq_offline(state: object) -> Iterator[None]:
    """Run piq's own ``__init__`` with a random VGG16 and ``state`` instead of downloaded weights.

    piq's LPIPS/DISTS call ``torch.hub.load_state_dict_from_url`` and ``vgg16(pretrained=True)``
    in ``__init__``; both are patched here, so the real piq classes and forward code are measured.
    """
    import piq.perceptual

    with mock.patch.object(piq.perceptual, "vgg16", _random_vgg16), mock.patch.object(
        torch.hub, "load_state_dict_from_url", lambda *_a, **_k: state
    ):
        yield


def _piq(name: str) -> BenchNetwork:
    import piq

    vgg_channels = [64, 128, 256, 512, 512]
    if name == "piq-lpips":
        with _piq_offline([torch.rand(1, c, 1, 1) for c in vgg_channels]):
            module: nn.Module = piq.LPIPS()
        return BenchNetwork(name, "piq", "relu1_2 ... relu5_3 (runs all of vgg16.features)", module, module, None)
    if name == "piq-dists":
        total = 3 + sum(vgg_channels)
        with _piq_offline({"alpha": torch.rand(1, total, 1, 1), "beta": torch.rand(1, total, 1, 1)}):
            module = piq.DISTS()
        note = "resizes inputs larger than 256 px down to 256 px (piq behaviour)"
        return BenchNetwork(name, "piq", "input + relu1_2 ... relu5_3 (all of vgg16.features)", module, module, None, note)
    loss_class = {"piq-content": piq.ContentLoss, "piq-style": piq.StyleLoss}[name]
    # piq's default layer relu3_3 is module '15'; with a module given, piq takes layer names literally.
    module = loss_class(feature_extractor=_random_vgg16().features, layers=("15",))
    return BenchNetwork(name, "piq", "relu3_3 (piq default; runs all of vgg16.features)", module, module, None)


class _LpipsLoss(nn.Module):
    """``lpips.LPIPS`` on [0, 1] inputs, averaged over the batch."""

    def __init__(self, net: str) -> None:
        super().__init__()
        if importlib.util.find_spec("lpips") is None:
            raise NetworkUnavailable("the lpips package is not installed (pip install lpips)")
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's 'pretrained' deprecation
            self.inner = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
        self.inner.requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.inner(x, y, normalize=True).mean()


def _lpips(name: str) -> BenchNetwork:
    module = _LpipsLoss(name.split("-", 1)[1])
    return BenchNetwork(name, "lpips", "5 ReLU taps (lpips package)", module, module, None)


#: Non-codec networks: name -> builder.
REFERENCE_NETWORKS: dict[str, Callable[[], BenchNetwork]] = {
    "vgg16-lpips": lambda: _tapped_network("vgg16-lpips", "vgg16"),
    "vgg19-gatys": lambda: _tapped_network("vgg19-gatys", "vgg19", _VGG19_CONTENT, _VGG19_STYLE),
    "alexnet-lpips": lambda: _tapped_network("alexnet-lpips", "alexnet"),
    "piq-lpips": lambda: _piq("piq-lpips"),
    "piq-dists": lambda: _piq("piq-dists"),
    "piq-content": lambda: _piq("piq-content"),
    "piq-style": lambda: _piq("piq-style"),
    "lpips-vgg": lambda: _lpips("lpips-vgg"),
    "lpips-alex": lambda: _lpips("lpips-alex"),
    "compressai-plain": lambda: _plain_compressai("compressai-plain"),
}


def is_codec(name: str) -> bool:
    """Whether ``name`` is a codec backbone id, optionally with ``:TAP,TAP,...`` (not a reference network)."""
    backbone, colon, taps = name.partition(":")
    return backbone in list_backbones() and (not colon or all(taps.split(",")))


def list_networks() -> list[str]:
    """Every network name :func:`build_network` accepts: codec backbone ids, then the reference networks."""
    return [*list_backbones(), *REFERENCE_NETWORKS]


def default_networks() -> list[str]:
    """Networks measured when none are chosen: the default and one zoo codec, then every reference."""
    return [DEFAULT_BACKBONE, "bmshj2018-hyperprior-mse-q3", *REFERENCE_NETWORKS]


def check_networks(names: Sequence[str]) -> list[str]:
    """Validate network names; raises ``ValueError`` listing the valid ones."""
    unknown = [name for name in names if not is_codec(name) and name not in REFERENCE_NETWORKS]
    if unknown:
        raise ValueError(f"networks: unknown {unknown}; expected codec backbone ids (optionally ID:TAP,TAP,...) "
                         f"or one of {list(REFERENCE_NETWORKS)}")
    return list(names)


def build_network(name: str) -> BenchNetwork:
    """Build one network, randomly initialised, on CPU in float32, without any download.

    Args:
        name: a codec backbone id (``ID:TAP,TAP,...`` for other taps than its defaults) or one of
            :data:`REFERENCE_NETWORKS`.

    Returns:
        The :class:`BenchNetwork`.

    Raises:
        ValueError: unknown name.
        NetworkUnavailable: an optional package is missing.

    Example:
        >>> net = build_network("alexnet-lpips")
        >>> net.taps
        'relu1, relu2, relu3, relu4, relu5'
    """
    check_networks([name])
    network = _codec(name) if is_codec(name) else REFERENCE_NETWORKS[name]()
    network.module.requires_grad_(False).eval()
    return network
