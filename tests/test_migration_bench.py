"""benchmarks/migration.py: measuring terms, matching codec weights to a VGG loss, and one tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def migration():
    spec = importlib.util.spec_from_file_location("migration_bench", ROOT / "benchmarks" / "migration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_measure_terms_known_gradients(migration):
    x, y = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    stats = migration.measure_terms(lambda p: {"a": F.mse_loss(p, y), "b": 3 * F.l1_loss(p, y)}, x)
    n = x.numel()
    # d mean((x-y)^2) = 2 (x-y) / n, each entry 2/n: norm 2/sqrt(n); d 3 mean|x-y| = -3 sign / n: norm 3/sqrt(n)
    assert stats["a"]["value"] == pytest.approx(1.0) and stats["a"]["grad_norm"] == pytest.approx(2 / n**0.5)
    assert stats["b"]["value"] == pytest.approx(3.0) and stats["b"]["grad_norm"] == pytest.approx(3 / n**0.5)
    assert stats["total"]["value"] == pytest.approx(4.0) and stats["total"]["grad_norm"] == pytest.approx(5 / n**0.5)
    grouped = migration.measure_terms(lambda p: {"a": F.mse_loss(p, y), "b": F.mse_loss(p, y)}, x, {"g": ["a", "b"]})
    assert set(grouped) == {"g", "total"} and grouped["g"] == grouped["total"]
    with pytest.raises(ValueError, match="unknown terms"):
        migration.measure_terms(lambda p: {"a": p.sum()}, x, {"g": ["nope"]})


def test_match_weights_and_rounding(migration):
    weights = migration.match_weights({"gdn1": {"grad_norm": 6.0}}, {"gdn1": {"grad_norm": 2.0}})
    assert weights == {"gdn1": 3.0}
    with pytest.raises(ValueError, match="zero gradient"):
        migration.match_weights({"y": {"grad_norm": 1.0}}, {"y": {"grad_norm": 0.0}})
    with pytest.raises(ValueError, match="no measurement"):
        migration.match_weights({"y": {"grad_norm": 1.0}}, {"gdn1": {"grad_norm": 1.0}})
    assert migration.round_sig(4.9149e12) == 4.91e12 and migration.round_sig(0.0012345) == 0.00123


def test_tiny_run_matches_gradient_norm(migration, tmp_path):
    out = tmp_path / "migration.json"
    argv = ["--out", str(out), "--cases", "esrgan", "--backbones", "codecloss-small-mse", "--size", "32",
            "--batch", "1", "--data", str(tmp_path / "no-data"), "--threads", "1"]
    report = migration.main(argv)
    assert json.loads(out.read_text()) == report
    assert report["settings"]["images"]["kodak"].startswith("synthetic texture")
    case = report["cases"]["esrgan"]
    codec = case["codec"]["codecloss-small-mse"]
    check = codec["check"][case["matched_at"]]
    assert check["grad_ratio"] == pytest.approx(1.0, abs=0.01)  # matched (weights rounded to 3 significant figures)
    assert check["value_ratio"] > 0 and set(codec["check"]) == {"bicubic_x4", "noise_0.05"}
    assert codec["snippet"] == (  # not the default backbone any more, so the snippet names it
        f"codecloss.CodecPerceptualLoss('codecloss-small-mse', layers={codec['weights_suggested']}, content='l1')")
    assert "| esrgan @ bicubic_x4 | codecloss-small-mse | l1: y x " in migration.format_tables(report)

    # the reference term is ESRGAN's: L1 between conv5_4 (before ReLU, features[34]) of ImageNet-normalised images
    assert report["settings"]["vgg_weights"]["vgg19"] == "random init (seed 0)"
    features = make_layers(cfgs["E"]).eval().requires_grad_(False)
    features.load_state_dict(migration.vgg_trunk("vgg19", None, 0)[0].features.state_dict())
    photos = migration.load_images(tmp_path / "no-data", 32, 1, 0).kodak
    pred, target = migration.bicubic_x4(photos), photos
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = F.l1_loss(features[:35]((pred - mean) / std), features[:35]((target - mean) / std))
    assert case["reference_stats"]["bicubic_x4"]["total"]["value"] == pytest.approx(float(expected), rel=1e-5)


def test_bad_arguments_exit_2(migration, tmp_path, capsys):
    for argv, message in (
        (["--vgg16-weights", str(tmp_path / "missing.pth")], "--vgg16-weights: no such file"),
        (["--size", "16"], "--size: got 16"),
        (["--backbones", "nope"], "unknown backbone 'nope'"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            migration.parse_args(["--out", str(tmp_path / "x.json"), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
