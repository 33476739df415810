"""The `codecloss` console script: help, version, usage errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from codecloss import __version__
from codecloss.cli import COMMANDS, main


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"codecloss {__version__}"


def test_no_command_prints_help_and_exits_2(capsys) -> None:
    assert main([]) == 2
    assert "usage: codecloss" in capsys.readouterr().out


def test_unknown_command_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("command", [c.replace("_", "-") for c in COMMANDS])
def test_every_subcommand_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: codecloss" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    script = shutil.which("codecloss", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    assert script, "the `codecloss` console script is not on PATH: install the project with pip"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "codecloss" in result.stdout
