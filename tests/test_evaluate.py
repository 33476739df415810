"""Evaluation harness: BAPPS 2AFC/JND, MOS layouts and correlations, sanity checks, tables, eval CLI."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codecloss.backbones import DEFAULT_BACKBONE
from codecloss.cli import main
from codecloss.evaluate import bapps, equal_mse, mos, sanity
from codecloss.evaluate.report import Row, Table, plot_tables
from codecloss.evaluate.scorers import (
    DistanceCollector,
    MetricUnavailable,
    Scorer,
    Skipped,
    baseline_scorers,
    build_scorers,
    reference_scorers,
)

CPIPS_RANDOM = {"name": "CPIPS", "backbone": DEFAULT_BACKBONE, "weights": None}


def save_png(path: Path, image: np.ndarray) -> None:
    """Save an (H, W, 3) float image in [0, 1] as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def smooth_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A smooth random image (so that small noise is small relative to its structure)."""
    coarse = rng.random((size // 8, size // 8, 3))
    return np.kron(coarse, np.ones((8, 8, 1))) * 0.6 + 0.2


def make_2afc(root: Path, split: str, category: str, judges: list[float], swap: list[bool] | None = None,
              size: int = 32, seed: int = 0) -> None:
    """BAPPS 2AFC folder: p0 = ref + small noise, p1 = ref + large noise (swapped where ``swap``)."""
    rng = np.random.default_rng(seed)
    folder = root / "2afc" / split / category
    for i, judge in enumerate(judges):
        ref = smooth_image(rng, size)
        small = ref + 0.01 * rng.standard_normal(ref.shape)
        large = ref + 0.25 * rng.standard_normal(ref.shape)
        p0, p1 = (large, small) if swap and swap[i] else (small, large)
        name = f"{i:06d}"
        for sub, image in (("ref", ref), ("p0", p0), ("p1", p1)):
            save_png(folder / sub / f"{name}.png", image)
        (folder / "judge").mkdir(parents=True, exist_ok=True)
        np.save(folder / "judge" / f"{name}.npy", np.array([judge], dtype=np.float32))


def make_jnd(root: Path, category: str, noise: list[float], same: list[float], seed: int = 0) -> None:
    """BAPPS JND folder: p1 = p0 + noise of the given strength."""
    rng = np.random.default_rng(seed)
    folder = root / "jnd" / "val" / category
    for i, (sigma, s) in enumerate(zip(noise, same)):
        p0 = smooth_image(rng)
        save_png(folder / "p0" / f"{i:06d}.png", p0)
        save_png(folder / "p1" / f"{i:06d}.png", p0 + sigma * rng.standard_normal(p0.shape))
        (folder / "same").mkdir(parents=True, exist_ok=True)
        np.save(folder / "same" / f"{i:06d}.npy", np.array([s], dtype=np.float32))


# ----------------------------------------------------------------------------- scoring functions


def test_score_2afc_follows_lpips_rule():
    d0 = np.array([0.1, 0.5, 0.3, 0.3])
    d1 = np.array([0.2, 0.2, 0.3, 0.9])
    judge = np.array([0.0, 0.25, 0.6, 1.0])
    # 1 - 0; 0.25; tie 0.5; 1 - 1
    assert bapps.score_2afc(d0, d1, judge) == pytest.approx((1.0 + 0.25 + 0.5 + 0.0) / 4)
    with pytest.raises(ValueError, match="equal non-empty"):
        bapps.score_2afc(d0, d1[:2], judge)


def test_score_jnd_hand_computed():
    assert bapps.score_jnd(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(1.0)
    # sorted sames [0, 1, 1, 0]: recall 0, .5, 1, 1; precision 0, .5, 2/3, .5 -> envelope 2/3 on both steps
    assert bapps.score_jnd(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 1.0, 0.0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no pair"):
        bapps.score_jnd(np.array([0.1, 0.2]), np.zeros(2))


# ----------------------------------------------------------------------------- BAPPS


def test_2afc_known_answer(tmp_path):
    judges = [0.0, 0.2, 0.4, 0.0, 1.0]  # p0 (small noise) is always the closer one
    make_2afc(tmp_path, "val", "traditional", judges)
    swapped = [0.0, 0.6, 1.0]
    make_2afc(tmp_path, "val", "cnn", swapped, swap=[True, True, True], seed=1)
    scorers = build_scorers([CPIPS_RANDOM])
    table = bapps.evaluate_2afc(tmp_path, scorers, batch_size=2, progress=False)
    assert table.columns == ["traditional", "cnn", "mean"]
    expected_trad = float(np.mean([1 - j for j in judges]))
    expected_cnn = float(np.mean(swapped))  # p1 is the closer one there
    rows = {r.name: r for r in table.rows}
    for name in ("CPIPS", "PSNR", "SSIM"):
        assert rows[name].values["traditional"] == pytest.approx(expected_trad, abs=1e-6)
        assert rows[name].values["cnn"] == pytest.approx(expected_cnn, abs=1e-6)
        assert rows[name].values["mean"] == pytest.approx((expected_trad + expected_cnn) / 2, abs=1e-6)
    assert rows["MS-SSIM"].values["traditional"] is None and "too small" in rows["MS-SSIM"].note
    for name in ("LPIPS-Alex", "LPIPS-VGG", "DISTS"):  # no trunk folder (conftest clears CODECLOSS_TRUNKS)
        assert rows[name].values["mean"] is None and "CODECLOSS_TRUNKS" in rows[name].note
    assert table.meta["counts"] == {"traditional": 5, "cnn": 3}


def test_jnd_known_answer(tmp_path):
    make_jnd(tmp_path, "traditional", noise=[0.0, 0.03, 0.1, 0.3], same=[0.0, 1.0, 1.0, 0.0])
    table = bapps.evaluate_jnd(tmp_path, build_scorers(baselines=False, cpips_configs=[CPIPS_RANDOM]), progress=False)
    # distances grow with noise (d = 0 for the identical pair), so the expected AP is 2/3 (see above)
    assert table.rows[0].values["traditional"] == pytest.approx(2 / 3)


def test_evaluate_bapps_finds_modes_and_reports_layout_errors(tmp_path):
    make_2afc(tmp_path, "val", "color", [0.0, 1.0])
    tables = bapps.evaluate_bapps(tmp_path, baseline_scorers()[:1], progress=False)
    assert [t.meta["mode"] for t in tables] == ["2afc"]
    with pytest.raises(FileNotFoundError, match="BAPPS layout"):
        bapps.evaluate_bapps(tmp_path / "nothing", baseline_scorers()[:1])
    with pytest.raises(FileNotFoundError, match="not found"):
        bapps.evaluate_2afc(tmp_path, baseline_scorers()[:1], categories=["cnn"])
    (tmp_path / "2afc" / "val" / "color" / "judge" / "000001.npy").unlink()
    with pytest.raises(FileNotFoundError, match="no counterpart"):
        bapps.evaluate_2afc(tmp_path, baseline_scorers()[:1])


# ----------------------------------------------------------------------------- MOS


def make_mos_layout(root: Path, layout: str, refs: int = 2, levels: int = 3) -> None:
    """A tiny dataset in ``layout`` whose scores fall strictly with the (globally increasing) noise level."""
    rng = np.random.default_rng(0)
    sigmas = iter(np.geomspace(0.02, 0.3, refs * levels))
    rows = []
    for r in range(refs):
        ref = smooth_image(rng)
        for k in range(1, levels + 1):
            image = ref + next(sigmas) * rng.standard_normal(ref.shape)
            rows.append((r, k, ref, image, 5.0 - 0.5 * len(rows)))  # MOS-like: higher is better
    if layout == "tid2013":
        lines = []
        for r, k, ref, image, quality in rows:
            save_png(root / "reference_images" / f"I{r + 1:02d}.BMP", ref)
            name = f"i{r + 1:02d}_01_{k}.bmp"
            save_png(root / "distorted_images" / name, image)
            lines.append(f"{quality:.5f} {name}")
        (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    elif layout == "kadid10k":
        with open(root / "dmos.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["dist_img", "ref_img", "dmos", "var"])
            for r, k, ref, image, quality in rows:
                save_png(root / "images" / f"I{r + 1:02d}.png", ref)
                save_png(root / "images" / f"I{r + 1:02d}_01_{k:02d}.png", image)
                writer.writerow([f"I{r + 1:02d}_01_{k:02d}.png", f"I{r + 1:02d}.png", quality, 0.1])
    elif layout == "csiq":
        with open(root / "csiq.DMOS.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"])
            for r, k, ref, image, quality in rows:
                save_png(root / "src_imgs" / f"{1600 + r}.png", ref)
                save_png(root / "dst_imgs" / "awgn" / f"{1600 + r}.AWGN.{k}.png", image)
                writer.writerow([1600 + r, 1, "noise", k, 0.01, (5 - quality) / 5])  # DMOS: lower is better
    elif layout == "live":
        from scipy.io import savemat

        folders = ["jp2k", "jpeg", "wn", "gblur", "fastfading"]
        entries = {f: [] for f in folders}  # folder -> [(image, dmos, org, refname)]
        for i, (r, k, ref, image, quality) in enumerate(rows):
            save_png(root / "refimgs" / f"ref{r}.bmp", ref)
            entries[folders[i % len(folders)]].append((image, 100 - 20 * quality, 0, f"ref{r}.bmp"))
        # a reference copy flagged orgs=1 with a contradicting score: must be left out
        entries["wn"].append((smooth_image(rng) * 0 + 0.5, 1000.0, 1, "ref0.bmp"))
        dmos, orgs, refnames = [], [], []
        for folder in folders:
            for index, (image, score, org, refname) in enumerate(entries[folder], start=1):
                save_png(root / folder / f"img{index}.bmp", image)
                dmos.append(score)
                orgs.append(org)
                refnames.append(refname)
        savemat(root / "dmos.mat", {"dmos": np.array([dmos]), "orgs": np.array([orgs])})
        cell = np.empty((1, len(refnames)), dtype=object)
        cell[0, :] = refnames
        savemat(root / "refnames_all.mat", {"refnames_all": cell})
    else:
        raise ValueError(layout)


@pytest.mark.parametrize("layout", mos.LAYOUTS)
def test_mos_layouts_parse_and_orient_scores(tmp_path, layout):
    make_mos_layout(tmp_path, layout)
    mos_set = mos.read_layout(layout, tmp_path)
    assert len(mos_set.items) == 6
    assert mos_set.higher_is_better == (layout in ("tid2013", "kadid10k"))
    table = mos.evaluate_mos(layout, tmp_path, baseline_scorers()[:2], progress=False)
    psnr = table.rows[0]
    assert psnr.name == "PSNR"
    # PSNR falls strictly with the noise level, the scores too: perfect agreement after orientation
    assert psnr.values["SRCC"] == pytest.approx(1.0)
    assert psnr.values["KRCC"] == pytest.approx(1.0)
    assert psnr.values["PLCC"] > 0.9
    assert table.meta["count"] == 6


def test_mos_layout_errors(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        mos.read_layout("nope", tmp_path)
    with pytest.raises(FileNotFoundError, match="mos_with_names.txt"):
        mos.read_layout("tid2013", tmp_path)
    with pytest.raises(FileNotFoundError, match="all_by_image"):
        mos.read_layout("csiq", tmp_path)
    make_mos_layout(tmp_path, "kadid10k")
    (tmp_path / "images" / "I01_01_02.png").unlink()
    with pytest.raises(FileNotFoundError, match="I01_01_02.png"):
        mos.read_layout("kadid10k", tmp_path)


def test_correlations_logistic_fit_helps_on_a_nonlinear_monotone_relation():
    x = np.linspace(0, 1, 40)
    y = 1 / (1 + np.exp(-(x - 0.5) * 20))  # a steep logistic: monotone, far from linear
    result = mos.correlations(x, y)
    assert result["srcc"] == pytest.approx(1.0) and result["krcc"] == pytest.approx(1.0)
    assert result["logistic_fit"]
    assert result["plcc"] > np.corrcoef(x, y)[0, 1] + 0.02
    assert result["plcc"] == pytest.approx(1.0, abs=1e-4)
    anti = mos.correlations(x, -y)
    assert anti["srcc"] == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- sanity


@pytest.mark.parametrize("kind", list(sanity.DISTORTIONS))
def test_distortions_grow_with_level(kind):
    image = torch.from_numpy(smooth_image(np.random.default_rng(0), 48)).permute(2, 0, 1).float()
    image = (image + 0.05 * torch.rand_like(image)).clamp(0, 1)
    noise = torch.randn_like(image)
    errors = [float((sanity.distort(image, kind, level, noise) - image).pow(2).mean())
              for level in sanity.DISTORTIONS[kind]]
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    with pytest.raises(ValueError, match="kind"):
        sanity.distort(image, "swirl", 1.0)


@pytest.mark.parametrize("kind", [*equal_mse.BENIGN, *equal_mse.HARMFUL])
def test_match_mse_hits_the_target(kind):
    image = torch.from_numpy(smooth_image(np.random.default_rng(1), 48)).permute(2, 0, 1).float()
    noise = torch.randn_like(image)
    low, high = {**equal_mse.BENIGN, **equal_mse.HARMFUL}[kind]
    out = equal_mse.match_mse(lambda s: sanity.distort(image, kind, s, noise), image, 2e-3, low, high)
    assert float((out - image).pow(2).mean()) == pytest.approx(2e-3, rel=1e-3)
    assert equal_mse.match_mse(lambda s: sanity.distort(image, kind, s, noise), image, 10.0, low, high) is None


def test_evaluate_equal_mse_scores_pairs_at_equal_mse(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        save_png(tmp_path / f"img{i}.png", smooth_image(rng, 48) + 0.05 * rng.random((48, 48, 3)))

    def residual_spread(x, y):  # blind to brightness shifts by construction
        r = x - y
        return (r - r.mean(dim=(1, 2, 3), keepdim=True)).abs().mean(dim=(1, 2, 3))

    scorers = [Scorer("spread", residual_spread), *baseline_scorers()[:1]]
    table = equal_mse.evaluate_equal_mse(tmp_path, scorers, images=None, crop=None, psnrs=(26.0,))
    assert table.columns == ["mean<noise", "mean<blur", "mean<jpeg", "contrast<noise", "contrast<blur",
                             "contrast<jpeg", "overall"]
    rows = {r.name: r.values for r in table.rows}
    assert rows["spread"]["mean<noise"] == rows["spread"]["mean<jpeg"] == 1.0
    assert 0.25 <= rows["PSNR"]["overall"] <= 0.75  # equal MSE: PSNR can only guess
    assert table.meta["unmatched"] == [] and table.meta["pairs"] == 2 * 6
    with pytest.raises(ValueError, match="psnrs"):
        equal_mse.evaluate_equal_mse(tmp_path, scorers, psnrs=())


def test_cli_eval_equal_mse(tmp_path, capsys):
    save_png(tmp_path / "a.png", smooth_image(np.random.default_rng(0), 32) + 0.05)
    assert main(["eval", "equal-mse", "--root", str(tmp_path), "--crop", "0", "--psnr", "27",
                 "--weights", "none", "--no-baselines", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)["tables"][0]
    assert table["meta"]["psnrs"] == [27.0] and "contrast<blur" in table["columns"]


def test_pair_agreement():
    assert sanity.pair_agreement([1, 2, 3], [1, 2, 3]) == (3.0, 3)
    assert sanity.pair_agreement([3, 2, 1], [1, 2, 3]) == (0.0, 3)
    assert sanity.pair_agreement([1, 1, 2], [1, 2, 2]) == (1.5, 2)  # one tie in d; equal targets skipped


def test_evaluate_synthetic_on_small_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        save_png(tmp_path / f"img{i}.png", smooth_image(rng, 48) + 0.05 * rng.random((48, 48, 3)))
    scorers = [*build_scorers([CPIPS_RANDOM], baselines=False), *baseline_scorers()[:3]]
    table = sanity.evaluate_synthetic(tmp_path, scorers, images=None, crop=None)
    assert table.columns == [*sanity.DISTORTIONS, "overall"]
    rows = {r.name: r for r in table.rows}
    assert rows["PSNR"].values["noise"] == 1.0
    assert rows["MS-SSIM"].note.startswith("skipped")
    for value in rows["CPIPS"].values.values():
        assert 0.0 <= value <= 1.0
    assert table.meta["images"] == ["img0.png", "img1.png"]


@pytest.mark.data
def test_ordered_subset_on_shared_csiq(shared_data):
    root = shared_data / "iqa" / "csiq_1600_subset"
    if not root.is_dir():
        pytest.skip("csiq_1600_subset not present")
    table = sanity.evaluate_ordered_subset(root, baseline_scorers()[:1])
    assert table.columns == ["AWGN", "BLUR", "overall"]
    assert table.meta["pseudo_references"] == {"AWGN": "1600.BLUR.1.png", "BLUR": "1600.AWGN.1.png"}
    assert 0.0 <= table.rows[0].values["overall"] <= 1.0


def test_reference_scorers_skip_without_trunks(tmp_path, monkeypatch, capsys):
    rows = reference_scorers()
    assert [r.name for r in rows] == ["LPIPS-Alex", "LPIPS-VGG", "DISTS"]
    assert all(isinstance(r, Skipped) and "pass --trunks DIR or set CODECLOSS_TRUNKS" in r.reason for r in rows)
    assert "alexnet_features.pth" in rows[0].reason and "vgg16_features.pth" in rows[2].reason
    (tmp_path / "empty").mkdir()
    assert all(isinstance(r, Skipped) for r in reference_scorers(trunks=tmp_path / "empty"))
    monkeypatch.setenv("CODECLOSS_TRUNKS", str(tmp_path / "nowhere"))
    assert all("CODECLOSS_TRUNKS: no such folder" in r.reason for r in reference_scorers())
    save_png(tmp_path / "clean" / "a.png", smooth_image(np.random.default_rng(0), 32))
    assert main(["eval", "sanity", "--root", str(tmp_path / "clean"), "--csiq", "none", "--crop", "0",
                 "--weights", "none", "--trunks", str(tmp_path / "nowhere")]) == 2
    assert "--trunks: no such folder" in capsys.readouterr().err


def test_reference_scorers_on_trunk_files(tmp_path, monkeypatch):
    from codecloss.reference import trunk

    for name in ("alexnet", "vgg16"):  # random trunks, in the layout of ../shared/data/reference/imagenet_features
        state = trunk(name, seed=2).features.state_dict()
        torch.save({f"features.{k}": v for k, v in state.items()}, tmp_path / f"{name}_features.pth")
    monkeypatch.setitem(sys.modules, "DISTS_pytorch", None)  # as if dists-pytorch were not installed
    monkeypatch.setitem(sys.modules, "DISTS_pytorch.DISTS_pt", None)
    lpips_alex, lpips_vgg, dists = reference_scorers(trunks=tmp_path)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    for scorer in (lpips_alex, lpips_vgg):
        assert isinstance(scorer, Scorer) and scorer.distance(x, y).shape == (2,)
    assert isinstance(dists, Skipped) and "pip install dists-pytorch" in dists.reason


@pytest.mark.data
def test_reference_scorers_with_real_trunks(shared_data, tmp_path, capsys):
    folder = shared_data / "reference" / "imagenet_features"
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    for scorer in reference_scorers(trunks=folder):
        assert isinstance(scorer, Scorer)
        d = scorer.distance(x, y)
        assert d.shape == (2,) and bool((d > 0.01).all()) and scorer.distance(x, x).abs().max() < 1e-6
    with pytest.raises(MetricUnavailable, match="too small for LPIPS-Alex"):
        reference_scorers(trunks=folder)[0].distance(x[..., :30, :30], y[..., :30, :30])
    rng = np.random.default_rng(0)
    save_png(tmp_path / "clean" / "a.png", smooth_image(rng, 64) + 0.05 * rng.random((64, 64, 3)))
    assert main(["eval", "sanity", "--root", str(tmp_path / "clean"), "--csiq", "none", "--crop", "0",
                 "--weights", "none", "--trunks", str(folder), "--json"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)["tables"][0]["rows"]}
    for name in ("LPIPS-Alex", "LPIPS-VGG", "DISTS"):
        assert 0.0 <= rows[name]["values"]["overall"] <= 1.0


# ----------------------------------------------------------------------------- collector, tables, plots


def test_distance_collector_marks_unavailable_scorers():
    def unavailable(x, y):
        raise MetricUnavailable("not here")

    collector = DistanceCollector([Scorer("ok", lambda x, y: (x - y).abs().mean(dim=(1, 2, 3))),
                                   Scorer("bad", unavailable), Skipped("gone", "no weights")])
    collector.add("k", torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16))
    collector.add("k", torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
    np.testing.assert_allclose(collector.get("ok", "k"), [1.0, 1.0, 0.0])
    assert collector.get("bad", "k") is None and collector.skipped["bad"] == "skipped: not here"
    assert collector.skipped["gone"] == "skipped: no weights"


def test_similarity_scorers_are_negated():
    scorer = Scorer("sim", lambda x, y: torch.tensor([2.0, 3.0]), higher_is_better=True)
    assert scorer.distance(torch.zeros(2), torch.zeros(2)).tolist() == [-2.0, -3.0]


def test_table_format_json_and_plot(tmp_path):
    table = Table("demo", ["a", "mean"], [Row("m1", {"a": 0.5, "mean": 0.5}), Row("m2", {"a": None, "mean": None},
                                                                                   "skipped: x")])
    text = table.format()
    assert "0.5000" in text and "(skipped: x)" in text
    data = json.loads(json.dumps(table.to_dict()))
    assert data["rows"][1]["values"]["a"] is None
    path = plot_tables([table, table], tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- eval CLI


def test_cli_eval_bapps_json_and_plot(tmp_path, capsys):
    make_2afc(tmp_path / "data", "val", "traditional", [0.0, 0.5, 1.0])
    code = main(["eval", "bapps", "--root", str(tmp_path / "data"), "--weights", "none",
                 "--json", "--plot", str(tmp_path / "out.png"), "--no-progress"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    table = out["tables"][0]
    assert table["title"].startswith("BAPPS 2AFC")
    assert table["rows"][0]["metric"] == "CPIPS"
    assert table["rows"][0]["values"]["traditional"] == pytest.approx(0.5)
    assert (tmp_path / "out.png").is_file()


def test_cli_eval_mos_and_sanity_text(tmp_path, capsys):
    make_mos_layout(tmp_path / "tid", "tid2013")
    assert main(["eval", "mos", "--layout", "tid2013", "--root", str(tmp_path / "tid"), "--weights", "none",
                 "none", "--no-baselines", "--no-progress"]) == 2  # duplicate row names: usage error
    assert "unique" in capsys.readouterr().err
    assert main(["eval", "mos", "--layout", "tid2013", "--root", str(tmp_path / "tid"), "--weights", "none",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "SRCC" in out and "PSNR" in out
    rng = np.random.default_rng(0)
    save_png(tmp_path / "clean" / "a.png", smooth_image(rng, 32))
    assert main(["eval", "sanity", "--root", str(tmp_path / "clean"), "--csiq", "none", "--crop", "0",
                 "--weights", "none", "--no-baselines"]) == 0
    assert "overall" in capsys.readouterr().out


def test_cli_eval_missing_root_is_usage_error(tmp_path, capsys):
    assert main(["eval", "bapps", "--root", str(tmp_path / "none"), "--weights", "none", "--no-baselines"]) == 2
    assert "BAPPS layout" in capsys.readouterr().err
