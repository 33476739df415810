"""Progress bars: shown only when stderr is a terminal unless forced; --progress/--no-progress on every command."""

from __future__ import annotations

import argparse
import io

import pytest
import torch

from codecloss import cli
from codecloss._progress import progress, progress_enabled


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_bar(monkeypatch, stderr: io.StringIO, enabled: bool | None) -> str:
    monkeypatch.setattr("sys.stderr", stderr)
    for _ in progress(range(3), enabled, desc="work"):
        pass
    return stderr.getvalue()


def test_bar_absent_when_stderr_is_not_a_tty(monkeypatch):
    assert _run_bar(monkeypatch, io.StringIO(), None) == ""
    assert progress_enabled(None) is False


def test_bar_present_on_a_terminal_and_when_forced(monkeypatch):
    assert "work" in _run_bar(monkeypatch, _Terminal(), None)
    assert "3/3" in _run_bar(monkeypatch, io.StringIO(), True)
    assert _run_bar(monkeypatch, _Terminal(), False) == ""


def test_stderr_without_isatty(monkeypatch):
    monkeypatch.setattr("sys.stderr", object())
    assert progress_enabled(None) is False


def test_library_bars_follow_the_rule(monkeypatch):
    from codecloss.evaluate.recovery import mse_scorer, recover

    reference = torch.rand(1, 3, 16, 16)
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    recover(reference, mse_scorer(), steps=2, progress=None)
    assert pipe.getvalue() == ""
    recover(reference, mse_scorer(), steps=2, progress=True)
    assert "MSE / uniform" in pipe.getvalue()  # leave=False: the bar clears itself at the end


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


#: Subcommands that show progress bars.
WITH_BARS = ("train-codec", "eval bapps", "eval mos", "eval recovery", "train-cpips", "weights fetch", "bench",
             "sr-study", "stylize")


@pytest.mark.parametrize("command", WITH_BARS)
def test_every_command_with_bars_takes_progress_options(command):
    parser = _subparsers(cli.build_parser())[command]
    option = next(a for a in parser._actions if "--progress" in a.option_strings)
    assert isinstance(option, argparse.BooleanOptionalAction)
    assert option.dest == "progress" and option.default is None and "--no-progress" in option.option_strings


def test_cli_eval_recovery_has_no_bar_in_a_pipe_and_one_when_forced(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "refs"
    root.mkdir()
    Image.fromarray((torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy()).save(root / "a.png")
    argv = ["eval", "recovery", "--root", str(root), "--images", "1", "--crop", "0", "--steps", "2",
            "--init", "uniform", "--no-baselines", "--weights", "none", "--json"]
    assert cli.main(argv) == 0
    assert "/ uniform" not in capsys.readouterr().err
    assert cli.main([*argv, "--progress"]) == 0
    assert "/ uniform" in capsys.readouterr().err
