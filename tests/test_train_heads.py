"""Head training (LPIPS lin recipe) on tiny synthetic BAPPS 2AFC data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from codecloss import reference
from codecloss.backbones import DEFAULT_BACKBONE
from codecloss.cli import main
from codecloss.cpips import CPIPS, load_head
from codecloss.train.data import ImageBank
from codecloss.train.heads import HeadTrainConfig, JudgeNet, train_heads
from codecloss.train.triplets import (
    DISTORTION_KINDS, TripletDataset, apply_distortion, make_triplets, read_triplets, soft_labels, teacher_distances,
)
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


# --- distillation: triplets from natural crops labelled by a teacher ------------------------------------------

@pytest.fixture
def bank():
    generator = torch.Generator().manual_seed(3)
    return ImageBank([torch.randint(0, 256, (3, 48, 56), dtype=torch.uint8, generator=generator) for _ in range(3)])


@pytest.fixture(scope="module")
def trunks_dir(tmp_path_factory):
    """A trunk folder holding a random-init vgg16_features.pth (a stand-in for the ImageNet file)."""
    folder = tmp_path_factory.mktemp("trunks")
    state = {f"features.{k}": v for k, v in reference.trunk("vgg16", weights=None).features.state_dict().items()}
    torch.save(state, folder / "vgg16_features.pth")
    return folder


def _halve(x):
    return x * 0.5


@pytest.mark.parametrize("kind", list(DISTORTION_KINDS))
def test_every_distortion_keeps_shape_and_range_and_changes_the_image(kind):
    image = torch.rand(3, 32, 40, generator=torch.Generator().manual_seed(0))
    low, high = DISTORTION_KINDS[kind]
    strength = high if kind != "jpeg" else low
    out = apply_distortion(image, kind, strength, torch.Generator().manual_seed(1), codec=_halve)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert (out - image).abs().mean() > 1e-3


def test_codec_distortion_needs_a_codec_and_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="^codec:"):
        apply_distortion(torch.rand(3, 8, 8), "codec", 1.0, torch.Generator())
    with pytest.raises(ValueError, match="^kind:"):
        apply_distortion(torch.rand(3, 8, 8), "sharpen", 1.0, torch.Generator())
    with pytest.raises(ValueError, match="^kinds:"):
        make_triplets(ImageBank([torch.zeros(3, 8, 8, dtype=torch.uint8)]), 1, crop=8, kinds=["sharpen"])


def test_triplets_are_deterministic_for_a_seed(bank):
    first = make_triplets(bank, 6, crop=32, kinds=list(DISTORTION_KINDS), seed=5, combine=0.5, codec=_halve)
    again = make_triplets(bank, 6, crop=32, kinds=list(DISTORTION_KINDS), seed=5, combine=0.5, codec=_halve)
    other = make_triplets(bank, 6, crop=32, kinds=list(DISTORTION_KINDS), seed=6, combine=0.5, codec=_halve)
    for key in ("ref", "p0", "p1"):
        assert first[key].shape == (6, 3, 32, 32) and first[key].dtype == torch.uint8
        assert torch.equal(first[key], again[key])
        assert not torch.equal(first[key], other[key])
    assert first["kinds0"] == again["kinds0"] and first["kinds1"] == again["kinds1"]
    assert any("+" in name for name in first["kinds0"] + first["kinds1"])  # combinations of two occur
    assert not torch.equal(first["p0"], first["ref"])


def test_soft_labels_come_from_the_teacher(bank, trunks_dir):
    triplets = make_triplets(bank, 5, crop=32, seed=0)
    teacher = reference.lpips("vgg", trunk=trunks_dir / "vgg16_features.pth")
    labels = soft_labels(teacher, triplets, temperature=0.2, batch_size=2)
    d0, d1 = teacher_distances(teacher, triplets)
    assert torch.allclose(labels, torch.sigmoid((d0 - d1) / (0.2 * (d0 + d1))).float())
    assert ((labels > 0.5) == (d1 < d0)).all()
    swapped = {**triplets, "p0": triplets["p1"], "p1": triplets["p0"]}
    assert torch.allclose(soft_labels(teacher, swapped, temperature=0.2), 1 - labels, atol=1e-6)
    # a different teacher (here: mean absolute error) gives its own labels
    l1 = soft_labels(lambda x, y: (x - y).abs().mean(dim=(1, 2, 3)), triplets, temperature=0.2)
    assert not torch.allclose(l1, labels)
    with pytest.raises(ValueError, match="^temperature:"):
        soft_labels(teacher, triplets, temperature=0)


def test_triplet_dataset_feeds_the_training_loop(bank):
    triplets = make_triplets(bank, 3, crop=32)
    triplets["judge"] = torch.tensor([0.1, 0.5, 0.9])
    item = TripletDataset(triplets)[2]
    assert item["ref"].dtype == torch.float32 and 0 <= item["p0"].min() and item["p1"].max() <= 1
    assert float(item["judge"]) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="^triplets:"):
        TripletDataset({**triplets, "judge": torch.zeros(2)})


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def _distill_args(photo_dir, trunks_dir, out, *extra):
    return ["train-cpips", "--distill", "lpips-vgg", "--trunks", str(trunks_dir), "--data-dirs", str(photo_dir),
            "--out", str(out), "--weights", "none", "--layers", "gdn1", "y", "--triplets", "8", "--crop", "32",
            "--batch-size", "4", "--epochs", "1", "--decay-epochs", "0", "--json", "--no-progress", *extra]


def test_cli_distill_trains_two_steps_and_writes_a_head(photo_dir, trunks_dir, tmp_path, capsys, one_thread):
    assert main(_distill_args(photo_dir, trunks_dir, tmp_path / "run")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["history"][0]["triplets"] == 8  # 2 steps of 4
    head = load_head(summary["head"])
    assert head["layers"] == ["gdn1", "y"] and "distilled" in head["meta"]["data"]
    triplets = read_triplets(tmp_path / "run" / "triplets.pt")
    assert triplets["settings"]["teacher"] == "lpips-vgg" and triplets["ref"].shape == (8, 3, 32, 32)
    assert ((triplets["judge"] > 0) & (triplets["judge"] < 1)).all()
    # resuming reuses the triplets; other triplet settings for the same output are refused in one line
    assert main(_distill_args(photo_dir, trunks_dir, tmp_path / "run", "--resume", "--epochs", "2")) == 0
    capsys.readouterr()
    assert main(_distill_args(photo_dir, trunks_dir, tmp_path / "run", "--seed", "1")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "triplets:" in err and "made with" in err


@pytest.mark.parametrize("argv, message", [
    (["--distill", "lpips-alex"], "judge"),
    (["--distill", "lpips-vgg", "--bapps", "x"], "exactly one"),
    ([], "exactly one"),
    (["--distill", "dists"], "expected one of"),
])
def test_cli_distill_usage_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main(["train-cpips", "--out", str(tmp_path / "o"), "--weights", "none", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "o" / "triplets.pt").exists()


def test_config_needs_exactly_one_data_source():
    with pytest.raises(ValueError, match="^bapps_root, triplets"):
        HeadTrainConfig(bapps_root="x", out_dir="y", triplets="t.pt")
    with pytest.raises(ValueError, match="^bapps_root, triplets"):
        HeadTrainConfig(bapps_root=None, out_dir="y")


def test_twoafc_agreement_counts_same_choices_and_half_for_ties():
    from codecloss.evaluate.distill import twoafc_agreement

    d0, d1 = torch.tensor([1.0, 2.0, 1.0, 3.0]), torch.tensor([2.0, 1.0, 1.0, 1.0])
    judge0, judge1 = torch.tensor([1.0, 1.0, 5.0, 2.0]), torch.tensor([2.0, 2.0, 1.0, 2.0])
    assert twoafc_agreement(d0, d1, judge0, judge1) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert twoafc_agreement(d0, d1, d0, d1) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_evaluate_distilled_heads_on_tiny_folders(photo_dir, trunks_dir, tmp_path, one_thread):
    from codecloss.evaluate.distill import evaluate_distilled_heads

    alexnet = {f"features.{k}": v for k, v in reference.trunk("alexnet", weights=None).features.state_dict().items()}
    torch.save(alexnet, tmp_path / "alexnet_features.pth")
    torch.save(torch.load(trunks_dir / "vgg16_features.pth", weights_only=True), tmp_path / "vgg16_features.pth")
    result = evaluate_distilled_heads({"uniform": "uniform"}, photo_dir, tmp_path, count=3, crop=32,
                                      held_out_kinds=["warp"], seen_kinds=["noise"], codec=None,
                                      weights=None, layers=["y"])
    held_out = result["sets"]["kodak_held_out_kinds"]
    assert held_out["kinds"] == ["warp"] and held_out["count"] == 3
    assert set(held_out["agreement"]["uniform"]) == {"LPIPS-Alex", "DISTS", "LPIPS-VGG"}
    assert set(held_out["agreement"]["LPIPS-VGG"]) == {"LPIPS-Alex", "DISTS"}  # no self-agreement
    assert result["sets"]["kodak_seen_kinds"]["kinds"] == ["noise"] and "csiq" not in result
    assert all(0 <= v <= 1 for row in held_out["agreement"].values() for v in row.values())
