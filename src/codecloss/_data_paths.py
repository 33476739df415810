"""Default locations of the project's shared data, relative to a checkout's root (``../shared/data``).

Only defaults of the command line and the benchmark drivers: every library function takes its folders as
arguments. Importing this module imports nothing heavy.
"""

from __future__ import annotations

__all__ = ["NATURAL_TRAIN_DIRS", "NATURAL_VAL_DIR", "STYLE_DIR", "CONTENT_DIR"]

#: Training photos (BSDS500 train and test, Sun-Hays80); never evaluation or style images.
NATURAL_TRAIN_DIRS = (
    "../shared/data/natural/bsds500/train",
    "../shared/data/natural/bsds500/test",
    "../shared/data/natural/sun_hays80",
)
#: BSDS500 val (BSD100): held out from training, used for validation.
NATURAL_VAL_DIR = "../shared/data/natural/bsds500/val"
#: Style images and the content photos the stylizers are judged on.
STYLE_DIR = "../shared/data/style/style"
CONTENT_DIR = "../shared/data/style/content"
