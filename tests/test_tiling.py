"""Exact tiled evaluation: receptive fields from the modules, tile plans, tiled CPIPS == untiled CPIPS."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import codecloss
from codecloss import CPIPS
from codecloss.backbones import get_backbone_spec, load_backbone
from codecloss.evaluate.images import read_image
from codecloss.features import FeatureExtractor
from codecloss.receptive_field import ReceptiveField, receptive_field
from codecloss.tiling import TilePlan, map_tiles


@pytest.fixture(scope="module")
def default_cpips() -> dict[str, CPIPS]:
    """Untiled CPIPS on the embedded default backbone, scalar and spatial, with per-tap parts."""
    extractor = load_backbone()
    return {kind: CPIPS(extractor, spatial=kind == "spatial", per_layer=True) for kind in ("scalar", "spatial")}


def _assert_tiled_equals_untiled(models: dict[str, CPIPS], x: torch.Tensor, y: torch.Tensor, tile: int) -> None:
    for kind, model in models.items():
        with torch.no_grad():
            total, parts = model(x, y)
            model.tile = tile
            try:
                tiled_total, tiled_parts = model(x, y)
            finally:
                model.tile = None
        assert tiled_total.shape == total.shape == ((len(x),) if kind == "scalar" else (len(x), 1, *x.shape[-2:]))
        torch.testing.assert_close(tiled_total, total, rtol=1e-5, atol=1e-7)
        assert list(tiled_parts) == list(parts) == model.layers
        for tap in parts:
            torch.testing.assert_close(tiled_parts[tap], parts[tap], rtol=1e-5, atol=1e-7)


def _support(grad: torch.Tensor, dim: int) -> tuple[int, int]:
    nonzero = grad.abs().sum(dim=tuple(d for d in range(grad.dim()) if d != dim)).nonzero().flatten()
    return int(nonzero.min()), int(nonzero.max())


def _fields(g_a: nn.Sequential) -> list:
    """Cumulative (height, width) fields per stage, composed from receptive_field of each stage."""
    field, out = (ReceptiveField(1, 0, 0),) * 2, []
    for stage in g_a:
        field = tuple(f.then(receptive_field(stage, axis)) for axis, f in enumerate(field))
        out.append(field)
    return out


def test_gdn_family_receptive_field_is_exact():
    """Computed from the modules (5x5 stride-2 convs x 4), and equal to the gradient's support at every tap."""
    extractor = load_backbone()
    x = torch.rand(1, 3, 96, 112, requires_grad=True)
    for tap in extractor.taps:
        rows, cols = extractor.receptive_field(tap.name)
        features = extractor(x, [tap.name])[tap.name]
        i, j = features.shape[-2] // 2, features.shape[-1] // 2
        (grad,) = torch.autograd.grad(features[0, :, i, j].sum(), x)
        assert rows.stride == cols.stride == tap.stride
        assert _support(grad, 2) == (tap.stride * i - rows.left, tap.stride * i + rows.right)
        assert _support(grad, 3) == (tap.stride * j - cols.left, tap.stride * j + cols.right)
    assert extractor.receptive_field("y")[0] == ReceptiveField(16, 30, 30)  # 2 * (1 + 2 + 4 + 8) on each side


def test_cheng2020_receptive_field_covers_the_gradient():
    g_a = get_backbone_spec("cheng2020-attn-mse-q1").build_codec().g_a
    fields = {tap.name: field[0] for tap, field in zip(FeatureExtractor(g_a).taps, _fields(g_a))}
    # rbs: 3x3 stride 2 then 3x3 at stride 2; rb: two 3x3; attn: the longer branch, three 3x3 at stride 4
    assert fields["rbs1"] == ReceptiveField(2, 3, 3) and fields["rb1"] == ReceptiveField(2, 7, 7)
    assert fields["attn2"] == ReceptiveField(4, 25, 25)
    x = torch.rand(1, 3, 96, 96, requires_grad=True)
    features = g_a[:5](x)  # rb2 (on the unfrozen g_a: CompressAI's GDN allows the blocks' in-place adds)
    (grad,) = torch.autograd.grad(features[0, :, 12, 12].sum(), x)
    assert _support(grad, 2) == (48 - fields["rb2"].left, 48 + fields["rb2"].right)


def test_unknown_modules_have_no_field_and_cannot_be_tiled():
    assert receptive_field(nn.AdaptiveAvgPool2d(1)) is None
    assert receptive_field(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")) is None
    extractor = FeatureExtractor(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Upsample(scale_factor=2), nn.Conv2d(8, 8, 3, 2, 1)))
    assert extractor.receptive_field("y") is None
    with pytest.raises(ValueError, match="receptive field is unknown"):
        CPIPS(extractor, layers=["y"], tile=64)


def test_plan_aligns_tiles_to_the_deepest_stride():
    plan = load_backbone().tile_plan(["gdn1", "y"], 100)
    assert plan.alignment == 16 and plan.tile == 96 and plan.halo == (32, 32)
    tiles = plan.tiles(97, 200)
    assert [(t.row, t.col) for t in tiles] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    last = tiles[-1]
    assert (last.rows, last.cols) == (slice(64, 97), slice(160, 200))
    assert last.owned["y"] == (slice(2, 3), slice(2, 3)) and last.owned["gdn1"] == (slice(16, 17), slice(16, 20))


@pytest.mark.parametrize(("size", "tile"), [((97, 131), 48), ((250, 333), 128)])
def test_tiled_equals_untiled_on_random_images(default_cpips, size, tile):
    _assert_tiled_equals_untiled(default_cpips, torch.rand(1, 3, *size), torch.rand(1, 3, *size), tile)


def test_tiled_equals_untiled_on_real_images(default_cpips, shared_data):
    kodak = shared_data / "eval" / "kodak"
    if not (kodak / "kodim01.png").is_file():
        pytest.skip("Kodak images not found")
    x = read_image(kodak / "kodim01.png")[:, 11:261, 7:340].unsqueeze(0)  # 250 x 333
    y = read_image(kodak / "kodim02.png")[:, 3:100, 40:171].unsqueeze(0)  # 97 x 131
    _assert_tiled_equals_untiled(default_cpips, x, x.flip(-1), 128)
    _assert_tiled_equals_untiled(default_cpips, y, (y + 0.05 * torch.randn_like(y)).clamp(0, 1), 48)


def test_a_halo_below_the_receptive_field_is_not_exact(default_cpips):
    """The check above can fail: one alignment step less overlap changes the deepest tap's map."""
    model = default_cpips["scalar"]
    plan = model.extractor.tile_plan(model.layers, 48)
    short = TilePlan.__new__(TilePlan)
    short.__dict__.update(plan.__dict__)
    short._axes = tuple(dataclasses.replace(axis, halo=axis.halo - 16) for axis in plan._axes)
    x, y = torch.rand(1, 3, 81, 99), torch.rand(1, 3, 81, 99)
    with torch.no_grad():
        exact = map_tiles(model.distance_maps, (x, y), plan)["y"]
        short_maps = map_tiles(model.distance_maps, (x, y), short)["y"]
        untiled = model.distance_maps(x, y)["y"]
    torch.testing.assert_close(exact, untiled, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(short_maps, untiled, rtol=1e-3, atol=1e-6)


def test_tiled_cheng2020_matches():
    extractor = FeatureExtractor(get_backbone_spec("cheng2020-anchor-mse-q1").build_codec().g_a)
    untiled, tiled = CPIPS(extractor, layers=["rb1", "y"]), CPIPS(extractor, layers=["rb1", "y"], tile=32)
    x, y = torch.rand(1, 3, 50, 70), torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        torch.testing.assert_close(tiled(x, y), untiled(x, y), rtol=1e-5, atol=1e-7)


def test_tiled_gradients_match(default_cpips):
    model = CPIPS(default_cpips["scalar"].extractor)
    x, y = torch.rand(1, 3, 50, 70, requires_grad=True), torch.rand(1, 3, 50, 70)
    (grad,) = torch.autograd.grad(model(x, y).sum(), x)
    model.tile = 32
    (grad_tiled,) = torch.autograd.grad(model(x, y).sum(), x)
    torch.testing.assert_close(grad_tiled, grad, rtol=1e-4, atol=1e-6 * float(grad.abs().max()))


def test_metric_takes_tile():
    x, y = torch.rand(3, 70, 90), torch.rand(3, 70, 90)
    torch.testing.assert_close(codecloss.metric(x, y, tile=32), codecloss.metric(x, y), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("tile", "error", "match"), [
    (8, ValueError, r"tile: expected an int >= 16 \(the stride of tap 'y'\), got 8"),
    (0, ValueError, "positive"),
    (64.0, TypeError, "expected None or an int"),
    ("64", TypeError, "expected None or an int"),
    (True, TypeError, "expected None or an int"),
])
def test_bad_tiles_are_rejected(tile, error, match):
    with pytest.raises(error, match=match):
        CPIPS(load_backbone(), tile=tile)


def test_shallow_taps_align_to_their_own_stride():
    model = CPIPS(load_backbone(), layers=["gdn1"], tile=2)
    x, y = torch.rand(1, 3, 21, 19), torch.rand(1, 3, 21, 19)
    with torch.no_grad():
        torch.testing.assert_close(model(x, y), CPIPS(model.extractor, layers=["gdn1"])(x, y), rtol=1e-5, atol=1e-7)
