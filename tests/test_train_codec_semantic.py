"""The semantic term of ``train-codec`` (loss = R + lambda*D + beta*S): exact resume, inert at beta=0, heads, errors.

The teachers are random-init trunks saved to temporary files, so no real ImageNet weights are needed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from codecloss import cli
from codecloss.reference import trunk
from codecloss.train.codec import TrainConfig, build_model, export_codec, load_checkpoint, load_config, train
from codecloss.train.semantic import Distillation
from test_train_codec import _config, _log, _write_pngs

pytestmark = pytest.mark.usefixtures("one_thread")

PLAIN_KEYS = {"model", "optimizer", "aux_optimizer", "step", "elapsed", "config", "rng"}


@pytest.fixture(scope="module")
def trunks(tmp_path_factory) -> Path:
    """A CODECLOSS_TRUNKS-style folder with random-init ``vgg16_features.pth`` and ``alexnet_features.pth``."""
    folder = tmp_path_factory.mktemp("trunks")
    for name in ("vgg16", "alexnet"):
        features = trunk(name, weights=None, seed=0).features.state_dict()
        torch.save({f"features.{k}": v for k, v in features.items()}, folder / f"{name}_features.pth")
    return folder


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return _write_pngs(tmp_path / "images", 3, seed=0)


def _semantic(images: Path, out: Path, trunks: Path, **overrides) -> TrainConfig:
    fields = dict(semantic_weight=0.5, teacher_weights=str(trunks / "vgg16_features.pth"))
    fields.update(overrides)
    return _config(images, out, **fields)


def test_resume_is_exact_and_heads_are_not_exported(images, tmp_path, trunks):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_semantic(images, straight, trunks, steps=5))
    train(_semantic(images, resumed, trunks, steps=3))
    train(_semantic(images, resumed, trunks, steps=5), resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert set(a) == PLAIN_KEYS | {"semantic_heads"}
    assert {k: tuple(v.shape) for k, v in a["semantic_heads"].items()} == {
        "gdn2.weight": (256, 16, 1, 1), "gdn3.weight": (512, 16, 1, 1)}
    for key in ("model", "semantic_heads"):
        for name, value in a[key].items():
            assert torch.equal(b[key][name], value), (key, name)
    for index, state in a["optimizer"]["state"].items():
        assert all(torch.equal(b["optimizer"]["state"][index][k], v) for k, v in state.items())
    log_a, log_b = _log(straight), _log(resumed)
    assert [{k: v for k, v in r.items() if k != "elapsed"} for r in log_a] == [
        {k: v for k, v in r.items() if k != "elapsed"} for r in log_b]
    for r in log_a:  # S is logged per step with R and D, and enters the loss with weight beta
        assert 0 < r["semantic"] < 4
        expected = 0.0067 * 255**2 * r["mse"] + r["bpp"] + 0.5 * r["semantic"]
        assert r["loss"] == pytest.approx(expected, rel=1e-5)
    # the exported codec is the plain codec: no head, loads strictly into a fresh model
    state = torch.load(export_codec(straight, tmp_path / "codec.pt").path, weights_only=True)
    fresh = build_model("factorized", 16, 16)
    assert set(state) == set(fresh.state_dict())
    fresh.load_state_dict(state)
    # the semantic term is part of the run: it cannot be dropped or changed on resume
    for change in (dict(semantic_weight=0.0), dict(semantic_taps={"gdn2": "relu3_3"})):
        with pytest.raises(ValueError, match="semantic term .* does not match the checkpoint's"):
            train(_semantic(images, resumed, trunks, steps=6, **change), resume=True)
    # beta itself may change (like lmbda)
    assert train(_semantic(images, resumed, trunks, steps=6, semantic_weight=2.0), resume=True)["step"] == 6


def test_zero_weight_is_inert(images, tmp_path):
    plain, off = tmp_path / "plain", tmp_path / "off"
    train(_config(images, plain))
    # beta = 0: no teacher is loaded (its file may be missing), no heads, the same run bit for bit
    train(_config(images, off, semantic_weight=0.0, semantic_teacher="alexnet",
                  teacher_weights=str(tmp_path / "missing.pth"), semantic_taps={"gdn9": "nothing"}))
    a, b = load_checkpoint(plain), load_checkpoint(off)
    assert set(a) == set(b) == PLAIN_KEYS
    for name, value in a["model"].items():
        assert torch.equal(b["model"][name], value), name
    for r, s in zip(_log(plain), _log(off)):
        assert "semantic" not in s and s["loss"] == r["loss"]
        assert s["loss"] == pytest.approx(0.0067 * 255**2 * s["mse"] + s["bpp"], rel=1e-5)


def test_heads_and_g_a_learn_from_s_and_the_teacher_stays_frozen():
    torch.manual_seed(0)
    codec = build_model("factorized", 16, 16).train()
    teacher = trunk("vgg16", weights=None, seed=0)
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    distillation = Distillation(teacher, {"gdn2": "relu3_3", "gdn3": "relu4_3"}, codec)
    heads = distillation.heads()
    wrapped = distillation.wrap(codec, heads)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # the codec's own output (rounding in eval mode), the head outputs added
        assert torch.equal(wrapped.eval()(x)["x_hat"], codec(x)["x_hat"])
    out = wrapped.train()(x)
    assert {k: tuple(v.shape) for k, v in out["semantic"].items()} == {"gdn2": (2, 256, 8, 8), "gdn3": (2, 512, 4, 4)}
    first = distillation.loss(out["semantic"], x)
    first.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    assert codec.g_a[0].weight.grad.abs().sum() > 0  # S reaches g_a through the taps
    assert codec.g_s[0].weight.grad is None  # ... and nothing after them
    assert not any(p.requires_grad or p.grad is not None for p in teacher.parameters())
    # a few Adam steps on S alone, on a fixed batch, lower it
    params = list(heads.parameters()) + list(codec.g_a.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    for _ in range(8):
        optimizer.zero_grad()
        distillation.loss(wrapped(x)["semantic"], x).backward()
        optimizer.step()
    with torch.no_grad():
        assert distillation.loss(wrapped(x)["semantic"], x) < 0.75 * first.detach()
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in frozen.items())
    assert not any(module.training for module in teacher.modules())


def test_alexnet_maps_are_resized_to_the_codec_taps():
    codec = build_model("factorized", 16, 16)
    distillation = Distillation(trunk("alexnet", weights=None), {"gdn2": "relu1", "gdn3": "relu2"}, codec)
    x = torch.rand(1, 3, 32, 32)  # AlexNet: 7x7 and 3x3 maps at strides 4 and 8; the codec: 8x8 and 4x4
    predictions = distillation.wrap(codec, distillation.heads())(x)["semantic"]
    value = distillation.loss(predictions, x)
    assert value.ndim == 0 and 0 < value.item() < 4


def test_bfloat16_teacher_gives_the_float32_term():
    torch.manual_seed(0)
    codec = build_model("factorized", 16, 16)
    teacher, pairs = trunk("vgg16", weights=None, seed=0), {"gdn2": "relu3_3", "gdn3": "relu4_3"}
    exact, fast = Distillation(teacher, pairs, codec), Distillation(teacher, pairs, codec, torch.bfloat16)
    x = torch.rand(2, 3, 64, 64)
    predictions = {k: v.detach().requires_grad_() for k, v in exact.wrap(codec, exact.heads())(x)["semantic"].items()}
    values, grads = [], []
    for distillation in (exact, fast):
        value = distillation.loss(predictions, x)
        values.append(value.item())
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, list(predictions.values()))]))
    assert values[0] != values[1]  # bfloat16 did run: the teacher's features are rounded
    assert abs(values[1] - values[0]) <= 1e-3 * values[0]
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) >= 0.999
    assert next(teacher.parameters()).dtype == torch.float32


def test_cli_options_reach_the_config_and_resume(images, tmp_path, trunks, capsys, monkeypatch):
    monkeypatch.setenv("CODECLOSS_TRUNKS", str(trunks))  # the default teacher file
    out = tmp_path / "run"
    args = ["train-codec", "--out", str(out), "--data", str(images), "--val-dir", "none", "--no-progress",
            "--N", "16", "--M", "16", "--crop", "32", "--batch-size", "2", "--log-every", "1", "--steps", "1",
            "--semantic-weight", "0.25", "--semantic-taps", "gdn1=relu2_2", "gdn3=relu4_3", "--teacher-dtype", "bfloat16",
            "--json"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["teacher_dtype"] == "bfloat16"
    config = load_config(out)
    assert (config.semantic_weight, config.semantic_teacher, config.teacher_weights) == (0.25, "vgg16", None)
    assert config.teacher_dtype == "bfloat16"
    assert config.semantic_taps == {"gdn1": "relu2_2", "gdn3": "relu4_3"}
    assert set(load_checkpoint(out)["semantic_heads"]) == {"gdn1.weight", "gdn3.weight"}
    assert cli.main(["train-codec", "--out", str(out), "--resume", "--steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    assert [math.isfinite(r["semantic"]) for r in _log(out)] == [True, True]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--semantic-teacher", "resnet"], "argument --semantic-teacher: invalid choice: 'resnet'"),
        (["--semantic-taps", "gdn2"], "argument --semantic-taps: expected TAP=LAYER (e.g. gdn2=relu3_3), got 'gdn2'"),
        (["--semantic-taps", "gdn2=relu3_3", "gdn2=relu2_2"], "--semantic-taps: codec tap(s) ['gdn2'] given more than once"),
        (["--semantic-taps", "gdn9=relu3_3"], "semantic_taps: gdn9=relu3_3: unknown codec tap 'gdn9'; expected one of ['conv1',"),
        (["--semantic-taps", "gdn2=relu9_9"], "semantic_taps: gdn2=relu9_9: unknown vgg16 layer 'relu9_9'; expected one of"),
        (["--semantic-taps", "gdn2=relu4_3"],
         "semantic_taps: gdn2=relu4_3: the codec tap has stride 4, the vgg16 layer 8; pair layers of equal stride (at 4: "),
        (["--semantic-weight", "-1"], "semantic_weight must be a finite number >= 0, got -1.0"),
        (["--teacher-weights", "{missing}"], "teacher_weights: no such file"),
        (["--teacher-weights", "none"], "teacher_weights: no vgg16 trunk given and CODECLOSS_TRUNKS names no folder"),
        (["--teacher-weights", "{alexnet}"], "teacher_weights: '{alexnet}' does not hold vgg16's convolutions (it looks like alexnet)"),
    ],
)
def test_bad_options_are_one_line_errors(images, tmp_path, trunks, capsys, options, message):
    paths = {"missing": str(tmp_path / "missing.pth"), "alexnet": str(trunks / "alexnet_features.pth")}
    options, message = [o.format(**paths) for o in options], message.format(**paths)
    out = tmp_path / "run"
    args = ["train-codec", "--out", str(out), "--data", str(images), "--val-dir", "none", "--no-progress",
            "--N", "16", "--M", "16", "--crop", "32", "--steps", "1", "--semantic-weight", "1",
            "--teacher-weights", str(trunks / "vgg16_features.pth"), *options]
    try:
        code = cli.main(args)
    except SystemExit as exit_info:  # argparse's own usage errors
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("codecloss train-codec: error: ")
    assert message in err.strip().splitlines()[-1]
    assert not out.exists()


def test_config_fields_are_validated(images, tmp_path):
    for fields, message in [
        (dict(semantic_teacher="vgg19"), "semantic_teacher must be one of ['vgg16', 'alexnet']"),
        (dict(semantic_taps={}), "semantic_taps must be None or a non-empty dict"),
        (dict(semantic_taps=["gdn2=relu3_3"]), "semantic_taps must be None or a non-empty dict"),
        (dict(semantic_weight=float("nan")), "semantic_weight must be a finite number >= 0"),
        (dict(teacher_weights=""), "teacher_weights must be None or a file path"),
        (dict(teacher_dtype="float16"), "teacher_dtype must be one of ['auto', 'float32', 'bfloat16'], got 'float16'"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            dataclasses.replace(_config(images, tmp_path), **fields).validate()
