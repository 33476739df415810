"""codecloss: perceptual losses and metrics on the analysis transforms of learned image codecs.

Example:
    >>> import codecloss
    >>> loss_fn = codecloss.CodecPerceptualLoss(layers=["gdn1", "gdn2", "y"])  # doctest: +SKIP
"""

from codecloss.backbones import (
    DEFAULT_BACKBONE,
    BackboneSpec,
    from_compressai,
    get_backbone_spec,
    list_backbones,
    list_layers,
    load_backbone,
    load_codec,
)
from codecloss.features import FeatureExtractor, TapInfo
from codecloss.losses import CodecPerceptualLoss, content_loss, gram_matrix, normalize_channels, style_loss

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "CodecPerceptualLoss",
    "FeatureExtractor",
    "TapInfo",
    "content_loss",
    "from_compressai",
    "get_backbone_spec",
    "gram_matrix",
    "list_backbones",
    "list_layers",
    "load_backbone",
    "load_codec",
    "normalize_channels",
    "style_loss",
]
