"""codecloss.reference: trunks with named taps, strict weight files, and LPIPS / DISTS parity with their packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import torchvision
from torchvision.models.vgg import cfgs, make_layers

from codecloss import reference
from codecloss.reference import trunk, trunk_file

ALEXNET_TAPS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4", "relu4", "conv5",
                "relu5", "pool5"]
LPIPS_KNOWN = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}  # LPIPS's README: ex_ref vs ex_p0, ex_p1


@pytest.fixture(scope="module")
def trunks():
    """Random trunks (seed 1), built once."""
    return {name: trunk(name, seed=1) for name in ("alexnet", "vgg16")}


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 48, 48, generator=g), torch.rand(2, 3, 48, 48, generator=g)


def _save(state, path: Path) -> Path:
    torch.save(state, path)
    return path


# ----------------------------------------------------------------------------- trunks


def test_tap_names_channels_and_strides(trunks) -> None:
    assert trunks["alexnet"].tap_names == ALEXNET_TAPS
    assert [(t.channels, t.stride) for t in trunks["alexnet"].taps if t.name.startswith("pool")] == [(64, 8), (192, 16),
                                                                                                     (256, 32)]
    vgg19 = trunk("vgg19")
    assert vgg19.tap_names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert vgg19.tap("conv5_4").index == 34 and vgg19.tap("relu5_4").channels == 512  # BasicSR's numbering
    assert trunks["vgg16"].tap("relu3_3").index == 15 and trunks["vgg16"].tap("pool5").stride == 32
    assert len(trunks["vgg16"].tap_names) == 31
    x = torch.rand(1, 3, 64, 64)
    for tap in trunks["alexnet"].taps:
        feature = trunks["alexnet"].extract(x, [tap.name])[tap.name]
        assert feature.shape[1] == tap.channels
    with pytest.raises(ValueError, match=r"layers: unknown tap 'relu9' for backbone 'vgg16'; expected one of \['conv1_1'"):
        trunks["vgg16"].tap("relu9")


def test_trunk_is_frozen_eval_and_passes_gradients(trunks) -> None:
    vgg = trunks["vgg16"]
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    vgg.extract(x, ["relu2_2"])["relu2_2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_stops_after_deepest_tap_and_keeps_conv_output(trunks) -> None:
    vgg = trunks["vgg16"]
    ran = []
    convs = [(k, m) for k, m in enumerate(vgg.features) if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, m in convs]
    try:
        out = vgg.extract(torch.rand(1, 3, 32, 32), ["relu1_1", "conv1_2"])
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == [0, 2] and list(out) == ["relu1_1", "conv1_2"]
    both = vgg.extract(torch.rand(1, 3, 32, 32), ["conv1_1", "relu1_1"])
    assert both["conv1_1"].min() < 0  # not overwritten by an in-place ReLU
    assert torch.equal(both["relu1_1"], both["conv1_1"].clamp_min(0))


def test_trunk_as_the_backbone_of_the_loss(trunks) -> None:
    from codecloss import CodecPerceptualLoss
    from codecloss.losses import content_loss

    vgg = trunks["vgg16"]
    loss_fn = CodecPerceptualLoss(vgg)
    assert list(loss_fn.layer_weights) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    x, y = torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32)
    value = loss_fn(x, y)
    fx, fy = vgg.extract(x, loss_fn.layer_weights), vgg.extract(y, loss_fn.layer_weights)
    assert torch.allclose(value, sum(content_loss(fx[t], fy[t]) for t in fx).mean())
    value.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert CodecPerceptualLoss(trunks["alexnet"]).extractor.default_layers == ["relu1", "relu2", "relu3", "relu4", "relu5"]


def test_input_range_and_imagenet_normalisation(trunks) -> None:
    alex = trunks["alexnet"]
    x = torch.rand(1, 3, 64, 64)
    direct = alex.features[:2]((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                               / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    torch.testing.assert_close(alex.extract(x, ["relu1"])["relu1"], direct)
    torch.testing.assert_close(alex.extract(2 * x - 1, ["relu1"], input_range=(-1, 1))["relu1"], direct)


def test_random_init_is_seeded_and_leaves_global_rng() -> None:
    state = torch.get_rng_state()
    a, b, c = trunk("alexnet", seed=3), trunk("alexnet", seed=3), trunk("alexnet", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert a.weights_source == "random init (seed 3)" and a.backbone_id == "alexnet"
    # VGG: torchvision's make_layers then its init (kaiming normal, fan_out), as the VGG19 control always was
    torch.manual_seed(5)
    expected = make_layers(cfgs["E"])
    for m in expected.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    assert torch.equal(trunk("vgg19", seed=5).features[34].weight, expected[34].weight)


def test_loads_features_only_and_full_state_dicts(trunks, tmp_path) -> None:
    features = trunks["alexnet"].features.state_dict()
    only = _save({f"features.{k}": v for k, v in features.items()}, tmp_path / "alexnet_features.pth")
    full = _save({**{f"features.{k}": v for k, v in features.items()}, "classifier.1.weight": torch.zeros(2, 2)},
                 tmp_path / "alexnet-full.pth")
    for path in (only, full, str(only)):
        loaded = trunk("alexnet", weights=path)
        assert torch.equal(loaded.features[10].weight, trunks["alexnet"].features[10].weight)
        assert loaded.weights_source == str(path)


def _alexnet_state(trunks):
    return {f"features.{k}": v for k, v in trunks["alexnet"].features.state_dict().items()}


BAD_FILES = {
    "other architecture": (lambda t, p: _save(_alexnet_state(t), p), "does not hold vgg16's convolutions \\(it looks like alexnet\\)"),
    "missing keys": (lambda t, p: _save({k: v for k, v in list(_vgg16_state(t).items())[:-2]}, p),
                     r"does not hold vgg16's convolutions \(missing \['features.28.bias'"),
    "truncated": (lambda t, p: p.write_bytes(_save(_vgg16_state(t), p).read_bytes()[:5000]), "cannot read"),
    "not a state dict": (lambda t, p: _save([1, 2, 3], p), "holds a list that is not a state dict"),
    "checkpoint wrapper": (lambda t, p: _save({"state_dict": _vgg16_state(t)}, p), "holds a dict that is not a state dict"),
    "foreign keys": (lambda t, p: _save({f"module.{k}": v for k, v in _vgg16_state(t).items()}, p),
                     r"has keys that are not torchvision's \(\['module.features.0.bias'"),
    "wrong shape": (lambda t, p: _save({**_vgg16_state(t), "features.0.weight": torch.zeros(64, 3, 5, 5)}, p),
                    r"has features.0.weight of shape \(64, 3, 5, 5\), expected \(64, 3, 3, 3\)"),
    "text file": (lambda t, p: p.write_text("not weights"), "cannot read"),
}


def _vgg16_state(trunks):
    return {f"features.{k}": v for k, v in trunks["vgg16"].features.state_dict().items()}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_wrong_files_are_refused_in_one_line(case, trunks, tmp_path) -> None:
    make, message = BAD_FILES[case]
    path = tmp_path / "weights.pth"
    make(trunks, path)
    with pytest.raises(ValueError, match=f"^weights: .*{message}") as err:
        trunk("vgg16", weights=path)
    assert "\n" not in str(err.value) and "expected torchvision's vgg16 state dict" in str(err.value)
    with pytest.raises(FileNotFoundError, match="^weights: no such file"):
        trunk("vgg16", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"^name: got 'resnet50'"):
        trunk("resnet50")


def test_torchvision_weights_offline_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLOSS_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(RuntimeError, match="^weights: 'torchvision' needs https://download.pytorch.org/models/alexnet-"):
        trunk("alexnet", weights="torchvision")


def test_trunk_file_resolution(tmp_path, monkeypatch) -> None:
    (tmp_path / "vgg16_features.pth").write_bytes(b"")
    assert trunk_file("vgg16") is None  # CODECLOSS_TRUNKS unset (conftest)
    assert trunk_file("vgg16", tmp_path) == tmp_path / "vgg16_features.pth"
    assert trunk_file("alexnet", tmp_path) is None
    monkeypatch.setenv("CODECLOSS_TRUNKS", str(tmp_path))
    assert trunk_file("vgg16") == tmp_path / "vgg16_features.pth"
    monkeypatch.setenv("CODECLOSS_TRUNKS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="^CODECLOSS_TRUNKS: no such folder"):
        trunk_file("vgg16")
    with pytest.raises(FileNotFoundError, match="^trunks: no such folder"):
        trunk_file("vgg16", tmp_path / "nowhere")


def test_import_is_light() -> None:
    code = "import sys, codecloss.reference; print([m for m in ('lpips', 'DISTS_pytorch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- LPIPS and DISTS


def _package_lpips(net: str, source):
    """The lpips package's own model, its trunk loaded from ``source`` by the package's slice names."""
    import lpips

    with mock.patch("warnings.warn"):
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    state = source.features.state_dict()
    model.net.load_state_dict({k: state[k.split(".", 1)[1]] for k in model.net.state_dict()})
    return model.eval()


def _package_dists(source):
    """DISTS_pytorch's own model (its own weights.pt loader), torchvision's vgg16 holding ``source``'s weights."""
    import DISTS_pytorch

    vgg = torchvision.models.vgg16(weights=None)
    vgg.features.load_state_dict(source.features.state_dict())
    with mock.patch("torchvision.models.vgg16", lambda **kwargs: vgg):
        return DISTS_pytorch.DISTS().eval()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_package(net, trunks, pair) -> None:
    source = trunks["alexnet" if net == "alex" else "vgg16"]
    metric = reference.lpips(net, trunk=source)
    x, y = pair
    d = metric(x, y)
    assert d.shape == (2,) and metric.backbone_id == f"lpips-{source.backbone_id}"
    expected = _package_lpips(net, source)(x, y, normalize=True).flatten()
    torch.testing.assert_close(d, expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(metric(y, x), d, rtol=1e-5, atol=0)
    assert metric(x, x).abs().max() == 0


def test_dists_matches_package(trunks, pair) -> None:
    metric = reference.dists(trunk=trunks["vgg16"])
    x, y = pair
    d = metric(x, y)
    assert d.shape == (2,)
    expected = _package_dists(trunks["vgg16"])(x, y).flatten()
    torch.testing.assert_close(d, expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(metric(y, x), d, rtol=1e-5, atol=0)
    assert metric(x, x).abs().max() < 1e-6
    assert metric(x[:1], y[:1]).shape == (1,)
    x.requires_grad_(True)
    metric(x, y).sum().backward()
    assert x.grad.abs().sum() > 0


def test_metrics_refuse_missing_or_wrong_trunks(trunks, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="^trunk: no alexnet trunk given and CODECLOSS_TRUNKS"):
        reference.lpips("alex")
    with pytest.raises(ValueError, match="^trunk: got a trunk of alexnet, expected one of vgg16"):
        reference.dists(trunk=trunks["alexnet"])
    path = _save(_alexnet_state(trunks), tmp_path / "vgg16_features.pth")
    with pytest.raises(ValueError, match="^trunk: .*it looks like alexnet"):
        reference.lpips("vgg", trunk=path)
    with pytest.raises(ValueError, match=r"^net: got 'squeeze'"):
        reference.lpips("squeeze", trunk=trunks["alexnet"])


def test_missing_package_says_how_to_install(trunks, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "DISTS_pytorch", None)
    monkeypatch.setitem(sys.modules, "DISTS_pytorch.DISTS_pt", None)
    with pytest.raises(ImportError, match=r"pip install dists-pytorch \(or \"codecloss\[reference\]\"\)"):
        reference.dists(trunk=trunks["vgg16"])


@pytest.mark.data
def test_real_trunks_give_lpips_known_values(shared_data) -> None:
    from codecloss.evaluate.images import read_image

    folder = shared_data / "reference" / "imagenet_features"
    examples = shared_data / "iqa" / "lpips_examples"
    ref, p0, p1 = (read_image(examples / f"ex_{n}.png")[None] for n in ("ref", "p0", "p1"))
    x, y = torch.cat([ref, ref]), torch.cat([p0, p1])
    for net, name in (("alex", "alexnet"), ("vgg", "vgg16")):
        source = trunk(name, weights=trunk_file(name, folder))
        d = reference.lpips(net, trunk=source)(x, y)
        assert d.tolist() == pytest.approx(LPIPS_KNOWN[net], abs=6e-4)
        torch.testing.assert_close(d, _package_lpips(net, source)(x, y, normalize=True).flatten(), rtol=1e-5, atol=0)
    vgg16 = trunk("vgg16", weights=folder / "vgg16_features.pth")
    d = reference.dists(trunk=vgg16)(x, y)
    torch.testing.assert_close(d, _package_dists(vgg16)(x, y).flatten(), rtol=1e-5, atol=0)
