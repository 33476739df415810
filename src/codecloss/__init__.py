"""codecloss: perceptual losses and metrics on the analysis transforms of learned image codecs.

Example:
    >>> import codecloss
    >>> loss_fn = codecloss.CodecPerceptualLoss(layers=["gdn1", "gdn2", "y"])  # doctest: +SKIP
    >>> d = codecloss.metric(x, y)  # doctest: +SKIP
"""

import warnings

with warnings.catch_warnings():  # compressai 1.2.x scripts a helper with the deprecated torch.jit.script
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import compressai  # noqa: F401

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
from codecloss.cpips import CPIPS, metric
from codecloss.features import FeatureExtractor, TapInfo
from codecloss.losses import CodecPerceptualLoss, content_loss, gram_matrix, normalize_channels, style_loss
from codecloss.weights import (
    WeightsError,
    WeightSpec,
    get_weight_spec,
    get_weights_file,
    import_weights,
    list_weights,
    register_weights,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BACKBONE",
    "CPIPS",
    "BackboneSpec",
    "CodecPerceptualLoss",
    "FeatureExtractor",
    "TapInfo",
    "WeightSpec",
    "WeightsError",
    "content_loss",
    "from_compressai",
    "get_backbone_spec",
    "get_weight_spec",
    "get_weights_file",
    "gram_matrix",
    "import_weights",
    "list_backbones",
    "list_layers",
    "list_weights",
    "load_backbone",
    "load_codec",
    "metric",
    "normalize_channels",
    "register_weights",
    "style_loss",
]
