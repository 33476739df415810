"""The SR study: network, degradation, metrics, training/resume and the ``sr-study`` command on tiny data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from codecloss import DEFAULT_BACKBONE
from codecloss.cli import main
from codecloss.tasks.sr import StudyConfig, run_study
from codecloss.tasks.sr_metrics import METRIC_NOTES, hf_energy_ratio, psnr_y, rgb_to_y
from codecloss.tasks.sr_net import CropSampler, SRNet, downscale, upscale_bicubic

LOSSES = ["l1", "codec", "codec-random", "vgg19"]
TINY = ["--batch", "2", "--patch", "64", "--channels", "8", "--blocks", "1"]


def _photo_like(h: int, w: int, seed: int) -> torch.Tensor:
    """Smooth random image with some edges: upsampled noise plus a step."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    x[..., :, w // 2 :] += 0.3
    return (x + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)[0]


def _save(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.mul(255).round().byte().permute(1, 2, 0).numpy()).save(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sr")
    for i in range(3):
        _save(_photo_like(80, 96, i), root / "train" / f"t{i}.png")
    _save(_photo_like(48, 52, 10), root / "set5" / "HR" / "a.png")  # 52 -> cropped to 52 (multiple of 4); named set5
    _save(_photo_like(40, 44, 11), root / "other" / "b.png")
    return {"train": root / "train", "eval": [root / "set5" / "HR", root / "other"], "root": root}


def _args(data: dict, out: Path, losses: list[str], steps: int) -> list[str]:
    return ["sr-study", "--losses", *losses, "--steps", str(steps), "--eval", *map(str, data["eval"]),
            "--train", str(data["train"]), "--out", str(out), "--json", *TINY]


def test_sharpness_known_answers() -> None:
    x = _photo_like(64, 64, 0).unsqueeze(0)
    assert hf_energy_ratio(x, x).item() == pytest.approx(1.0, abs=1e-6)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    ratio = hf_energy_ratio(blurred, x).item()
    assert 0 < ratio < 0.7
    bicubic = upscale_bicubic(downscale(x, 4), 4)
    assert hf_energy_ratio(bicubic, x).item() < ratio  # x4 loses more fine detail than a 3x3 box blur
    with pytest.raises(ValueError, match="cutoff"):
        hf_energy_ratio(x, x, cutoff=1.5)


def test_y_channel_and_psnr() -> None:
    white, black = torch.ones(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    assert rgb_to_y(white).flatten()[0].item() == pytest.approx(235 / 255)
    assert rgb_to_y(black).flatten()[0].item() == pytest.approx(16 / 255)
    noisy = (white * 0.5 + 0.01 * torch.randn(1, 3, 8, 8)).clamp(0, 1)
    assert psnr_y(noisy, white * 0.5, border=2).item() > psnr_y(noisy, white * 0.4, border=2).item()


def test_network_starts_as_bicubic_and_crops_are_deterministic() -> None:
    lr = torch.rand(2, 3, 12, 16)
    assert torch.equal(SRNet(8, 1)(lr), F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False))
    images = [(torch.rand(3, 70, 90) * 255).byte() for _ in range(3)]
    sampler = CropSampler(images, 64, 2, 4, seed=1)
    (lr_a, hr_a), (lr_b, hr_b) = sampler(5), sampler(5)
    assert torch.equal(hr_a, hr_b) and torch.equal(lr_a, lr_b)
    assert hr_a.shape == (2, 3, 64, 64) and lr_a.shape == (2, 3, 16, 16)
    assert not torch.equal(sampler(6)[1], hr_a)


def test_sr_study_end_to_end(data: dict, tmp_path: Path, capsys: pytest.CaptureFixture, one_thread: None) -> None:
    assert main(_args(data, tmp_path / "run", LOSSES, 2)) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["eval"]) == {"set5", "other"}
    for dataset in result["eval"].values():
        assert set(dataset) == {"bicubic", *LOSSES}
        for scores in dataset.values():
            assert set(METRIC_NOTES) <= set(scores)
            for metric in ("psnr_y", "ssim_y", "cpips", "sharpness"):
                assert isinstance(scores[metric], float)
            assert scores["ms_ssim"] is None  # sides < 161 px
    for name in LOSSES:
        info = result["losses"][name]
        assert info["steps"] == 2
        assert info["peak_memory_mib"] is None or info["peak_memory_mib"] >= 0
        assert info["step_time"]["timed_steps"] == 1  # the first step measures memory and is not timed
        assert (info["feature_weight"] > 0) == (name != "l1")
    assert "random init" in result["losses"]["vgg19"]["weights"]
    assert "random init" in result["losses"]["codec-random"]["weights"]
    assert result["settings"]["network"]["parameters"] == SRNet(8, 1).num_parameters()


def test_codec_loss_on_a_candidate_weights_file(data: dict, tmp_path: Path, capsys: pytest.CaptureFixture,
                                               one_thread: None) -> None:
    """--codec-backbone/--codec-weights put a given network under the codec loss (here a perturbed default)."""
    from codecloss import load_codec

    codec = load_codec()
    with torch.no_grad():
        codec.g_a[0].weight.mul_(1.5)
    weights = tmp_path / "candidate.pth"
    torch.save(codec.state_dict(), weights)
    assert main(_args(data, tmp_path / "run", ["codec"], 1) + ["--codec-weights", str(weights)]) == 0
    info = json.loads(capsys.readouterr().out)["losses"]["codec"]
    assert info["network"] == DEFAULT_BACKBONE and str(weights) in info["weights"]
    assert main(_args(data, tmp_path / "run2", ["codec"], 1)) == 0
    default = json.loads(capsys.readouterr().out)["losses"]["codec"]
    assert default["feature_weight"] != pytest.approx(info["feature_weight"], rel=1e-3)  # another network


def test_vgg16_loss_on_a_weights_file(data: dict, tmp_path: Path, capsys: pytest.CaptureFixture,
                                      one_thread: None) -> None:
    """--losses vgg16 --vgg16-weights FILE: ESRGAN's term on VGG16 conv5_3 with weights from a features.* file."""
    from codecloss.reference import trunk

    weights = tmp_path / "vgg16_features.pth"
    torch.save({f"features.{k}": v for k, v in trunk("vgg16", seed=3).features.state_dict().items()}, weights)
    assert main(_args(data, tmp_path / "run", ["vgg16"], 1) + ["--vgg16-weights", str(weights)]) == 0
    info = json.loads(capsys.readouterr().out)["losses"]["vgg16"]
    assert info["layers"] == ["conv5_3 (before ReLU)"] and str(weights) in info["weights"]
    assert main(_args(data, tmp_path / "run2", ["vgg16"], 1) + ["--vgg16-weights", str(tmp_path / "no.pth")]) == 2
    assert "--vgg16-weights: no such file" in capsys.readouterr().err
    assert main(_args(data, tmp_path / "run3", ["vgg19"], 1) + ["--vgg-weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "it looks like vgg16" in err


def test_resume_equals_a_straight_run(data: dict, tmp_path: Path, one_thread: None) -> None:
    def config(out: Path, steps: int) -> StudyConfig:
        return StudyConfig(losses=["codec"], steps=steps, eval_dirs=[str(d) for d in data["eval"]], out=str(out),
                           train_dir=str(data["train"]), batch=2, patch=64, channels=8, blocks=1, checkpoint_every=1)

    straight = run_study(config(tmp_path / "straight", 2))
    run_study(config(tmp_path / "resumed", 1))
    resumed = run_study(config(tmp_path / "resumed", 2))
    for name in ("codec",):
        a = torch.load(tmp_path / "straight" / name / "checkpoint.pt", weights_only=True)
        b = torch.load(tmp_path / "resumed" / name / "checkpoint.pt", weights_only=True)
        assert a["step"] == b["step"] == 2
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), key
        assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]
    assert straight["eval"] == resumed["eval"]
    with pytest.raises(ValueError, match="other settings"):
        run_study(_with(config(tmp_path / "resumed", 2), lr=1e-3))


def _with(config: Any, **changes: object) -> Any:
    """A copy of a study or sweep config with some settings changed."""
    fields = {k: v for k, v in config.__dict__.items() if not k.startswith("_")}
    return type(config)(**{**fields, **changes})


@pytest.mark.parametrize("change", [("--losses", "nope"), ("--eval", "/no/such/folder")])
def test_bad_usage_is_one_line_exit_2(data: dict, tmp_path: Path, capsys: pytest.CaptureFixture, change: tuple) -> None:
    args = _args(data, tmp_path / "run", ["l1"], 1)
    args[args.index(change[0]) + 1] = change[1]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert change[0] in err and change[1] in err
    assert not (tmp_path / "run").exists()


# --- issue 21: L1 pretraining to a plateau, then the perceptual fine-tuning sweep --------------------------------

MODE_TINY = ["--batch", "2", "--patch", "64"]


@pytest.fixture(scope="module")
def pretrained(data: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step pretraining run (8 channels, 1 block) on the tiny folder, validated on a folder named bsds500/val.

    One thread, as the resume test's runs: other thread counts may split convolution reductions differently.
    """
    out = tmp_path_factory.mktemp("pretrain")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_pretrain_args(data, out, 2)) == 0
    finally:
        torch.set_num_threads(previous)
    return out / "pretrain.pth"


def _pretrain_args(data: dict, out: Path, steps: int) -> list[str]:
    return ["sr-study", "--pretrain", "--out", str(out), "--train", str(data["train"]), "--val", str(data["val"]),
            "--steps", str(steps), "--val-every", "1", "--channels", "8", "--blocks", "1", "--json", *MODE_TINY]


@pytest.fixture(scope="module")
def trunks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init VGG16 and AlexNet trunk files in the torchvision ``features.*`` layout."""
    from codecloss.reference import trunk

    folder = tmp_path_factory.mktemp("trunks")
    for name in ("vgg16", "alexnet"):
        state = {f"features.{k}": v for k, v in trunk(name, seed=3).features.state_dict().items()}
        torch.save(state, folder / f"{name}_features.pth")
    return folder


@pytest.fixture(scope="module", autouse=True)
def _bsd100(data: dict) -> None:
    _save(_photo_like(44, 48, 12), data["root"] / "bsds500" / "val" / "c.png")
    data["val"] = data["root"] / "bsds500" / "val"


def test_plateau_rule() -> None:
    from codecloss.tasks.sr_pretrain import plateaued

    assert not plateaued([20.0, 21.0], patience=2, min_gain=0.02)  # too few validations
    assert plateaued([20.0, 21.0, 21.01, 21.015], patience=2, min_gain=0.02)
    assert not plateaued([20.0, 21.0, 21.01, 21.03], patience=2, min_gain=0.02)


def test_pretrain_writes_a_model_and_resumes_exactly(data: dict, pretrained: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture, one_thread: None) -> None:
    from codecloss.tasks import load_upscaler

    net = load_upscaler(pretrained)
    assert (net.channels, net.blocks) == (8, 1) and net.meta["loss"] == "l1"
    assert main(_pretrain_args(data, tmp_path, 1)) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 1
    assert main(_pretrain_args(data, tmp_path, 2)) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["steps"] == 2 and [h["step"] for h in resumed["history"]] == [1, 2]
    straight = torch.load(pretrained.with_name("pretrain_state.pt"), weights_only=True)
    again = torch.load(tmp_path / "pretrain_state.pt", weights_only=True)
    assert straight["history"] == again["history"]
    for key, value in straight["model"].items():
        assert torch.equal(value, again["model"][key]), key
    assert main(_pretrain_args(data, tmp_path, 3)[:-len(MODE_TINY)] + ["--batch", "3", "--patch", "64"]) == 2
    assert "other settings" in capsys.readouterr().err


def _finetune_args(data: dict, init: Path, out: Path, losses: list[str], ratios: list[str]) -> list[str]:
    return ["sr-study", "--finetune", str(init), "--out", str(out), "--train", str(data["train"]), "--losses", *losses,
            "--weights-ratio", *ratios, "--steps", "2", "--eval", str(data["eval"][0]), str(data["val"]),
            "--checkpoint-every", "1", "--json", *MODE_TINY]


def test_finetune_json_carries_every_loss_weight_and_metric(data: dict, pretrained: Path, trunks: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture, one_thread: None) -> None:
    losses = ["l1", "codec", "aesop", "aesop+codec"]
    args = _finetune_args(data, pretrained, tmp_path / "sweep", losses, ["0.3", "1"]) + ["--trunks", str(trunks)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    labels = {"l1", "codec@0.3", "codec@1", "aesop", "aesop+codec@0.3", "aesop+codec@1"}
    assert set(result["runs"]) == labels
    assert {info["loss"] for info in result["runs"].values()} == set(losses)
    for label, info in result["runs"].items():
        assert info["steps"] == 2 and info["step_time"]["timed_steps"] == 1
        assert info["peak_memory_mib"] is None or info["peak_memory_mib"] >= 0
        assert (info["feature_weight"] > 0) == ("@" in label)
    weights = result["runs"]
    assert weights["codec@1"]["feature_weight"] == pytest.approx(weights["codec@0.3"]["feature_weight"] / 0.3)
    assert weights["aesop"]["pixel_loss"].startswith("AESOP") and weights["codec@1"]["pixel_loss"] == "L1"
    assert result["judges_skipped"] == {}
    assert {"lpips_alex", "dists", "psnr_y", "ssim_y", "sharpness"} <= set(result["metrics"])
    assert set(result["eval"]) == {"set5", "bsd100"}
    for methods in result["eval"].values():
        assert set(methods) == labels | {"bicubic", "pretrained"}
        for scores in methods.values():
            for metric in ("psnr_y", "ssim_y", "lpips_alex", "dists", "sharpness"):
                assert isinstance(scores[metric], float), metric
    assert set(result["matched"]["losses"]) == {"codec", "aesop+codec", "aesop"}
    assert (tmp_path / "sweep" / "codec@0.3" / "model.pth").is_file()


def test_finetune_without_trunks_skips_the_judges(data: dict, pretrained: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                                  one_thread: None) -> None:
    monkeypatch.delenv("CODECLOSS_TRUNKS", raising=False)
    assert main(_finetune_args(data, pretrained, tmp_path / "sweep", ["l1"], ["1"])) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["judges_skipped"]) == {"lpips_alex", "dists"}
    assert result["eval"]["bsd100"]["l1"]["lpips_alex"] is None
    assert isinstance(result["eval"]["bsd100"]["l1"]["psnr_y"], float)


FINETUNE_FEATURES = ["codec", "codec-l2n", "codec-small", "codec-random", "vgg16-relu2_2", "vgg16-conv5_3", "lpips-vgg"]


@pytest.mark.parametrize("name", [*FINETUNE_FEATURES, "aesop"])
def test_every_sweep_loss_builds_and_gives_finite_gradients(name: str, trunks: Path, one_thread: None) -> None:
    from codecloss.tasks.sr_losses import AESOPLoss, build_feature_loss, parse_loss

    pixel, feature = parse_loss(name)
    loss = AESOPLoss() if pixel == "aesop" else build_feature_loss(feature, 0, vgg16_weights=trunks / "vgg16_features.pth")[0]
    hr = _photo_like(64, 64, 1).unsqueeze(0).repeat(2, 1, 1, 1)
    sr = upscale_bicubic(downscale(hr, 4), 4).requires_grad_(True)
    value = loss(sr, hr)
    (grad,) = torch.autograd.grad(value, sr)
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_aesop_is_public_and_takes_any_size(one_thread: None) -> None:
    import codecloss

    loss = codecloss.AESOPLoss("codecloss-small-mse")
    hr = _photo_like(60, 52, 2).unsqueeze(0)  # not multiples of the codec's stride, 16
    sr = upscale_bicubic(downscale(hr, 4), 4).requires_grad_(True)
    assert loss(hr, hr).item() == 0.0
    value = loss(sr, hr)
    value.backward()
    assert value > 0 and sr.grad.shape == sr.shape and sr.grad.abs().sum() > 0
    a, b = sr.detach()[..., :48, :48], hr[..., :48, :48]  # 16 px-aligned: no padding, the plain definition
    with torch.no_grad():
        assert torch.allclose(loss(a, b), F.l1_loss(loss.g_s(loss.g_a(a)), loss.g_s(loss.g_a(b))))
    with pytest.raises(ValueError, match=r"^sr and hr: expected the same shape"):
        loss(sr, hr[..., :48, :48])
    with pytest.raises(TypeError, match=r"^hr: expected a floating point tensor"):
        loss(sr, (hr * 255).to(torch.uint8))


@pytest.mark.parametrize("change", [
    ("--losses", "nope", "unknown loss"),
    ("--losses", "lpips-alex", "judge"),
    ("--losses", "aesop+lpips-alex", "judge"),
    ("--weights-ratio", "-0.5", "> 0"),
    ("--finetune", "/no/such/pretrain.pth", "no such file"),
])
def test_bad_finetune_usage_is_one_line_exit_2(data: dict, pretrained: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture, change: tuple) -> None:
    args = _finetune_args(data, pretrained, tmp_path / "sweep", ["l1", "codec"], ["1"])
    args[args.index(change[0]) + 1] = change[1]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert change[0] in err and change[2] in err
    assert not (tmp_path / "sweep").exists()


def test_finetune_refuses_other_scales_architectures_and_files(data: dict, pretrained: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    blob = torch.load(pretrained, weights_only=True)
    for name, change, message in (("x2.pth", {"scale": 2}, "x2 upscaler"), ("arch.pth", {"arch": "rrdb"}, "'rrdb'"),
                                  ("style.pth", {"format": "codecloss-stylizer"}, "not an upscaler")):
        torch.save(blob | change, tmp_path / name)
        assert main(_finetune_args(data, tmp_path / name, tmp_path / "sweep", ["l1"], ["1"])) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--finetune" in err and message in err, err


def test_vgg16_losses_need_a_trunk(data: dict, pretrained: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODECLOSS_TRUNKS", raising=False)
    assert main(_finetune_args(data, pretrained, tmp_path / "sweep", ["vgg16-relu2_2"], ["1"])) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--vgg16-weights" in err


def _sweep(psnr: dict[str, float], lpips: dict[str, float]) -> dict:
    runs = {label: {"loss": label.split("@")[0], "weight_ratio": float(label.split("@")[1]) if "@" in label else None}
            for label in psnr}
    return {"runs": runs, "eval": {"bsd100": {k: {"psnr_y": v, "lpips_alex": lpips[k]} for k, v in psnr.items()}}}


def test_matched_operating_point_and_pd_plot(tmp_path: Path) -> None:
    from codecloss.tasks.sr_tradeoff import matched_operating_points, merge_sweeps, plot_perception_distortion

    psnr = {"l1": 27.0, "codec@0.1": 26.8, "codec@0.3": 26.45, "codec@1": 25.9, "vgg@0.1": 26.2, "vgg@1": 25.0}
    lpips = {k: 0.3 - 0.01 * i for i, k in enumerate(psnr)}
    result = _sweep(psnr, lpips)
    matched = matched_operating_points(result)
    assert matched["target_psnr_y"] == pytest.approx(26.5)
    assert matched["losses"]["codec"]["label"] == "codec@0.3"  # 0.05 dB below the target: closest, within 0.1 dB
    assert matched["losses"]["vgg"]["label"] is None  # 0.3 dB below: out of tolerance
    assert matched_operating_points(result, tolerance_db=0.5)["losses"]["vgg"]["label"] == "vgg@0.1"
    flat = _sweep({"l1": 27.0, "flat@1": 26.99, "flat@3": 26.97}, {"l1": 0.3, "flat@1": 0.3, "flat@3": 0.3})
    unmatched = matched_operating_points(flat)["losses"]["flat"]  # a loss that never leaves L1's PSNR
    assert unmatched["label"] is None and unmatched["reason"].startswith("unreachable"), unmatched
    result["matched"] = matched
    later = _sweep({"l1": 27.5, "vgg@3": 26.55}, {"l1": 0.1, "vgg@3": 0.1})  # a second sweep: its l1 row is ignored
    merged = merge_sweeps([result, later])
    assert merged["eval"]["bsd100"]["l1"]["psnr_y"] == 27.0 and merged["sources"]["vgg@3"] == 1
    assert matched_operating_points(merged)["losses"]["vgg"]["label"] == "vgg@3"
    with pytest.raises(ValueError, match=r"results\[1\]: settings"):
        merge_sweeps([result, later | {"settings": {"steps": 7}}])
    path = plot_perception_distortion(result, tmp_path / "pd.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="dists"):
        plot_perception_distortion(result, tmp_path / "pd2.png", perception="dists")


def test_finetune_resumes_exactly(data: dict, pretrained: Path, trunks: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    from codecloss.tasks.sr_finetune import FinetuneConfig, run_finetune

    monkeypatch.delenv("CODECLOSS_TRUNKS", raising=False)

    def config(out: Path, steps: int) -> FinetuneConfig:
        return FinetuneConfig(init=str(pretrained), out=str(out), losses=["aesop+codec"], weight_ratios=[0.5], steps=steps,
                              eval_dirs=[str(data["val"])], train_dirs=[str(data["train"])], batch=2, patch=64,
                              checkpoint_every=1)

    straight = run_finetune(config(tmp_path / "straight", 2))
    run_finetune(config(tmp_path / "resumed", 1))
    resumed = run_finetune(config(tmp_path / "resumed", 2))
    a, b = (torch.load(tmp_path / run / "aesop+codec@0.5" / "checkpoint.pt", weights_only=True) for run in ("straight", "resumed"))
    assert a["step"] == b["step"] == 2 and a["weight"] == b["weight"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert straight["eval"] == resumed["eval"]
    with pytest.raises(ValueError, match="other settings"):
        run_finetune(_with(config(tmp_path / "resumed", 2), lr=1e-3))
    grown = _with(config(tmp_path / "resumed", 2), losses=["aesop+codec", "vgg16-relu2_2"],
                  vgg16_weights=str(trunks / "vgg16_features.pth"))
    assert run_finetune(grown)["eval"]["bsd100"]["aesop+codec@0.5"] == resumed["eval"]["bsd100"]["aesop+codec@0.5"]


def test_device_and_mode_options_are_checked(data: dict, pretrained: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    for args, argument in ((_finetune_args(data, pretrained, tmp_path / "a", ["l1"], ["1"]) + ["--device", "nope"], "--device"),
                           (_pretrain_args(data, tmp_path / "b", 1) + ["--device", "nope"], "--device"),
                           (_args(data, tmp_path / "c", ["l1"], 1) + ["--device", "cpu"], "--device"),
                           (_pretrain_args(data, tmp_path / "d", 1) + ["--losses", "codec"], "--losses"),
                           (_pretrain_args(data, tmp_path / "e", 1) + ["--dtype", "bfloat16"], "--dtype")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and argument in err, err


def test_bfloat16_feature_loss_matches_float32(data: dict, one_thread: None) -> None:
    """``--dtype bfloat16`` runs only the feature loss in bfloat16: loss value and SR-output gradient stay close."""
    from codecloss.tasks.sr import _Trainee
    from codecloss.tasks.sr_losses import build_feature_loss

    feature_loss, info = build_feature_loss("codec", 0)
    hr = _photo_like(64, 64, 3).unsqueeze(0)
    lr = downscale(hr, 4)
    grads, values = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        net = SRNet(8, 1, 4)
        trainee = _Trainee("codec", net, torch.optim.Adam(net.parameters()), feature_loss, info, weight=1.0, dtype=dtype)
        total, _, feature = trainee.loss(lr, hr)
        total.backward()
        values[dtype], grads[dtype] = float(feature.detach()), torch.cat([p.grad.flatten() for p in net.parameters()])
        assert feature.dtype == torch.float32
    assert values[torch.bfloat16] == pytest.approx(values[torch.float32], rel=0.01)
    assert float(F.cosine_similarity(grads[torch.bfloat16], grads[torch.float32], dim=0)) > 0.995
