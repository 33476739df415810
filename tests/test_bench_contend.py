"""``codecloss bench --contend N``: argument handling and cleanup of the busy competitors (no timings)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator

import pytest
import torch

from codecloss import bench
from codecloss.bench import runner
from codecloss.bench.contend import BUSY_LOOP, competitors
from codecloss.cli import main

TINY = dict(networks=("alexnet-lpips",), modes=("forward",), batches=(1,), resolutions=(32,), reps=1, warmup=0,
            threads=1, isolate=False, add_baseline=False)


@pytest.fixture()
def started(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen]:
    """The competitor processes that :func:`codecloss.bench.run` starts, recorded as it starts them."""
    processes: list[subprocess.Popen] = []

    @contextlib.contextmanager
    def recording(count: int, seconds: float) -> Iterator[list[subprocess.Popen]]:
        with competitors(count, seconds) as running:
            processes.extend(running)
            yield running

    monkeypatch.setattr(runner, "competitors", recording)
    return processes


def test_competitors_run_in_the_block_and_are_killed_on_error() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with competitors(2, 60) as processes:
            assert len(processes) == 2 and all(p.poll() is None for p in processes)
            raise RuntimeError("boom")
    assert all(p.poll() is not None for p in processes)


def test_a_competitor_stops_by_itself_after_its_time_bound() -> None:
    process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid()), "0.1"])
    assert process.wait(timeout=60) == 0


def test_run_reports_contention_and_stops_the_competitors(started: list[subprocess.Popen]) -> None:
    result = bench.run(bench.BenchConfig(contend=1, **TINY), progress=False)
    assert result.records[0].status == "ok" and result.settings["contend"] == 1
    assert "contention: 1 busy competitor" in bench.format_table(result)
    assert len(started) == 1 and started[0].poll() is not None
    # the run also records whether bf16 would be fast here (docs/benchmarks.md quotes it)
    assert result.machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert f"fast bf16 on CPU (AVX512-BF16 or AMX): {result.machine['fast_bf16_cpu']}" in bench.format_table(result)


def test_competitors_are_stopped_when_the_run_fails(started: list[subprocess.Popen], monkeypatch) -> None:
    def failing(*_args: object) -> None:
        raise RuntimeError("measurement failed")

    monkeypatch.setattr(runner, "run_cells", failing)
    with pytest.raises(RuntimeError, match="measurement failed"):
        bench.run(bench.BenchConfig(contend=2, **TINY), progress=False)
    assert len(started) == 2 and all(p.poll() is not None for p in started)


def test_no_contention_starts_nothing(started: list[subprocess.Popen]) -> None:
    result = bench.run(bench.BenchConfig(**TINY), progress=False)
    assert started == [] and result.settings["contend"] == 0
    assert "contention" not in bench.format_table(result)


@pytest.mark.parametrize("contend", [-1, 1.5, True, "2"])
def test_config_rejects_bad_contend(contend: object) -> None:
    with pytest.raises(ValueError, match="contend: expected an integer >= 0"):
        bench.BenchConfig(contend=contend, **TINY)


def test_cli_contend_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--contend", "-1", "--no-progress"]) == 2
    assert "contend: expected an integer >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--contend", "two"])
    assert exit_info.value.code == 2


def test_cli_passes_contend_through(started: list[subprocess.Popen], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--networks", "alexnet-lpips", "--modes", "forward", "--batch", "1", "--resolution", "32",
                 "--reps", "1", "--warmup", "0", "--threads", "1", "--no-isolate", "--no-progress", "--contend", "1"])
    assert code == 0 and len(started) == 1 and started[0].poll() is not None
    assert "contention: 1 busy competitor" in capsys.readouterr().out
