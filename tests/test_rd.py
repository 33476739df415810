"""Tests of codecloss.train.rd: real bitstream round trip, JPEG sweep, BD-rate arithmetic, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codecloss.train.codec import build_model
from codecloss.train.rd import (
    bd_rate,
    evaluate_rd,
    jpeg_curve,
    load_reference,
    plot_rd,
    rate_saving_at_equal_psnr,
    rd_markdown,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    # 2 small smooth images; 170x180 is not a multiple of 64 (exercises padding) and >= 161 (MS-SSIM)
    for i in range(2):
        small = rng.integers(0, 256, size=(17, 18, 3), dtype=np.uint8)
        Image.fromarray(small).resize((180, 170), Image.BICUBIC).save(folder / f"im{i}.png")
    return folder


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ref"
    folder.mkdir()
    data = {"name": "toy", "results": {"bpp": [0.5, 1.0, 2.0], "psnr-rgb": [25.0, 30.0, 35.0], "ms-ssim-rgb": [0.9, 0.95, 0.99]}}
    (folder / "toy.json").write_text(json.dumps(data))
    return folder


def test_bd_rate_known_answers():
    rates = [0.1, 0.25, 0.5, 1.0, 2.0]
    psnrs = [26.0, 29.0, 31.5, 34.0, 37.0]
    assert bd_rate(rates, psnrs, [r / 2 for r in rates], psnrs) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(rates, psnrs, [r * 1.2 for r in rates], psnrs) == pytest.approx(20.0, abs=1e-9)
    assert bd_rate(rates, psnrs, rates, psnrs) == pytest.approx(0.0, abs=1e-9)
    # only the overlapping PSNR range counts: a shifted, partially overlapping test curve
    shifted = [p + 1.0 for p in psnrs]
    # log-rate is linear in PSNR here (slope s per dB) -> +1 dB at equal rate = rate * exp(-s)
    lin_rates = [math.exp(0.2 * p) for p in psnrs]
    expected = (math.exp(-0.2) - 1) * 100
    assert bd_rate(lin_rates, psnrs, lin_rates, shifted) == pytest.approx(expected, rel=1e-9)


def test_bd_rate_errors():
    with pytest.raises(ValueError, match="overlap"):
        bd_rate([0.1, 0.2], [20.0, 21.0], [0.1, 0.2], [30.0, 31.0])
    with pytest.raises(ValueError, match="test curve"):
        bd_rate([0.1, 0.2], [20.0, 21.0], [0.1], [20.5])


def test_rate_saving_single_point():
    rates, psnrs = [0.25, 0.5, 1.0, 2.0], [28.0, 30.0, 32.0, 34.0]
    assert rate_saving_at_equal_psnr(0.5, 32.0, rates, psnrs) == pytest.approx(-50.0)
    # between anchor points the rate is interpolated in log-rate: 31 dB -> sqrt(0.5 * 1.0)
    assert rate_saving_at_equal_psnr(math.sqrt(0.5), 31.0, rates, psnrs) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(rate_saving_at_equal_psnr(0.5, 40.0, rates, psnrs))


def test_jpeg_curve_rate_grows_with_quality(image_dir):
    image = torch.from_numpy(np.asarray(Image.open(image_dir / "im0.png").convert("RGB")).copy()).permute(2, 0, 1)[None]
    curve = jpeg_curve(image, [10, 50, 90])
    assert [p["quality"] for p in curve] == [10, 50, 90]
    assert curve[0]["bpp"] < curve[1]["bpp"] < curve[2]["bpp"]
    assert curve[0]["psnr"] < curve[2]["psnr"]


def test_evaluate_rd_round_trip_and_reports(image_dir, reference_dir, tmp_path):
    torch.manual_seed(0)
    models = [build_model("factorized", 16, 16), build_model("factorized", 16, 24)]
    result = evaluate_rd(
        models, image_dir, name="tiny", jpeg_qualities=[5, 25, 50, 75, 95],
        reference_dir=reference_dir, references=["toy", "missing"], progress=False,
    )
    assert result["images"] == ["im0.png", "im1.png"]
    assert len(result["points"]) == 2
    for point in result["points"]:
        assert point["bpp"] > 0 and math.isfinite(point["psnr"]) and 0 < point["ms_ssim"] <= 1
        assert len(point["per_image"]) == 2
    comparison = result["comparison"]
    assert comparison["method"] == "bd-rate"
    # untrained codecs sit far below JPEG's PSNR range: reported as NaN with the reason, not raised
    if math.isnan(comparison["value_percent"]):
        assert "overlap" in comparison["note"]
    jpeg_psnrs = [p["psnr"] for p in result["jpeg"]["mean"]]
    assert jpeg_psnrs == sorted(jpeg_psnrs)
    assert set(result["references"]) == {"toy"}

    single = evaluate_rd(models[0], image_dir, jpeg_qualities=[5, 50, 95], max_images=1, progress=False)
    assert single["comparison"]["method"] == "rate-saving-at-equal-psnr"
    assert single["points"][0]["per_image"][0]["image"] == "im0.png"

    text = rd_markdown(result)
    assert "Bjontegaard" in text and "| toy (`toy`)" in text
    assert "rate difference at equal PSNR" in rd_markdown(single)
    plot_path = tmp_path / "rd.png"
    plot_rd(result, plot_path)
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_reference_and_errors(reference_dir, tmp_path):
    ref = load_reference(reference_dir / "toy.json")
    assert ref["name"] == "toy" and ref["bpp"] == [0.5, 1.0, 2.0] and ref["ms_ssim"][0] == 0.9
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="results"):
        load_reference(bad)
    with pytest.raises(ValueError, match="jpeg_qualities"):
        evaluate_rd(build_model("factorized", 16, 16), reference_dir, jpeg_qualities=[50])


@pytest.mark.data
def test_published_reference_files_parse(shared_data):
    folder = shared_data / "reference" / "compressai_kodak_rd" / "kodak"
    ref = load_reference(folder / "compressai-bmshj2018-factorized_mse_cpu.json")
    assert len(ref["bpp"]) == len(ref["psnr"]) == 8 and ref["psnr"][0] > 20
