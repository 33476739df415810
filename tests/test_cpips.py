"""CPIPS module, head files and the cached functional metric()."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import codecloss.cpips as cpips_module
from codecloss.backbones import DEFAULT_BACKBONE, load_backbone
from codecloss.cpips import CPIPS, HEAD_FORMAT, as_image_tensor, clear_metric_cache, load_head, metric
from codecloss.losses import content_loss


@pytest.fixture(scope="module")
def extractor():
    return load_backbone(DEFAULT_BACKBONE, weights=None)


@pytest.fixture(scope="module")
def model(extractor):
    return CPIPS(extractor).eval()


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 64, 64, generator=gen), torch.rand(3, 3, 64, 64, generator=gen)


def test_identity_is_exactly_zero_and_symmetric(model, images):
    x, y = images
    assert torch.equal(model(x, x), torch.zeros(3))
    assert torch.equal(model(x, y), model(y, x))
    assert (model(x, y) > 0).all()


def test_batch_consistency(model, images):
    x, y = images
    batched = model(x, y)
    single = torch.cat([model(x[i:i + 1], y[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_single_image_is_batched(model, images):
    x, y = images
    assert model(x[0], y[0]).shape == (1,)


def test_distance_grows_with_noise(model, images):
    x, _ = images
    noise = torch.randn_like(x)
    d = [model(x, (x + s * noise).clamp(0, 1)).mean() for s in (0.01, 0.05, 0.2)]
    assert d[0] < d[1] < d[2]


def test_uniform_heads_equal_normalized_l2_content_loss(model, extractor, images):
    x, y = images
    fx, fy = extractor(x, model.layers), extractor(y, model.layers)
    expected = sum(content_loss(fx[t], fy[t], "normalized_l2") for t in model.layers)
    torch.testing.assert_close(model(x, y), expected, rtol=1e-5, atol=1e-6)


def test_gradients_are_finite_also_at_identity_and_zero_images(model, images):
    x, y = images
    for a, b in ((x, y), (x, x), (torch.zeros_like(x), torch.zeros_like(x))):
        a = a.clone().requires_grad_(True)
        model(a, b).sum().backward()
        assert torch.isfinite(a.grad).all()
    a = x.clone().requires_grad_(True)
    model(a, y).sum().backward()
    assert a.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_spatial_map_averages_to_scalar_and_per_layer_sums(extractor, model, images):
    x, y = images
    spatial = CPIPS(extractor, spatial=True, per_layer=True)
    total, parts = spatial(x, y)
    assert total.shape == (3, 1, 64, 64)
    assert list(parts) == model.layers
    torch.testing.assert_close(total.mean(dim=(1, 2, 3)), model(x, y), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sum(parts.values()), total)
    scalar_total, scalar_parts = CPIPS(extractor, per_layer=True)(x, y)
    torch.testing.assert_close(sum(scalar_parts.values()), scalar_total)


def test_input_range(extractor, model, images):
    x, y = images
    signed = CPIPS(extractor, input_range=(-1, 1))
    torch.testing.assert_close(signed(2 * x - 1, 2 * y - 1), model(x, y), rtol=1e-5, atol=1e-6)


def test_different_sizes_say_resize_or_crop(model):
    with pytest.raises(ValueError, match="resize or crop"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 48, 64))


@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [("gdn1", TypeError, "sequence of tap names"), (["nope"], ValueError, "unknown tap"), ([], ValueError, "at least one")],
)
def test_bad_layers(extractor, layers, error, match):
    with pytest.raises(error, match=match):
        CPIPS(extractor, layers=layers)


def test_layers_follow_forward_order(extractor):
    assert CPIPS(extractor, layers=["y", "gdn1"]).layers == ["gdn1", "y"]


def _save_head(path, extractor, layers, scale=2.0, **overrides):
    head = {
        "format": HEAD_FORMAT,
        "backbone": extractor.backbone_id,
        "layers": list(layers),
        "lin": {t: torch.rand(extractor.tap(t).channels) * scale for t in layers},
    }
    head.update(overrides)
    torch.save(head, path)
    return head


def test_head_file_round_trip(tmp_path, extractor, images):
    x, y = images
    head = _save_head(tmp_path / "head.pt", extractor, ["gdn1", "y"])
    calibrated = CPIPS(extractor, heads=tmp_path / "head.pt")
    assert calibrated.layers == ["gdn1", "y"]
    fx, fy = extractor(x, ["gdn1", "y"]), extractor(y, ["gdn1", "y"])
    expected = 0
    for tap in ("gdn1", "y"):
        diff = (cpips_module.normalize_channels(fx[tap]) - cpips_module.normalize_channels(fy[tap])).pow(2)
        expected = expected + (diff * head["lin"][tap].view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    torch.testing.assert_close(calibrated(x, y), expected, rtol=1e-5, atol=1e-6)
    state = calibrated.head_state()
    torch.testing.assert_close(state["lin"]["y"], head["lin"]["y"])
    assert load_head(tmp_path / "head.pt")["layers"] == ["gdn1", "y"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"format": "something-else"}, "not a CPIPS head file"),
        ({"backbone": "bmshj2018-factorized-mse-q1"}, "trained for backbone"),
        ({"lin": {"gdn1": -torch.ones(128), "y": torch.ones(192)}}, "finite and >= 0"),
        ({"lin": {"gdn1": torch.ones(5), "y": torch.ones(192)}}, "has 5 weights"),
        ({"lin": {"gdn1": torch.ones(128)}}, "lin weights for"),
    ],
)
def test_head_file_errors(tmp_path, extractor, overrides, match):
    _save_head(tmp_path / "head.pt", extractor, ["gdn1", "y"], **overrides)
    with pytest.raises(ValueError, match=match):
        CPIPS(extractor, heads=tmp_path / "head.pt")


def test_head_layers_must_match_requested_layers(tmp_path, extractor):
    _save_head(tmp_path / "head.pt", extractor, ["gdn1", "y"])
    with pytest.raises(ValueError, match="was asked for"):
        CPIPS(extractor, layers=["gdn2"], heads=tmp_path / "head.pt")


def test_head_file_missing_or_not_a_torch_file(tmp_path, extractor):
    with pytest.raises(FileNotFoundError):
        CPIPS(extractor, heads=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"^heads: '.*junk.pt' is not a loadable PyTorch file \(UnpicklingError: [^\n]*\); expected a CPIPS head file[^\n]*$"):
        CPIPS(extractor, heads=tmp_path / "junk.pt")


def test_head_registry_name_needs_full_sha256(tmp_path, extractor, monkeypatch):
    import codecloss.weights as registry

    _save_head(tmp_path / "head.pt", extractor, ["gdn1", "y"])
    spec = type("Spec", (), {"sha256": "a" * 64})()
    monkeypatch.setattr(registry, "get_weight_spec", lambda name, backbone=None: spec)
    monkeypatch.setattr(registry, "get_weights_file", lambda name, backbone=None, **kw: tmp_path / "head.pt")
    assert CPIPS(extractor, heads="my-heads").heads_source == "my-heads"
    spec.sha256 = None
    with pytest.raises(ValueError, match="full SHA-256"):
        CPIPS(extractor, heads="my-heads")


def test_as_image_tensor_conversions():
    array = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    assert torch.equal(as_image_tensor(array), expected)
    assert torch.equal(as_image_tensor(Image.fromarray(array)), expected)
    assert as_image_tensor(np.stack([array, array])).shape == (2, 3, 20, 24)
    with pytest.raises(TypeError, match="uint8"):
        as_image_tensor(array.astype(np.float32))
    with pytest.raises(TypeError, match=r"x.float\(\) / 255"):
        as_image_tensor(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="PIL image"):
        as_image_tensor([1, 2, 3])


KW = {"backbone": DEFAULT_BACKBONE, "weights": None}


def test_metric_accepts_pil_numpy_and_tensors():
    clear_metric_cache()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ta, tb = (torch.from_numpy(v).permute(2, 0, 1).float() / 255 for v in (a, b))
    reference = metric(ta, tb, **KW)
    assert reference.shape == (1,)
    torch.testing.assert_close(metric(a, b, **KW), reference)
    torch.testing.assert_close(metric(Image.fromarray(a), Image.fromarray(b), **KW), reference)
    torch.testing.assert_close(metric(a, tb, **KW), reference)
    assert len(cpips_module._CACHE) == 1
    with pytest.raises(ValueError, match="resize or crop"):
        metric(a, a[:20], **KW)


def test_metric_tracks_gradients_only_when_asked():
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert not metric(x, y, **KW).requires_grad
    x.requires_grad_(True)
    d = metric(x, y, **KW)
    d.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_metric_caches_per_options_and_dtype():
    clear_metric_cache()
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    metric(x, y, **KW)
    metric(x, y, **KW)
    metric(x, y, layers=["gdn1"], **KW)
    metric(x.double(), y.double(), **KW)
    assert len(cpips_module._CACHE) == 3


def test_metric_rejects_feature_extractor(extractor):
    with pytest.raises(TypeError, match="CPIPS\\(backbone=extractor\\)"):
        metric(torch.rand(3, 32, 32), torch.rand(3, 32, 32), backbone=extractor)


def test_metric_cache_is_thread_safe(monkeypatch):
    clear_metric_cache()
    builds = []
    original = cpips_module.CPIPS

    def slow_build(*args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.2)  # widen the window in which an unlocked cache would build twice
        return original(*args, **kwargs)

    monkeypatch.setattr(cpips_module, "CPIPS", slow_build)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    results, errors = [], []
    barrier = threading.Barrier(6)

    def worker():
        try:
            barrier.wait()
            for _ in range(3):
                results.append(metric(x, y, **KW))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(builds) == 1
    assert len(results) == 18
    assert all(torch.equal(r, results[0]) for r in results)
