"""README.md: its Python blocks run, its ``codecloss ...`` commands parse, its install and hub lines work as written."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest
import torch
from torch import nn

from codecloss.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def _inline_code() -> list[str]:
    prose = re.sub(r"^```.*?^```", "", README, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def _commands() -> list[str]:
    """Every ``codecloss ...`` command line of the shell blocks (continuations joined, comments dropped)."""
    lines = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.split(r"\s+#", line, maxsplit=1)[0].strip()
            if command.startswith("codecloss "):
                lines.append(command)
    return lines


def _placeholders() -> dict[str, object]:
    """What README's snippets leave to the reader: data, a model, an optimiser, images (small, on the CPU)."""
    model = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 3, padding=1))
    return {
        "loader": [(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32))],
        "model": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.01),
        "stylised": torch.rand(1, 3, 32, 32, requires_grad=True),
        "content_image": torch.rand(1, 3, 32, 32),
        "style_image": torch.rand(1, 3, 48, 40),
        "x": torch.rand(2, 3, 32, 32),
        "y": torch.rand(2, 3, 32, 32),
    }


def test_python_blocks_run() -> None:
    blocks = _blocks("python")
    assert len(blocks) >= 3
    namespace = _placeholders()
    for block in blocks:  # in order: later blocks use what earlier ones define
        exec(compile(block.replace('"cuda"', '"cpu"'), "README.md", "exec"), namespace)  # noqa: S102


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        has = hasattr(obj, part)
        obj = getattr(obj, part) if has else importlib.import_module(".".join(parts[: i + 1]))  # a submodule
    return obj


def test_api_names_in_prose_exist() -> None:
    names = {m for code in _inline_code() for m in re.findall(r"\bcodecloss(?:\.[A-Za-z_]\w*)+", code)}
    assert "codecloss.list_backbones" in names
    for name in sorted(names):
        _resolve(name)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _check_names(argv: list[str]) -> None:
    """Every subcommand and ``--flag`` of ``argv`` exists (placeholders such as NAME or ROOT are fine)."""
    parser = build_parser()
    for token in argv:
        choices = _subcommands(parser)
        if token in choices:
            parser = choices[token]
        elif token.startswith("-"):
            flag = token.split("=", 1)[0]
            assert flag in parser._option_string_actions, f"{' '.join(argv)}: {parser.prog} has no option {flag}"
        elif choices and "|" in token:
            assert set(token.split("|")) <= set(choices), f"{' '.join(argv)}: {parser.prog} lacks one of {token}"
            return


@pytest.mark.parametrize("line", _commands())
def test_shell_commands_parse(line: str) -> None:
    argv = shlex.split(line)[1:]
    _check_names(argv)
    build_parser().parse_args(argv)  # exits with 2 on a wrong option or a missing argument


def test_inline_commands_name_real_subcommands_and_options() -> None:
    inline = [code for code in _inline_code() if code.startswith("codecloss ")]
    assert any("weights import" in code for code in inline)
    for code in inline:
        _check_names(shlex.split(code)[1:])


def test_install_lines_work_from_a_clone() -> None:
    installs = [line for block in _blocks("bash") for line in block.splitlines() if line.startswith("pip install")]
    installs += [code for code in _inline_code() if code.startswith("pip install")]
    assert installs
    for line in installs:
        assert "codecloss[" not in line, f"{line!r}: codecloss is not on PyPI; install from the clone with '.[extra]'"


def test_local_hub_loads_say_source_local() -> None:
    calls = re.findall(r"torch\.hub\.load\(([^)]*)\)", README)
    local = [call for call in calls if re.match(r'"[/.]', call)]
    assert local, "README shows no torch.hub.load from a clone"
    for call in local:
        assert 'source="local"' in call, f"torch.hub.load({call}) needs source=\"local\" for a path"
    model = eval(f"torch.hub.load({local[0].replace('/path/to/codecloss', str(ROOT))})")  # noqa: S307
    assert model(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)).shape == (1,)
