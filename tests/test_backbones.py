"""Backbone ids, zoo configurations and loading weights from checkpoint files."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
from compressai.zoo import image as zoo

import codecloss
from codecloss.backbones import ZOO_ARCHITECTURES, get_backbone_spec


def test_every_zoo_architecture_metric_and_quality_is_listed() -> None:
    ids = codecloss.list_backbones()
    assert ids[0] == codecloss.DEFAULT_BACKBONE
    for arch in ZOO_ARCHITECTURES:
        for metric in ("mse", "ms-ssim"):
            for quality, config in zoo.cfgs[arch].items():
                spec = get_backbone_spec(f"{arch}-{metric}-q{quality}")
                assert (spec.architecture, spec.metric, spec.quality, spec.config) == (arch, metric, quality, tuple(config))
    assert ids[:3] == ["codecloss-wide-sem", "codecloss-wide-mse", "codecloss-small-mse"]  # shipped, the default first
    assert len(ids) == 3 + 2 * sum(len(zoo.cfgs[a]) for a in ZOO_ARCHITECTURES)
    assert get_backbone_spec("bmshj2018-hyperprior-mse-q6").config == (192, 320)
    assert "cheng2020-attn-mse-q7" not in ids


def _features(extractor, x):
    return extractor(x, extractor.tap_names)


def test_weights_from_compressai_checkpoint_file(tmp_path) -> None:
    codec = get_backbone_spec("bmshj2018-factorized-mse-q1").build_codec()
    path = tmp_path / "bmshj2018-factorized-prior-1-446d5c7f.pth.tar"
    torch.save(codec.state_dict(), path)
    loaded = codecloss.load_backbone("bmshj2018-factorized-mse-q1", weights=path)
    expected = codecloss.from_compressai(codec)
    x = torch.rand(1, 3, 32, 32)
    for a, b in zip(_features(loaded, x).values(), _features(expected, x).values()):
        torch.testing.assert_close(a, b)


def test_weights_from_old_training_checkpoint_with_renamed_keys(tmp_path) -> None:
    codec = get_backbone_spec("cheng2020-anchor-mse-q1").build_codec()
    old_style = {"module." + k.replace(".skip.", ".downsample."): v for k, v in codec.state_dict().items()}
    old_style = {k: v for k, v in old_style.items() if "_reparam." not in k}  # older files lack these buffers
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": old_style}, path)
    loaded = codecloss.load_backbone("cheng2020-anchor-mse-q1", weights=str(path))
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(_features(loaded, x)["y"], _features(codecloss.from_compressai(codec), x)["y"])


def test_g_a_only_file_loads(tmp_path) -> None:
    codec = get_backbone_spec(codecloss.DEFAULT_BACKBONE).build_codec()
    path = tmp_path / "g_a.pt"
    torch.save({f"g_a.{k}": v for k, v in codec.g_a.state_dict().items()}, path)
    loss = codecloss.CodecPerceptualLoss(weights=path)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loss.features(x)["y"], _features(codecloss.from_compressai(codec), x)["y"])


def test_mismatched_checkpoint_is_rejected(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save(get_backbone_spec("bmshj2018-factorized-mse-q1").build_codec().state_dict(), path)
    with pytest.raises(ValueError, match="weights: .* does not fit this backbone"):
        codecloss.load_backbone("cheng2020-anchor-mse-q1", weights=path)


def test_non_tensor_checkpoint_is_rejected(tmp_path) -> None:
    path = tmp_path / "bad.pth"
    torch.save({"a": 1}, path)
    with pytest.raises(ValueError, match="not a state_dict of tensors"):
        codecloss.load_backbone(codecloss.DEFAULT_BACKBONE, weights=path)


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        (lambda p: p.write_bytes(b"garbage" * 10), r"UnpicklingError: Unsupported operand \d+"),
        (lambda p: p.write_bytes(b""), r"EOFError, the file is empty or cut short"),
        (lambda p: torch.save({"args": argparse.Namespace(lr=1)}, p), r"UnpicklingError: Unsupported global: GLOBAL argparse.Namespace"),
    ],
)
def test_unloadable_weights_file_is_one_line(tmp_path, write, reason) -> None:
    path = tmp_path / "junk.pth"
    write(path)
    pattern = rf"^weights: '{re.escape(str(path))}' is not a loadable PyTorch file \({reason}[^)]*\); expected a codec state_dict"
    with pytest.raises(ValueError, match=pattern) as info:
        codecloss.CodecPerceptualLoss(weights=path)
    assert "\n" not in str(info.value) and "torch.save(model.state_dict(), path)" in str(info.value)


def test_load_codec_round_trips_a_bitstream(tmp_path) -> None:
    codec = get_backbone_spec(codecloss.DEFAULT_BACKBONE).build_codec()
    path = tmp_path / "codec.pth"
    torch.save(codec.state_dict(), path)
    loaded = codecloss.load_codec(codecloss.DEFAULT_BACKBONE, weights=path)
    assert not loaded.training
    x = torch.rand(1, 3, 64, 64)
    out = loaded.compress(x)
    assert len(out["strings"][0][0]) > 0
    x_hat = loaded.decompress(out["strings"], out["shape"])["x_hat"]
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    with pytest.raises(ValueError, match="does not fit the cheng2020-anchor-mse-q1 codec"):
        codecloss.load_codec("cheng2020-anchor-mse-q1", weights=path)
