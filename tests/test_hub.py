"""hubconf.py: torch.hub entry points loaded from this checkout."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

import codecloss

ROOT = Path(__file__).resolve().parents[1]


def test_hub_cpips_equals_codecloss_metric():
    path = list(sys.path)
    model = torch.hub.load(str(ROOT), "cpips", source="local")
    assert sys.path == path
    assert isinstance(model, codecloss.CPIPS)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x, y), codecloss.metric(x, y), rtol=1e-4, atol=0)


def test_hub_passes_arguments_on():
    spatial = torch.hub.load(str(ROOT), "cpips", "codecloss-small-mse", source="local", spatial=True, layers=["gdn1"])
    assert spatial.layers == ["gdn1"]
    assert spatial(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    loss_fn = torch.hub.load(str(ROOT), "codec_perceptual_loss", source="local", layers={"gdn1": 1.0, "y": 0.5})
    assert isinstance(loss_fn, codecloss.CodecPerceptualLoss) and loss_fn.layer_weights == {"gdn1": 1.0, "y": 0.5}


def test_hub_load_codec_compresses():
    codec = torch.hub.load(str(ROOT), "load_codec", source="local")
    out = codec.compress(torch.rand(1, 3, 64, 64))
    assert set(out) == {"strings", "shape"}


def test_hubconf_entry_points_and_dependencies():
    spec = importlib.util.spec_from_file_location("codecloss_hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert hubconf.dependencies == ["torch", "compressai"]
    for name in ("cpips", "codec_perceptual_loss", "load_codec"):  # torch.hub.list reads GitHub repositories only
        entry = getattr(hubconf, name)
        assert callable(entry) and entry.__doc__
