"""The `codecloss` console script: help, version, usage errors."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from codecloss import __version__
from codecloss.cli import COMMANDS, build_parser, main


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


def _leaf_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable (sub)command's parser, by its typed name (``eval bapps``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_leaf_parsers(sub, f"{prefix} {name}".strip()) or {f"{prefix} {name}".strip(): sub})
    return found


def test_every_computing_command_takes_threads() -> None:
    leaves = _leaf_parsers(build_parser())
    takes = {name for name, parser in leaves.items() if any("--threads" in a.option_strings for a in parser._actions)}
    assert {"metric", "eval bapps", "eval recovery", "bench", "stylize", "sr-study", "train-codec", "train-cpips"} <= takes
    assert not any(name.startswith("weights") for name in takes)


def test_threads_reaches_torch_for_the_command_only(monkeypatch) -> None:
    import torch

    import codecloss.commands.metric

    seen: list[int] = []
    interop: list[int] = []
    monkeypatch.setattr(codecloss.commands.metric, "run", lambda args: seen.append(torch.get_num_threads()) or 0)
    monkeypatch.setattr(torch, "set_num_interop_threads", interop.append)  # settable once per process: keep it free
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1 already (OMP_NUM_THREADS=1)
    try:
        assert main(["metric", "a.png", "b.png", "--threads", "1"]) == 0
        assert seen == [1] and interop == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


_TORCH_IMPORT_SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
sys.meta_path.insert(0, Spy())
from codecloss.cli import main
main(["bench", "--list-networks"])
print(seen)
"""


@pytest.mark.parametrize(("exported", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_waits_are_passive_when_torch_loads_unless_exported(exported: str | None, expected: str) -> None:
    """OpenMP reads OMP_WAIT_POLICY when torch loads: the CLI must set it before, and a user's value wins."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if exported is not None:
        env["OMP_WAIT_POLICY"] = exported
    result = subprocess.run([sys.executable, "-c", _TORCH_IMPORT_SPY], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == repr([expected])


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_bad_threads_is_a_usage_error(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["metric", "a.png", "b.png", "--threads", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"codecloss metric: error: argument --threads: expected an integer >= 1, got {value!r}"
    assert "Traceback" not in err
