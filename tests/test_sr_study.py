"""The SR study: network, degradation, metrics, training/resume and the ``sr-study`` command on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

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


def _with(config: StudyConfig, **changes: object) -> StudyConfig:
    fields = {k: v for k, v in config.__dict__.items() if not k.startswith("_")}
    return StudyConfig(**{**fields, **changes})


@pytest.mark.parametrize("change", [("--losses", "nope"), ("--eval", "/no/such/folder")])
def test_bad_usage_is_one_line_exit_2(data: dict, tmp_path: Path, capsys: pytest.CaptureFixture, change: tuple) -> None:
    args = _args(data, tmp_path / "run", ["l1"], 1)
    args[args.index(change[0]) + 1] = change[1]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert change[0] in err and change[1] in err
    assert not (tmp_path / "run").exists()
