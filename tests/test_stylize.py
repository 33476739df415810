"""`codecloss.tasks.stylize` (codecloss.tasks.gatys) and `codecloss stylize`: shapes, range, determinism, convergence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from codecloss.cli import main
from codecloss.tasks.gatys import run_stylize, stylize

FAST = {"steps": 6, "scales": 1}


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    content = tmp_path / "content.png"
    style = tmp_path / "style.png"
    yy, xx = np.mgrid[0:40, 0:56]
    Image.fromarray((np.stack([xx * 4, yy * 6, (xx + yy) * 2], -1) % 256).astype(np.uint8)).save(content)
    stripes = ((np.sin(np.mgrid[0:48, 0:48][1] / 2.0) > 0)[..., None] * np.array([200, 60, 30])).astype(np.uint8)
    Image.fromarray(np.clip(stripes + rng.integers(0, 40, (48, 48, 3)), 0, 255).astype(np.uint8)).save(style)
    return content, style


def test_documented_package_call_works(images, one_thread) -> None:
    """README's ``codecloss.tasks.stylize(content, style)``: the package attribute is the function, not a module."""
    import codecloss.tasks

    assert codecloss.tasks.stylize is stylize and codecloss.tasks.run_stylize is run_stylize
    content, style = images
    out = codecloss.tasks.stylize(content, style, size=32, steps=2, scales=1)
    assert out.shape[:2] == (1, 3) and min(out.shape[-2:]) == 32
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        codecloss.tasks.nope


def test_output_shape_range_and_size_of_content(images, one_thread) -> None:
    content, style = images
    out = stylize(content, style, size=32, **FAST)
    assert out.shape == (1, 3, 32, 45)  # shorter side 32, aspect ratio 40:56 kept
    assert out.min() >= 0 and out.max() <= 1


def test_same_seed_same_image_and_objective_decreases(images, one_thread) -> None:
    content, style = images
    first = run_stylize(content, style, size=32, init="noise", seed=3, **FAST)
    second = run_stylize(content, style, size=32, init="noise", seed=3, **FAST)
    other = run_stylize(content, style, size=32, init="noise", seed=4, **FAST)
    assert torch.equal(first.image, second.image)
    assert not torch.equal(first.image, other.image)
    history = first.history[-1]
    assert history[-1] < 0.5 * history[0]
    assert set(first.terms) == {"content", "style", "tv", "total"}


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_texture_synthesis_without_content(images, optimizer, one_thread) -> None:
    _, style = images
    result = run_stylize(None, style, size=32, steps=8, scales=2, optimizer=optimizer, lr=0.05)
    assert result.image.shape == (1, 3, 32, 32)
    assert result.settings["init"] == "noise" and result.terms["content"] == 0.0
    assert result.history[-1][-1] < result.history[-1][0]


def test_vgg19_control_runs(images, one_thread) -> None:
    content, style = images
    result = run_stylize(content, style, size=32, backbone="vgg19", steps=3, scales=1)
    assert result.image.shape == (1, 3, 32, 45) and "relu4_2" in result.settings["content_layers"]


def test_vgg16_with_a_weights_file(images, tmp_path, one_thread) -> None:
    from codecloss.reference import trunk

    content, style = images
    weights = tmp_path / "vgg16_features.pth"
    torch.save({f"features.{k}": v for k, v in trunk("vgg16", seed=3).features.state_dict().items()}, weights)
    result = run_stylize(content, style, size=32, backbone="vgg16", weights=str(weights), steps=2, scales=1)
    assert result.image.shape == (1, 3, 32, 45) and result.settings["weights"] == str(weights)
    with pytest.raises(ValueError, match="^weights: .*it looks like vgg16"):
        run_stylize(content, style, size=32, backbone="vgg19", weights=str(weights), steps=1, scales=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "size"),
        ({"steps": 1.5}, "steps"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"style_layers": ["gdn9"]}, "gdn9"),
        ({"content_layers": {"gdn1": -1.0}}, "content_layers"),
        ({"style_weight": float("nan")}, "style_weight"),
        ({"size": 32, "scales": 3}, "scales"),
    ],
)
def test_bad_options_name_the_argument(images, options, message) -> None:
    content, style = images
    with pytest.raises((ValueError, TypeError), match=message):
        run_stylize(content, style, **{"size": 32, **FAST, **options})


def test_bad_images(images, tmp_path) -> None:
    content, style = images
    with pytest.raises(FileNotFoundError, match="content"):
        stylize(tmp_path / "missing.png", style, size=32, **FAST)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="style"):
        stylize(content, tmp_path / "broken.png", size=32, **FAST)
    with pytest.raises(ValueError, match="style"):
        stylize(content, torch.rand(1, 3, 8, 8), size=32, **FAST)
    with pytest.raises(ValueError, match="init"):
        stylize(None, style, size=32, init="content", **FAST)


def test_cli_writes_image_and_json(images, tmp_path, capsys, one_thread) -> None:
    content, style = images
    out = tmp_path / "out.png"
    code = main(["stylize", str(content), str(style), "-o", str(out), "--size", "32", "--steps", "4", "--scales", "1",
                 "--style-layers", "gdn1=1", "gdn2=2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert Image.open(out).size == (45, 32)
    assert report["settings"]["style_layers"] == {"gdn1": pytest.approx(1 / 3), "gdn2": pytest.approx(2 / 3)}
    assert report["seconds"] > 0 and report["terms"]["total"] >= 0


def test_cli_judge_scores_the_result(images, tmp_path, capsys, one_thread) -> None:
    content, style = images
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), str(style), "-o", str(out), "--size", "128", "--steps", "1", "--scales", "1",
                 "--judge", "--json"]) == 0
    judges = json.loads(capsys.readouterr().out)["judges"]
    assert set(judges) == {"texture_ps", "gram_random_vgg", "colour_swd", "content_ssim"}
    assert list(tmp_path.glob(".*tmp*")) == []


def test_cli_texture_with_none(images, tmp_path, capsys, one_thread) -> None:
    _, style = images
    out = tmp_path / "texture.png"
    assert main(["stylize", "none", str(style), "-o", str(out), "--size", "32", "--steps", "3", "--scales", "1"]) == 0
    assert Image.open(out).size == (32, 32)


@pytest.mark.parametrize(
    "argv",
    [
        ["stylize", "none", "STYLE", "-o", "OUT", "--content-weight", "2"],
        ["stylize", "none", "STYLE", "-o", "OUT", "--content-layers", "gdn3"],
        ["stylize", "MISSING", "STYLE", "-o", "OUT"],
        ["stylize", "CONTENT", "STYLE", "-o", "OUT", "--size", "8"],
        ["stylize", "CONTENT", "STYLE", "-o", "OUT", "--style-layers", "nope"],
        ["stylize", "CONTENT", "STYLE", "-o", "OUT", "--style-layers", "gdn1=x"],
        ["stylize", "CONTENT", "STYLE", "-o", "OUT.nope"],
        ["stylize", "CONTENT", "STYLE", "-o", "NODIR/o.png"],
    ],
)
def test_cli_bad_input_is_one_line_usage_error(images, tmp_path, argv, capsys) -> None:
    content, style = images
    names = {"CONTENT": str(content), "STYLE": str(style), "OUT": str(tmp_path / "o.png"), "MISSING": str(tmp_path / "m.png"),
             "OUT.nope": str(tmp_path / "o.nope"), "NODIR/o.png": str(tmp_path / "nodir" / "o.png")}
    argv = [names.get(a, a) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own type errors
        code = exit_info.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("codecloss stylize: error:")  # argparse prints its usage above
    assert not (tmp_path / "o.png").exists()
