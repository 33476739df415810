"""Head training (LPIPS lin recipe) on tiny synthetic BAPPS 2AFC data."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from codecloss.backbones import DEFAULT_BACKBONE
from codecloss.cli import main
from codecloss.cpips import CPIPS, load_head
from codecloss.train.heads import HeadTrainConfig, JudgeNet, train_heads
from test_evaluate import make_2afc

# judges agree with the noise: the small-noise patch is preferred; half the triplets are swapped
JUDGES = [0.0, 0.1, 0.0, 0.2, 1.0, 0.9, 1.0, 0.8, 0.0, 1.0, 0.1, 0.9]
SWAP = [j > 0.5 for j in JUDGES]


@pytest.fixture
def bapps_root(tmp_path):
    make_2afc(tmp_path / "bapps", "train", "traditional", JUDGES, swap=SWAP)
    return tmp_path / "bapps"


def _config(bapps_root, out, **overrides):
    settings = dict(bapps_root=str(bapps_root), out_dir=str(out), backbone=DEFAULT_BACKBONE, weights=None,
                    layers=["gdn1", "gdn2", "y"], epochs=4, decay_epochs=0, lr=3e-2, batch_size=6)
    settings.update(overrides)
    return HeadTrainConfig(**settings)


def test_lr_schedule_matches_lpips():
    config = HeadTrainConfig(bapps_root="x", out_dir="y", lr=1.0)
    assert [config.lr_at(e) for e in range(config.total_epochs)] == pytest.approx(
        [1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert HeadTrainConfig(bapps_root="x", out_dir="y", decay_epochs=0).lr_at(7) == pytest.approx(1e-4)


def test_config_validation():
    with pytest.raises(ValueError, match="epochs"):
        HeadTrainConfig(bapps_root="x", out_dir="y", epochs=0)
    with pytest.raises(ValueError, match="beta1"):
        HeadTrainConfig(bapps_root="x", out_dir="y", beta1=1.5)


def test_judge_net_shapes():
    net = JudgeNet(hidden=8)
    assert net(torch.rand(5), torch.rand(5)).shape == (5,)


def test_training_lowers_loss_keeps_lin_non_negative_and_writes_head(bapps_root, tmp_path):
    summary = train_heads(_config(bapps_root, tmp_path / "run"), progress=False)
    losses = [record["loss"] for record in summary["history"]]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    head = load_head(summary["head"])  # checks >= 0 and finite itself
    weights = torch.cat(list(head["lin"].values()))
    assert (weights >= 0).all()
    assert not torch.allclose(weights, torch.ones_like(weights))  # it did train
    assert head["backbone"] == DEFAULT_BACKBONE and head["layers"] == ["gdn1", "gdn2", "y"]
    data = (tmp_path / "run" / "head.pt").read_bytes()
    assert summary["sha256"] == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "run" / "head.pt.sha256").read_text() == f"{summary['sha256']}  head.pt\n"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    calibrated = CPIPS(DEFAULT_BACKBONE, weights=None, heads=summary["head"])
    assert calibrated.layers == ["gdn1", "gdn2", "y"]


def test_lin_weights_are_clamped_at_zero(bapps_root, tmp_path):
    # a huge learning rate drives weights through zero; the clamp must stop them there
    summary = train_heads(_config(bapps_root, tmp_path / "run", lr=1.0, epochs=2), progress=False)
    weights = torch.cat(list(torch.load(summary["head"], weights_only=True)["lin"].values()))
    assert (weights >= 0).all()
    assert (weights == 0).any()


def test_resume_continues_and_checks_settings(bapps_root, tmp_path):
    first = train_heads(_config(bapps_root, tmp_path / "run", epochs=1), progress=False)
    resumed = train_heads(_config(bapps_root, tmp_path / "run", epochs=2), resume=True, progress=False)
    assert len(resumed["history"]) == 2
    assert resumed["history"][0] == first["history"][0]
    with pytest.raises(ValueError, match="different settings"):
        train_heads(_config(bapps_root, tmp_path / "run", epochs=3, layers=["y"]), resume=True, progress=False)


def test_cli_train_cpips(bapps_root, tmp_path, capsys):
    code = main(["train-cpips", "--bapps", str(bapps_root), "--out", str(tmp_path / "cli"), "--weights", "none",
                 "--layers", "y", "--epochs", "1", "--decay-epochs", "1", "--batch-size", "4", "--json",
                 "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 2 and len(summary["history"]) == 2
    assert summary["history"][1]["lr"] == pytest.approx(1e-4)  # LPIPS: the first decay epoch still runs at lr
    assert load_head(summary["head"])["layers"] == ["y"]


def test_cli_train_cpips_missing_data_is_usage_error(tmp_path, capsys):
    assert main(["train-cpips", "--bapps", str(tmp_path), "--out", str(tmp_path / "o"), "--weights", "none"]) == 2
    assert "2afc" in capsys.readouterr().err
