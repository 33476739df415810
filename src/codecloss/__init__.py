"""codecloss: perceptual losses and metrics on the analysis transforms of learned image codecs.

The public names are loaded on first use, so that ``import codecloss`` (and ``codecloss --help``) does not
import torch and compressai.

Example:
    >>> import codecloss
    >>> loss_fn = codecloss.CodecPerceptualLoss(layers=["gdn1", "gdn2", "y"])  # doctest: +SKIP
    >>> d = codecloss.metric(x, y)  # doctest: +SKIP
"""

from __future__ import annotations

from codecloss._lazy import lazy_exports, quiet_compressai_import

__version__ = "0.1.0"

#: Public name -> submodule of :mod:`codecloss` that defines it.
_EXPORTS: dict[str, str] = {
    "AESOPLoss": "tasks.sr_losses",
    "DEFAULT_BACKBONE": "_default",
    "CPIPS": "cpips",
    "BackboneSpec": "backbones",
    "CodecPerceptualLoss": "losses",
    "FeatureExtractor": "features",
    "TapInfo": "features",
    "WeightSpec": "weights",
    "WeightsError": "weights",
    "content_loss": "losses",
    "from_compressai": "backbones",
    "get_backbone_spec": "backbones",
    "get_weight_spec": "weights",
    "get_weights_file": "weights",
    "gram_matrix": "losses",
    "import_weights": "weights",
    "list_backbones": "backbones",
    "list_layers": "backbones",
    "list_weights": "weights",
    "load_backbone": "backbones",
    "load_codec": "backbones",
    "metric": "cpips",
    "normalize_channels": "losses",
    "register_weights": "weights",
    "style_loss": "losses",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
quiet_compressai_import()
