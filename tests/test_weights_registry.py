"""The weight registry: CompressAI zoo entries, lookups, validation, user entries (Python and JSON),
shipped assets and the cache folder resolution."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from compressai.zoo.image import model_urls
from weights_server import weights_env  # noqa: F401

from codecloss import list_backbones
from codecloss.weights import (
    IntegrityError,
    WeightSpec,
    cache_dir,
    get_weight_spec,
    get_weights_file,
    list_weights,
    register_weights,
    registry,
)
from codecloss.weights import cache as cache_module

pytestmark = pytest.mark.usefixtures("weights_env")

ZOO_COUNTS = {"bmshj2018-factorized": 8, "bmshj2018-hyperprior": 8, "mbt2018-mean": 8, "mbt2018": 8,
              "cheng2020-anchor": 6, "cheng2020-attn": 6}


def test_every_zoo_checkpoint_has_an_entry_named_as_its_backbone():
    zoo = [get_weight_spec(name) for name in list_weights() if get_weight_spec(name).quality is not None]
    assert len(zoo) == 2 * sum(ZOO_COUNTS.values()) == 88
    for spec in zoo:
        assert spec.name == spec.backbone == f"{spec.architecture}-{spec.metric}-q{spec.quality}"
        assert spec.name in list_backbones()
        assert spec.url == model_urls[spec.architecture][spec.metric][spec.quality]
        assert spec.filename.endswith(f"-{spec.sha256_prefix}.pth.tar") and len(spec.sha256_prefix) == 8
        assert spec.sha256 is None and spec.license == "BSD-3-Clause-Clear (CompressAI)"
        assert spec.citation and spec.source
    assert {s.architecture for s in zoo} == set(ZOO_COUNTS)


def test_zoo_entry_fields_match_compressai():
    spec = get_weight_spec("bmshj2018-hyperprior-mse-q3")
    assert spec.url == "https://compressai.s3.amazonaws.com/models/v1/bmshj2018-hyperprior-3-6d87be32.pth.tar"
    assert (spec.sha256_prefix, spec.config, spec.metric) == ("6d87be32", (128, 192), "mse")
    assert "ICLR 2018" in spec.citation
    assert "CVPR 2020" in get_weight_spec("cheng2020-attn-ms-ssim-q6").citation


def test_default_resolves_to_entry_named_as_backbone():
    assert get_weight_spec("default", "mbt2018-ms-ssim-q2").name == "mbt2018-ms-ssim-q2"
    with pytest.raises(ValueError, match="'default' needs a backbone"):
        get_weight_spec("default")


def test_default_prefers_flagged_entry():
    flagged = WeightSpec.for_backbone("mbt2018-ms-ssim-q2", name="mine", url="https://example.org/mine.pth",
                                      sha256="a" * 64, default=True)
    register_weights(flagged)
    assert get_weight_spec("default", "mbt2018-ms-ssim-q2") == flagged
    with pytest.raises(ValueError, match="already the default"):
        register_weights(dataclasses.replace(flagged, name="mine2", url="https://example.org/mine2.pth"))


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown registry name 'bmshj2018-factorised-mse-q1'.*'bmshj2018-factorized-mse-q1'"):
        get_weight_spec("bmshj2018-factorised-mse-q1")


def test_backbone_mismatch_is_refused():
    with pytest.raises(ValueError, match="is for backbone 'mbt2018-mse-q1', not 'mbt2018-mse-q2'"):
        get_weight_spec("mbt2018-mse-q1", "mbt2018-mse-q2")


@pytest.mark.parametrize("fields, field", [
    ({"sha256": "abc"}, "sha256"),
    ({"sha256": None, "sha256_prefix": "12"}, "sha256_prefix"),
    ({"sha256": None}, "sha256"),
    ({"url": "ftp://example.org/x.pth"}, "url"),
    ({"url": "https://example.org/dir/"}, "url"),
    ({"size": 0}, "size"),
    ({"name": "x.pth"}, "name"),
    ({"name": "default"}, "name"),
    ({"config": (64, -1)}, "config"),
    ({"quality": "3"}, "quality"),
    ({"url": None}, "asset"),
    ({"asset": "a.pt"}, "asset"),
    ({"default": True}, "default"),
])
def test_weightspec_validation_names_the_field(fields, field):
    base = {"name": "x", "url": "https://example.org/x.pth", "sha256": "0" * 64}
    with pytest.raises(ValueError, match=f"field '{field}'"):
        WeightSpec(**{**base, **fields})


def test_for_backbone_rejects_contradicting_codec_fields():
    with pytest.raises(ValueError, match="field 'config'"):
        WeightSpec.for_backbone("bmshj2018-factorized-mse-q1", name="x", config=(64, 96),
                                url="https://example.org/x.pth", sha256="0" * 64)


def test_register_weights_conflicts():
    spec = WeightSpec(name="mine", url="https://example.org/a/mine.pth", sha256="b" * 64)
    register_weights(spec)
    register_weights(spec)  # identical: no-op
    changed = dataclasses.replace(spec, sha256="c" * 64)
    with pytest.raises(ValueError, match="already registered with different fields"):
        register_weights(changed)
    register_weights(changed, replace=True)
    assert get_weight_spec("mine").sha256 == "c" * 64
    with pytest.raises(ValueError, match="file name 'mine.pth' is already used by entry 'mine'"):
        register_weights(dataclasses.replace(spec, name="other", url="https://example.org/b/mine.pth"))
    with pytest.raises(TypeError, match="expected a WeightSpec"):
        register_weights({"name": "dict"})


def _write_registry(tmp_path: Path, monkeypatch, entries) -> Path:
    path = tmp_path / "my-registry.json"
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    monkeypatch.setenv("CODECLOSS_REGISTRY", str(path))
    return path


def test_user_registry_file_adds_entries(tmp_path, monkeypatch):
    _write_registry(tmp_path, monkeypatch, [
        {"name": "my-finetune", "backbone": "bmshj2018-factorized-mse-q1",
         "url": "https://example.org/w/my-finetune.pth", "sha256": "d" * 64, "size": 123, "license": "MIT"},
        {"name": "my-head", "url": "file:///srv/heads/head.pt", "sha256_prefix": "0123abcd"},
    ])
    spec = get_weight_spec("my-finetune", "bmshj2018-factorized-mse-q1")
    assert (spec.architecture, spec.config, spec.size) == ("bmshj2018-factorized", (128, 192), 123)
    assert get_weight_spec("my-head").backbone is None
    assert list_weights("bmshj2018-factorized-mse-q1") == ["bmshj2018-factorized-mse-q1", "my-finetune"]
    monkeypatch.delenv("CODECLOSS_REGISTRY")
    assert "my-finetune" not in list_weights()  # read at call time


@pytest.mark.parametrize("entries, message", [
    ([{"name": "e", "url": "https://example.org/e.pth", "sha256": "xyz"}], r"entry 0 \('e'\): .*field 'sha256'"),
    ([{"name": "e", "url": "https://example.org/e.pth", "sha256": "0" * 64, "size": -5}], r"entry 0 \('e'\): .*field 'size'"),
    ([{"name": "e", "url": "https://example.org/e.pth", "sha256": "0" * 64, "sha": 1}], r"unknown field\(s\) \['sha'\]"),
    ([{"url": "https://example.org/e.pth", "sha256": "0" * 64}], "entry 0 \\(None\\): field 'name' is required"),
    ([{"name": "e", "backbone": "mbt2018-mse-q1", "quality": 5, "url": "https://example.org/e.pth",
       "sha256": "0" * 64}], "field 'quality'"),
    ([{"name": "bmshj2018-factorized-mse-q1", "url": "https://example.org/e.pth", "sha256": "0" * 64}],
     "already registered with different fields"),
    ([["not", "an", "object"]], "entry 0: expected an object"),
    ({"name": "e"}, "expected a JSON list of entries"),
    ("[{", "not readable JSON"),
])
def test_user_registry_file_errors_name_file_entry_and_field(tmp_path, monkeypatch, entries, message):
    path = _write_registry(tmp_path, monkeypatch, entries)
    with pytest.raises(ValueError, match=message) as info:
        list_weights()
    assert f"CODECLOSS_REGISTRY file {str(path)!r}" in str(info.value)


def test_missing_user_registry_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("CODECLOSS_REGISTRY", str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match="nope.json'.*no such file"):
        get_weight_spec("mbt2018-mse-q1")


def test_shipped_asset_is_verified_and_never_downloaded(tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    assets.mkdir()
    body = b"shipped weights"
    (assets / "small.pt").write_bytes(body)
    monkeypatch.setattr(cache_module, "assets_dir", lambda: assets)
    spec = WeightSpec.for_backbone("codecloss-small-mse", asset="small.pt", sha256=hashlib.sha256(body).hexdigest())
    register_weights(spec, replace=True)  # what an entry in registry.SHIPPED does (this test's registry copy)
    assert get_weight_spec("default", "codecloss-small-mse") == spec
    assert get_weights_file("default", "codecloss-small-mse") == assets / "small.pt"
    assert not cache_dir().exists()
    (assets / "small.pt").write_bytes(b"shipped weightz")
    with pytest.raises(IntegrityError, match="does not match"):
        get_weights_file("codecloss-small-mse")
    (assets / "small.pt").unlink()
    with pytest.raises(IntegrityError, match="missing; reinstall codecloss"):
        get_weights_file("codecloss-small-mse")


def test_shipped_entries_are_in_the_registry():
    assert all(registry._ENTRIES[s.name] == s and s.asset and s.sha256 for s in registry.SHIPPED)


def test_cache_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CODECLOSS_HOME", str(tmp_path / "cc"))
    assert cache_dir() == tmp_path / "cc"
    monkeypatch.delenv("CODECLOSS_HOME")
    assert cache_dir() == tmp_path / "torch" / "codecloss"
    monkeypatch.delenv("TORCH_HOME")
    assert cache_dir() == tmp_path / "xdg" / "torch" / "codecloss"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "torch" / "codecloss"
    monkeypatch.setenv("CODECLOSS_HOME", "~/elsewhere")
    assert cache_dir() == tmp_path / "home" / "elsewhere"
