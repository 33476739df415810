"""Reference recovery (blind-spot check): MSE recovers, a blind metric does not, fields, CLI and argument errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codecloss.backbones import DEFAULT_BACKBONE
from codecloss.cli import main
from codecloss.evaluate import recovery
from codecloss.evaluate.scorers import Scorer, Skipped

CPIPS_RANDOM = {"name": "CPIPS", "backbone": DEFAULT_BACKBONE, "weights": None}


@pytest.fixture(autouse=True)
def _one_thread():
    """Keep the CPU use small (a training job may run beside the tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smooth_pattern(size: int = 48, phase: float = 0.0) -> torch.Tensor:
    """A smooth (3, size, size) image in [0.1, 0.9]: a different sinusoid per channel."""
    t = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    channels = [torch.sin(2 * math.pi * (xx + phase)), torch.cos(2 * math.pi * yy), torch.sin(2 * math.pi * (xx + yy))]
    return torch.stack(channels).mul(0.4).add(0.5)


def mean_only(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A metric blind to everything but each image's mean colour."""
    return (x.mean(dim=(2, 3)) - y.mean(dim=(2, 3))).pow(2).sum(dim=1)


def save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()).save(path)


@pytest.mark.parametrize("init", recovery.DEFAULT_INITS)
def test_mse_recovers_the_reference(init):
    reference = torch.stack([smooth_pattern(), smooth_pattern(phase=0.25)])
    result = recovery.recover(reference, recovery.mse_scorer(), init, steps=150, lr=0.05)
    assert min(result.psnr) > 35
    assert min(result.ssim) > 0.99
    assert min(result.psnr) > max(result.psnr_start) + 10  # the start was far away


def test_result_fields_and_determinism():
    reference = smooth_pattern(32)
    result = recovery.recover(reference, recovery.mse_scorer(), "noisy", steps=20, lr=0.01, seed=3)
    assert result.image.shape == (1, 3, 32, 32)
    assert float(result.image.min()) >= 0 and float(result.image.max()) <= 1
    fields = result.to_dict()
    assert set(fields) == {"psnr", "ssim", "psnr_start", "ssim_start", "distance_start", "distance_final"}
    assert all(isinstance(v, list) and len(v) == 1 for v in fields.values())
    assert result.distance_final[0] < result.distance_start[0]
    assert result.psnr[0] > result.psnr_start[0]
    again = recovery.recover(reference, recovery.mse_scorer(), "noisy", steps=20, lr=0.01, seed=3)
    assert again.to_dict() == fields and torch.equal(again.image, result.image)
    other = recovery.recover(reference, recovery.mse_scorer(), "noisy", steps=20, lr=0.01, seed=4)
    assert other.psnr_start != result.psnr_start


def test_blind_metric_does_not_recover():
    reference = smooth_pattern()
    blind = Scorer("mean only", mean_only)
    result = recovery.recover(reference, blind, "uniform", steps=150, lr=0.05)
    assert result.distance_final[0] < 1e-3 * result.distance_start[0]  # it minimised its own distance...
    assert result.psnr[0] < 15 and result.ssim[0] < 0.2  # ...without getting close to the reference
    frozen = Scorer("constant", lambda x, y: 0.0 * x.sum(dim=(1, 2, 3)))
    stuck = recovery.recover(reference, frozen, "uniform", steps=10)
    assert stuck.psnr == stuck.psnr_start


def test_similarity_scorer_is_maximised():
    reference = smooth_pattern(32)
    negative_mse = Scorer("-MSE", lambda x, y: -(x - y).pow(2).mean(dim=(1, 2, 3)), higher_is_better=True)
    result = recovery.recover(reference, negative_mse, "blur", steps=100, lr=0.05)
    assert result.psnr[0] > 35


def test_argument_errors():
    reference = smooth_pattern(32)
    mse = recovery.mse_scorer()
    with pytest.raises(ValueError, match="steps"):
        recovery.recover(reference, mse, steps=0)
    with pytest.raises(ValueError, match="steps"):
        recovery.recover(reference, mse, steps=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init"):
        recovery.recover(reference, mse, init="swirl")
    with pytest.raises(ValueError, match="lr"):
        recovery.recover(reference, mse, lr=0)
    with pytest.raises(ValueError, match="no gradient"):
        recovery.recover(reference, Scorer("detached", lambda x, y: torch.zeros(x.shape[0])), steps=1)
    with pytest.raises(TypeError, match="scorer"):
        recovery.recover(reference, mean_only)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init"):
        recovery.evaluate_recovery("unused", [mse], inits=["uniform", "swirl"])
    with pytest.raises(ValueError, match="crop"):
        recovery.evaluate_recovery("unused", [mse], crop=0)


def test_recovery_scorers_share_the_cpips_encoder():
    scorers = recovery.recovery_scorers([CPIPS_RANDOM])
    assert [s.name for s in scorers] == ["CPIPS", "MSE", "feature L2", "LPIPS-Alex", "LPIPS-VGG", "DISTS"]
    assert all(isinstance(s, Skipped) for s in scorers[3:])  # no trunk folder (conftest clears CODECLOSS_TRUNKS)
    cpips, feature_l2 = scorers[0].fn, scorers[2].fn
    assert feature_l2.extractor is cpips.extractor and list(feature_l2.layer_weights) == cpips.layers
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert scorers[2].distance(x, y).shape == (2,)
    assert [s.name for s in recovery.recovery_scorers([CPIPS_RANDOM], baselines=False)] == ["CPIPS"]


@pytest.mark.data
def test_lpips_recovery_with_real_trunks(shared_data, tmp_path):
    save_png(tmp_path / "refs" / "0.png", smooth_pattern(40, phase=0.0))
    scorers = recovery.recovery_scorers([], trunks=shared_data / "reference" / "imagenet_features")
    lpips_alex = {s.name: s for s in scorers}["LPIPS-Alex"]
    (table,) = recovery.evaluate_recovery(tmp_path / "refs", [lpips_alex], crop=None, inits=["noisy"], steps=5, lr=0.01)
    row = {r.name: r for r in table.rows}["LPIPS-Alex"]
    assert row.values["d_K"] < row.values["d_0"]


def test_evaluate_recovery_tables(tmp_path):
    for i in range(2):
        save_png(tmp_path / "refs" / f"{i}.png", smooth_pattern(40, phase=0.3 * i))
    scorers = [recovery.mse_scorer(), Scorer("mean only", mean_only), Skipped("LPIPS", "weights not available")]
    tables = recovery.evaluate_recovery(tmp_path / "refs", scorers, images=None, crop=32, inits=["uniform", "blur"],
                                        steps=100, lr=0.05, save_dir=tmp_path / "out", progress=False)
    assert [t.meta["init"] for t in tables] == ["uniform", "blur"]
    for table in tables:
        assert table.columns == recovery.COLUMNS
        rows = {r.name: r for r in table.rows}
        assert list(rows) == ["x_0 (start)", "MSE", "mean only", "LPIPS"]
        assert rows["MSE"].values["PSNR"] > 35 and rows["MSE"].values["log10(d_K/d_0)"] < -3
        assert rows["x_0 (start)"].values.get("d_0") is None
        assert rows["LPIPS"].note == "skipped: weights not available"
        assert len(table.meta["per_image"]["MSE"]["psnr"]) == 2
        assert "MSE" in table.format()
    assert next(r for r in tables[0].rows if r.name == "mean only").values["PSNR"] < 15
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out" / "uniform").rglob("*.png")) \
        == ["uniform/MSE/0.png", "uniform/MSE/1.png", "uniform/mean_only/0.png", "uniform/mean_only/1.png",
            "uniform/x_0/0.png", "uniform/x_0/1.png"]
    save_png(tmp_path / "refs" / "2.png", smooth_pattern(48))
    with pytest.raises(ValueError, match="crop"):
        recovery.evaluate_recovery(tmp_path / "refs", scorers, images=None, crop=None, steps=1)
    with pytest.raises(FileNotFoundError, match="root"):
        recovery.evaluate_recovery(tmp_path / "out", scorers, steps=1)


def test_cli_eval_recovery_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(2):
        coarse = torch.tensor(rng.random((3, 4, 4)), dtype=torch.float32)
        save_png(tmp_path / "refs" / f"img{i}.png", torch.kron(coarse, torch.ones(1, 8, 8)) * 0.6 + 0.2)
    code = main(["eval", "recovery", "--root", str(tmp_path / "refs"), "--images", "2", "--crop", "0",
                 "--steps", "5", "--init", "uniform", "blur", "--weights", "none", "--json", "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["weights"] == [None]
    assert [t["meta"]["init"] for t in out["tables"]] == ["uniform", "blur"]
    table = out["tables"][0]
    assert table["columns"] == recovery.COLUMNS
    assert [r["metric"] for r in table["rows"]] == ["x_0 (start)", "CPIPS", "MSE", "feature L2", "LPIPS-Alex",
                                                    "LPIPS-VGG", "DISTS"]
    assert table["meta"]["images"] == ["img0.png", "img1.png"] and table["meta"]["steps"] == 5
    assert all(isinstance(r["values"]["PSNR"], float) for r in table["rows"][:4])
    assert all(r["note"].startswith("skipped: no ImageNet") for r in table["rows"][4:])  # no trunks here

    assert main(["eval", "recovery", "--root", str(tmp_path / "refs"), "--crop", "0", "--steps", "0",
                 "--weights", "none", "--no-baselines"]) == 2
    assert "steps" in capsys.readouterr().err
    assert main(["eval", "recovery", "--root", str(tmp_path / "refs"), "--crop", "0", "--init", "swirl",
                 "--weights", "none", "--no-baselines"]) == 2
    assert "init" in capsys.readouterr().err
