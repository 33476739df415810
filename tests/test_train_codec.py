"""Tests of codecloss.train.codec and the ``train-codec`` command (tiny synthetic images, CPU, seconds)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codecloss import cli
from codecloss.train.codec import (
    CHECKPOINT_NAME,
    ImageBank,
    TrainConfig,
    build_model,
    export_analysis_transform,
    export_codec,
    initialize_from,
    load_checkpoint,
    load_config,
    train,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _write_pngs(folder: Path, count: int, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        # smooth-ish random images: upsampled noise, so the codec has structure to learn
        small = rng.integers(0, 256, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return _write_pngs(tmp_path / "images", 3, seed=0)


def _config(images: Path, out: Path, **overrides) -> TrainConfig:
    fields = dict(
        data_dirs=[str(images)], out_dir=str(out), N=16, M=16, crop=32, batch_size=2, steps=3,
        val_dir=None, log_every=1, ckpt_every=2, progress=False,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_three_steps_finite_loss_and_checkpoint(images, tmp_path):
    out = tmp_path / "run"
    summary = train(_config(images, out, val_dir=str(images), val_every=3, val_crop=32))
    assert summary["step"] == 3
    records = _log(out)
    train_records = [r for r in records if not r.get("val")]
    assert [r["step"] for r in train_records] == [1, 2, 3]
    for r in train_records:
        assert all(math.isfinite(r[k]) for k in ("loss", "bpp", "mse", "psnr", "aux"))
        assert r["bpp"] > 0 and r["lr"] == pytest.approx(1e-3)
    val = [r for r in records if r.get("val")]
    assert len(val) == 1 and val[0]["step"] == 3 and val[0]["images"] == 3
    assert math.isfinite(val[0]["psnr"]) and val[0]["bpp"] > 0
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 3
    assert set(ckpt) >= {"model", "optimizer", "aux_optimizer", "config", "rng"}
    assert not list(out.glob(".*.tmp"))  # atomic write leaves no temp file behind


def test_resume_continues_exactly(images, tmp_path):
    straight = tmp_path / "straight"
    train(_config(images, straight, steps=5))
    resumed = tmp_path / "resumed"
    train(_config(images, resumed, steps=3))
    with pytest.raises(ValueError, match="resume"):
        train(_config(images, resumed, steps=5))  # existing checkpoint without resume=True
    summary = train(_config(images, resumed, steps=5), resume=True)
    assert summary["step"] == 5
    assert [r["step"] for r in _log(resumed)] == [1, 2, 3, 4, 5]
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    # Adam's step counters continued from the restored state (3 + 2), not from zero
    assert {float(s["step"]) for s in b["optimizer"]["state"].values()} == {5.0}
    assert {float(s["step"]) for s in b["aux_optimizer"]["state"].values()} == {5.0}
    # restored weights, optimizer moments and RNG streams give the same run as training straight through
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6)


def test_stop_request_checkpoints_current_step(images, tmp_path):
    out = tmp_path / "run"
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) >= 3

    summary = train(_config(images, out, steps=10, ckpt_every=100), should_stop=should_stop)
    assert summary["stopped"] and summary["step"] == 3
    assert load_checkpoint(out)["step"] == 3
    assert train(_config(images, out, steps=4, ckpt_every=100), resume=True)["step"] == 4


def test_resume_rejects_other_architecture(images, tmp_path):
    out = tmp_path / "run"
    train(_config(images, out, steps=1))
    with pytest.raises(ValueError, match="M=24"):
        train(_config(images, out, steps=2, M=24), resume=True)


def test_lr_drop_and_raise_steps(images, tmp_path):
    out = tmp_path / "run"
    train(_config(images, out, steps=2, lr_drop_step=10))
    train(_config(images, out, steps=4, lr_drop_step=3), resume=True)
    assert [r["lr"] for r in _log(out)] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4])


@pytest.mark.parametrize(
    ("arch", "crop"), [("factorized", 40), ("factorized", 0), ("hyperprior", 32), ("factorized", 33)]
)
def test_bad_crop_raises(images, tmp_path, arch, crop):
    with pytest.raises(ValueError, match=r"crop must be a positive multiple of (16|64).*got"):
        train(_config(images, tmp_path / "run", arch=arch, crop=crop))
    assert not (tmp_path / "run").exists()


def test_bad_fields_raise(images, tmp_path):
    with pytest.raises(ValueError, match="arch"):
        _config(images, tmp_path, arch="vgg").validate()
    with pytest.raises(ValueError, match="lmbda"):
        _config(images, tmp_path, lmbda=-1.0).validate()
    with pytest.raises(TypeError, match="data_dirs"):
        _config(images, tmp_path, data_dirs=str(images)).validate()
    with pytest.raises(ValueError, match="no image"):
        ImageBank.from_folders([images], min_side=64)


def test_sampling_is_seeded_and_flips(images):
    bank = ImageBank.from_folders([images])
    a, _ = bank.sample(16, 32, torch.Generator().manual_seed(1))
    b, _ = bank.sample(16, 32, torch.Generator().manual_seed(1))
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and 0.0 <= a.min() and a.max() <= 1.0
    # every crop is a (possibly mirrored) window of one of the images
    full = [img.float() / 255 for img in bank.images]

    def is_window(crop: torch.Tensor) -> bool:
        return any(
            torch.equal(img[:, t : t + 32, l : l + 32], crop)
            for img in full
            for t in range(img.shape[1] - 31)
            for l in range(img.shape[2] - 31)
        )

    kinds = {("plain" if is_window(c) else "flipped" if is_window(c.flip(-1)) else "neither") for c in a}
    assert kinds == {"plain", "flipped"}


def test_classification_head(images, tmp_path):
    labelled = tmp_path / "labelled"
    _write_pngs(labelled / "cats", 2, seed=1)
    _write_pngs(labelled / "dogs", 2, seed=2)
    out = tmp_path / "run"
    train(_config(images, out, steps=2, cls_dir=str(labelled), cls_weight=0.5))
    records = _log(out)
    assert all(math.isfinite(r["ce"]) and r["ce"] > 0 for r in records)
    ckpt = load_checkpoint(out)
    assert ckpt["classes"] == ["cats", "dogs"]
    assert ckpt["head"]["fc.weight"].shape == (2, 16)
    # the head's weights were trained jointly (Adam moved them off their initial values)
    assert {float(s["step"]) for s in ckpt["optimizer"]["state"].values()} == {2.0}
    with pytest.raises(ValueError, match="cls_dir"):
        ImageBank.from_image_folder(labelled / "cats")


def test_export_g_a_loads_strict_and_codec_round_trips(images, tmp_path):
    out = tmp_path / "run"
    train(_config(images, out, N=64, M=96, steps=1, batch_size=1))
    info = export_analysis_transform(out / CHECKPOINT_NAME, tmp_path / "g_a.pt")
    assert info.sha256 == hashlib.sha256(Path(info.path).read_bytes()).hexdigest()
    assert info.size == Path(info.path).stat().st_size
    state = torch.load(info.path, weights_only=True)
    fresh = build_model("factorized", 64, 96)
    assert set(state) == set(fresh.g_a.state_dict())
    assert all(v.dtype == torch.float32 for v in state.values())
    fresh.g_a.load_state_dict(state, strict=True)
    trained = load_checkpoint(out)["model"]
    torch.testing.assert_close(fresh.g_a.state_dict()["0.weight"], trained["g_a.0.weight"])

    codec_info = export_codec(out, tmp_path / "codec.pt")
    codec = build_model("factorized", 64, 96)
    codec.load_state_dict(torch.load(codec_info.path, weights_only=True))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        enc = codec.compress(x)
        x_hat = codec.decompress(enc["strings"], enc["shape"])["x_hat"]
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    assert len(enc["strings"][0][0]) > 0


def test_cli_train_resume_export(images, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train-codec", "--out", str(out), "--data", str(images), "--val-dir", "none", "--no-progress"]
    small = ["--N", "16", "--M", "16", "--crop", "32", "--batch-size", "2", "--log-every", "1"]
    assert cli.main(base + small + ["--steps", "2"]) == 0
    # --resume takes the options not given (N, M, crop, ...) from the checkpoint
    assert cli.main(["train-codec", "--out", str(out), "--resume", "--steps", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 3
    config = load_config(out)
    assert (config.N, config.M, config.crop, config.steps) == (16, 16, 32, 3)
    assert cli.main(["train-codec", "--out", str(out), "--export-g-a", str(tmp_path / "g.pt"), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out.strip())
    assert exported["sha256"] == hashlib.sha256((tmp_path / "g.pt").read_bytes()).hexdigest()
    rd_args = ["train-codec", "--out", str(out), "--eval-rd", str(images), "--reference-dir", "none", "--json"]
    assert cli.main(rd_args) == 0
    rd_summary = json.loads(capsys.readouterr().out.strip())
    assert rd_summary["images"] == ["img0.png", "img1.png", "img2.png"]
    assert rd_summary["points"][0]["bpp"] > 0 and math.isfinite(rd_summary["points"][0]["psnr"])
    assert {"rd.json", "rd.md", "rd.png"} <= {p.name for p in out.iterdir()}
    # a second rate point: the run continued at another lambda in its own folder
    other = tmp_path / "run-lambda2"
    shutil.copytree(out, other)
    assert cli.main(["train-codec", "--out", str(other), "--resume", "--steps", "4", "--lmbda", "0.05"]) == 0
    capsys.readouterr()
    assert cli.main(rd_args + ["--rd-runs", str(other)]) == 0
    rd_two = json.loads(capsys.readouterr().out.strip())
    assert len(rd_two["points"]) == 2 and rd_two["comparison"]["method"] == "bd-rate"
    bad = ["train-codec", "--out", str(tmp_path / "bad"), "--data", str(images), "--crop", "40", "--steps", "1"]
    assert cli.main(bad) == 2
    assert "crop" in capsys.readouterr().err


# ----------------------------------------------------------------------------- candidates (issue 13)


def test_mix_objective_logs_the_weighted_sum(tmp_path):
    images = _write_pngs(tmp_path / "big", 2, seed=3, size=(200, 184))
    out = tmp_path / "run"
    config = _config(images, out, crop=176, steps=2, distortion="mix", mix_weight=0.25, ms_ssim_lmbda=5.0)
    train(config)
    for r in _log(out):
        assert 0 < r["ms_ssim"] <= 1
        expected = 0.75 * config.lmbda * 255**2 * r["mse"] + 0.25 * 5.0 * (1 - r["ms_ssim"]) + r["bpp"]
        assert r["loss"] == pytest.approx(expected, rel=1e-5)


def test_ms_ssim_objective_needs_large_crops(images, tmp_path):
    with pytest.raises(ValueError, match=r"crop must be >= 161 for distortion='ms-ssim'.*got 32"):
        _config(images, tmp_path, distortion="ms-ssim").validate()
    with pytest.raises(ValueError, match="distortion must be one of"):
        _config(images, tmp_path, distortion="ssim").validate()
    with pytest.raises(ValueError, match="mix_weight"):
        _config(images, tmp_path, mix_weight=1.5).validate()


def test_init_copies_matching_weights_across_architectures(images, tmp_path):
    source = tmp_path / "source"
    train(_config(images, source, steps=1))
    exported = export_codec(source, tmp_path / "source.pth").path
    trained = load_checkpoint(source)["model"]
    for arch in ("factorized", "hyperprior", "mean-scale"):
        model = build_model(arch, 16, 16)
        copied = initialize_from(model, exported)
        assert {k.split(".")[0] for k in copied} >= {"g_a", "g_s"}
        assert not any(k.startswith(("h_a", "h_s")) for k in copied)
        torch.testing.assert_close(model.state_dict()["g_a.0.weight"], trained["g_a.0.weight"])
    with pytest.raises(ValueError, match="init: .* no g_a weights that fit.*needs widen=True"):
        initialize_from(build_model("factorized", 24, 16), exported)


@pytest.mark.parametrize("arch", ["factorized", "mean-scale"])
def test_widen_init_preserves_the_source_function(arch, tmp_path):
    """A wider model started with widen=True computes the source's latents and reconstruction exactly."""
    source = tmp_path / "source"
    images = _write_pngs(tmp_path / "big", 1, seed=4, size=(72, 72))
    train(_config(images, source, arch=arch, crop=64, batch_size=1, steps=1))
    exported = export_codec(source, tmp_path / "source.pth").path
    narrow = build_model(arch, 16, 16)
    initialize_from(narrow, exported)
    wide = build_model(arch, 24, 20)
    copied = initialize_from(wide, exported, widen=True)
    assert "g_a.0.weight" in copied and "g_s.6.weight" in copied
    narrow.eval(), wide.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y_narrow, y_wide = narrow.g_a(x), wide.g_a(x)
        torch.testing.assert_close(y_wide[:, :16], y_narrow, rtol=1e-5, atol=1e-6)
        assert y_wide[:, 16:].abs().sum() > 0  # the new channels are live, not dead
        y_hat = torch.cat([y_narrow.round(), y_wide[:, 16:].round()], 1)
        torch.testing.assert_close(wide.g_s(y_hat), narrow.g_s(y_narrow.round()), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no g_a weights that fit"):  # narrower than the source: never
        initialize_from(build_model(arch, 8, 16), exported, widen=True)


def test_cli_init_widen_reaches_the_config(images, tmp_path):
    source = tmp_path / "source"
    train(_config(images, source, steps=1))
    exported = export_codec(source, tmp_path / "source.pth").path
    out = tmp_path / "wide"
    assert cli.main(["train-codec", "--out", str(out), "--data", str(images), "--val-dir", "none", "--N", "24",
                     "--M", "16", "--crop", "32", "--batch-size", "2", "--steps", "1", "--init", exported,
                     "--init-widen", "--no-progress"]) == 0
    assert load_config(out).init_widen is True


def test_init_from_embedded_default_and_resume_ignores_init(tmp_path):
    from codecloss import load_codec

    images = _write_pngs(tmp_path / "big", 1, seed=4, size=(72, 72))
    out = tmp_path / "run"
    config = _config(images, out, arch="mean-scale", N=64, M=96, crop=64, batch_size=1, steps=1,
                     init="codecloss-small-mse", lr=1e-12)
    train(config)
    reference = load_codec("codecloss-small-mse").state_dict()
    state = load_checkpoint(out)["model"]
    # an lr of 1e-12 leaves the copied g_a where init put it
    torch.testing.assert_close(state["g_a.6.weight"], reference["g_a.6.weight"], rtol=0, atol=1e-9)
    assert type(build_model("mean-scale", 64, 96)).__name__ == "MeanScaleHyperprior"
    # on resume the checkpoint, not init, provides the weights (init names a file that is gone)
    summary = train(dataclasses.replace(config, steps=2, init=str(tmp_path / "missing.pth")), resume=True)
    assert summary["step"] == 2


def test_cli_candidate_options(images, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-codec", "--out", str(out), "--data", str(images), "--val-dir", "none", "--no-progress",
            "--arch", "hyperprior", "--N", "16", "--M", "16", "--crop", "64", "--batch-size", "1", "--steps", "1",
            "--init", "none", "--distortion", "mse", "--device", "cpu", "--json"]
    args[args.index(str(images))] = str(_write_pngs(tmp_path / "big", 1, seed=4, size=(72, 72)))
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["world_size"] == 1
    config = load_config(out)
    assert (config.arch, config.distortion, config.init, config.device) == ("hyperprior", "mse", None, "cpu")
    bad = ["train-codec", "--out", str(tmp_path / "bad"), "--data", str(images), "--device", "gpu", "--steps", "1"]
    assert cli.main(bad) == 2
    assert "device" in capsys.readouterr().err
