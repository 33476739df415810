"""Import direction: specs/checkpoints <- weights <- backbones, never the other way (design.md's layering)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import codecloss

PACKAGE = Path(codecloss.__file__).parent

#: module -> codecloss modules it must not import, at any level (top, function bodies).
FORBIDDEN = {
    "weights": ("codecloss.backbones", "codecloss.features", "codecloss.cpips", "codecloss.losses"),
    "specs": ("codecloss.backbones", "codecloss.weights", "codecloss.features"),
    "checkpoints": ("codecloss.backbones", "codecloss.weights", "codecloss.features", "codecloss.specs"),
}


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_forbidden_imports_anywhere_in_the_lower_modules():
    for name, forbidden in FORBIDDEN.items():
        files = sorted((PACKAGE / name).glob("*.py")) if (PACKAGE / name).is_dir() else [PACKAGE / f"{name}.py"]
        assert files
        for path in files:
            imported = _imported(path)
            assert "codecloss" not in imported, f"{path.name} imports the package root (which imports everything)"
            bad = sorted(i for i in imported if i.startswith(forbidden))
            assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_importing_weights_does_not_load_backbones():
    """At run time too: with the package root's re-exports bypassed, codecloss.weights pulls in no backbone code."""
    script = f"""
import importlib, sys, types
root = types.ModuleType("codecloss")
root.__path__ = [{str(PACKAGE)!r}]
sys.modules["codecloss"] = root
importlib.import_module("codecloss.weights")
spec = importlib.import_module("codecloss.weights").get_weight_spec("default", "codecloss-small-mse")
loaded = sorted(m for m in sys.modules if m.startswith("codecloss."))
assert "codecloss.backbones" not in loaded and "codecloss.features" not in loaded, loaded
print(spec.backbone, loaded)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("codecloss-small-mse ")
    assert "codecloss.specs" in result.stdout and "codecloss.checkpoints" in result.stdout


def test_backbones_reexports_the_moved_names():
    from codecloss import backbones, checkpoints, specs

    assert backbones.BackboneSpec is specs.BackboneSpec is codecloss.BackboneSpec
    assert backbones.CHECKPOINT_SUFFIXES is checkpoints.CHECKPOINT_SUFFIXES
    assert backbones.load_codec_state_dict is checkpoints.load_codec_state_dict
