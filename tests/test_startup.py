"""Start-up cost: ``import codecloss`` and ``codecloss --help`` do not import torch, compressai or torch_geometric.

Each check runs in a fresh interpreter, since this test session has imported them all already.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import codecloss

HEAVY = ("torch", "compressai", "torch_geometric")


def _imported_after(code: str, *python_options: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; which of :data:`HEAVY` it left imported."""
    probe = f"{code}\nimport sys\nprint(' '.join(name for name in {HEAVY!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, *python_options, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1].split()


def test_import_codecloss_imports_no_torch_nor_compressai() -> None:
    assert _imported_after("import codecloss; codecloss.__version__") == []


def test_cli_help_imports_no_torch() -> None:
    code = "from codecloss.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []


@pytest.mark.parametrize("command", ["metric", "eval"])
def test_metric_help_imports_no_torch(command: str) -> None:
    """The commands a new user tries first show their options (with the default backbone's id) at once."""
    code = f"from codecloss.cli import main\ntry:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []


def test_the_default_backbone_id_costs_no_import() -> None:
    assert _imported_after("import codecloss; codecloss.DEFAULT_BACKBONE") == []


def test_first_compressai_import_from_a_submodule_is_quiet() -> None:
    """torch_geometric's deprecated ``torch.jit.script`` call is silenced during compressai's import only."""
    code = (
        "import warnings\nimport codecloss.features\n"
        "try:\n    warnings.warn('`torch.jit.script` is deprecated', FutureWarning)\nexcept FutureWarning:\n    pass\n"
        "else:\n    raise SystemExit('the filter outlived the import of compressai')"
    )
    assert _imported_after(code, "-W", "error::FutureWarning") == list(HEAVY)


def test_every_public_name_imports_and_is_listed() -> None:
    namespace: dict[str, object] = {}
    exec("from codecloss import *", namespace)
    for name in codecloss.__all__:
        assert namespace[name] is getattr(sys.modules[f"codecloss.{codecloss._EXPORTS[name]}"], name)
    assert set(codecloss.__all__) <= set(dir(codecloss))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        codecloss.no_such_name  # noqa: B018
