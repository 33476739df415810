"""Run a benchmark sweep: one subprocess per network, one record per measured cell."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from codecloss.bench import measure
from codecloss.bench.contend import competitors
from codecloss.bench.networks import (
    BASELINE,
    BenchNetwork,
    NetworkUnavailable,
    build_network,
    check_networks,
    default_networks,
    is_codec,
)

__all__ = [
    "DTYPES",
    "MODES",
    "BenchConfig",
    "BenchRecord",
    "BenchResult",
    "Cell",
    "attach_speedups",
    "run",
    "run_cells",
]

logger = logging.getLogger(__name__)

#: ``forward``: the loss under ``torch.no_grad`` (metric use); ``forward_backward``: loss and its
#: gradient w.r.t. the input (training use); ``content_style``: forward+backward of content + Gram style loss.
MODES = ("forward", "forward_backward", "content_style")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
WEIGHTS_NOTE = "random initialisation (speed and memory do not depend on weight values; nothing is downloaded)"
_RECORD_PREFIX = "@codecloss-bench@ "
# glibc settings that keep freed memory in the heap instead of returning it (fewer page faults).
#: Time bound of each ``contend`` competitor (it also stops when the benchmark's process is gone).
_CONTEND_SECONDS = 3600.0
_MALLOC_KEEP_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34), "MALLOC_TOP_PAD_": str(1 << 28)}


@dataclass(frozen=True)
class Cell:
    """One measurement: a network under one setting."""

    network: str
    mode: str
    device: str
    dtype: str
    channels_last: bool
    compile: bool
    batch: int
    resolution: int


@dataclass
class BenchRecord:
    """Result of one :class:`Cell` (times in ms, memory in MiB, FLOPs and, on CPU, minor page faults per step).

    ``status`` is ``"ok"``, ``"skipped: <why>"``, ``"n/a: <why>"`` or ``"error: <message>"``;
    the measured fields are ``None`` unless it is ``"ok"``.
    """

    network: str
    kind: str
    taps: str
    mode: str
    device: str
    dtype: str
    channels_last: bool
    compile: bool
    batch: int
    resolution: int
    status: str = "ok"
    params: int | None = None
    reps: int = 0
    time_median_ms: float | None = None
    time_iqr_ms: float | None = None
    times_ms: list[float] = field(default_factory=list)
    first_step_ms: float | None = None
    peak_mem_mb: float | None = None
    page_faults_per_step: float | None = None
    gflop: float | None = None
    gflops_per_s: float | None = None
    matmul_peak_pct: float | None = None
    speedup_vs_baseline: float | None = None
    mem_ratio_vs_baseline: float | None = None
    note: str = ""

    @classmethod
    def for_cell(cls, cell: Cell, status: str, kind: str = "", taps: str = "") -> "BenchRecord":
        """An unmeasured record (skipped / n/a / error) for ``cell``."""
        return cls(kind=kind, taps=taps, status=status, **dataclasses.asdict(cell))


@dataclass(frozen=True)
class BenchConfig:
    """What to measure: the product of every option below, for each network.

    Args:
        networks: network names (see :func:`codecloss.bench.list_networks`).
        modes: subset of :data:`MODES`.
        devices: ``"cpu"`` and/or ``"cuda"`` (CUDA cells are skipped without a GPU).
        dtypes: ``"float32"`` and/or ``"bfloat16"`` (bf16 = ``torch.autocast``; inputs stay fp32).
        channels_last: memory formats to try (``False`` = NCHW, ``True`` = NHWC), for model and inputs.
        compile: whether to wrap the loss in ``torch.compile`` (first-step time reported separately).
        batches: batch sizes.
        resolutions: square image sizes in pixels.
        reps: timed runs per cell and round (the median and IQR are over all of them; >= 5 for real numbers).
        rounds: how many times to run the whole sweep, networks alternating; each cell's timed runs
            are pooled over the rounds and its peak memory is their median (on a shared machine this
            spreads slow drifts over every network instead of the one measured during them).
        warmup: untimed runs after the first call and the memory run.
        threads: ``torch.set_num_threads`` for every process (``None``: torch's default).
        isolate: run each network in a fresh subprocess (comparable memory numbers, no cross-talk).
        malloc_keep: in isolated runs, set glibc env vars that keep freed memory in the heap
            (fewer page faults; affects every network alike).
        add_baseline: add :data:`BASELINE` when a codec is measured without it (for speed-ups).
        seed: seed of the random inputs.
        contend: busy competitor processes running while the networks are measured (CPU contention as on
            a shared machine; see :mod:`codecloss.bench.contend`); the matmul peak is measured before them.
    """

    networks: tuple[str, ...] = tuple(default_networks())
    modes: tuple[str, ...] = MODES
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32",)
    channels_last: tuple[bool, ...] = (False,)
    compile: tuple[bool, ...] = (False,)
    batches: tuple[int, ...] = (4,)
    resolutions: tuple[int, ...] = (256,)
    reps: int = 5
    rounds: int = 1
    warmup: int = 1
    threads: int | None = None
    isolate: bool = True
    malloc_keep: bool = False
    add_baseline: bool = True
    seed: int = 0
    contend: int = 0

    def __post_init__(self) -> None:
        for name in ("networks", "modes", "devices", "dtypes", "channels_last", "compile", "batches", "resolutions"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise TypeError(f"{name}: expected a sequence, got {value!r}")
            if not tuple(value):
                raise ValueError(f"{name}: expected at least one value, got {value!r}")
            object.__setattr__(self, name, tuple(dict.fromkeys(value)))
        check_networks(self.networks)
        _check_subset("modes", self.modes, MODES)
        _check_subset("devices", self.devices, ("cpu", "cuda"))
        _check_subset("dtypes", self.dtypes, tuple(DTYPES))
        for name in ("batches", "resolutions"):
            bad = [v for v in getattr(self, name) if not isinstance(v, int) or v < 1]
            if bad:
                raise ValueError(f"{name}: expected positive integers, got {bad}")
        small = [r for r in self.resolutions if r < 32]
        if small:
            raise ValueError(f"resolutions: expected sizes >= 32 (the deepest taps need them), got {small}")
        for name in ("reps", "rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup: expected an integer >= 0, got {self.warmup!r}")
        if isinstance(self.contend, bool) or not isinstance(self.contend, int) or self.contend < 0:
            raise ValueError(f"contend: expected an integer >= 0 (busy competitor processes), got {self.contend!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads: expected a positive integer or None, got {self.threads!r}")
        if self.add_baseline and BASELINE not in self.networks and any(map(is_codec, self.networks)):
            logger.info("adding %s to the networks: speed-ups are measured against it", BASELINE)
            object.__setattr__(self, "networks", (*self.networks, BASELINE))

    def cells(self, network: str) -> list[Cell]:
        """Every cell of one network, in measuring order."""
        product = itertools.product(
            self.devices, self.dtypes, self.channels_last, self.compile, self.batches, self.resolutions, self.modes
        )
        return [Cell(network, mode, dev, dt, cl, comp, b, r) for dev, dt, cl, comp, b, r, mode in product]


def _check_subset(argument: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{argument}: got {bad}, expected values from {list(allowed)}")


@dataclass
class BenchResult:
    """Everything one run measured, with the facts needed to read it."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    matmul_peak: dict[str, dict[str, float]]
    records: list[BenchRecord]
    weights: str = WEIGHTS_NOTE
    memory_method: dict[str, str] = field(default_factory=lambda: dict(measure.MEMORY_METHODS))
    baseline: str = BASELINE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (schema ``codecloss-bench/1``)."""
        return {"schema": "codecloss-bench/1", **dataclasses.asdict(self)}


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def _make_step(network: BenchNetwork, cell: Cell, device: torch.device, compiled: bool, seed: int) -> Callable[[], None]:
    """The closure that one timed run calls."""
    loss_fn = network.style if cell.mode == "content_style" else network.content
    assert loss_fn is not None
    if compiled:
        loss_fn = torch.compile(loss_fn)
    memory_format = torch.channels_last if cell.channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(seed)
    shape = (cell.batch, 3, cell.resolution, cell.resolution)
    x = torch.rand(shape, generator=generator).to(device).contiguous(memory_format=memory_format)
    y = torch.rand(shape, generator=generator).to(device).contiguous(memory_format=memory_format)

    if cell.mode == "forward":
        def step() -> None:
            with torch.no_grad(), _autocast(device, cell.dtype):
                loss_fn(x, y)
        return step

    x.requires_grad_(True)

    def step() -> None:
        x.grad = None
        with _autocast(device, cell.dtype):
            loss = loss_fn(x, y)
        loss.backward()
    return step


def _measure_cell(network: BenchNetwork, cell: Cell, reps: int, warmup: int, seed: int, peaks: dict[str, float]) -> BenchRecord:
    record = BenchRecord.for_cell(cell, "ok", network.kind, network.taps)
    record.params, record.note = network.params, network.note
    device = torch.device(cell.device)
    if cell.mode == "content_style" and network.style is None:
        record.status = "n/a: fixed loss module without a Gram style term"
        return record
    network.module.to(device=device, memory_format=torch.channels_last if cell.channels_last else torch.contiguous_format)
    eager = _make_step(network, cell, device, False, seed)
    record.gflop = measure.count_flops(eager) / 1e9  # also the eager path's first (warm-up) call
    step = eager
    if cell.compile:
        step = _make_step(network, cell, device, True, seed)
        record.first_step_ms = measure.time_steps(step, device, 1)[0]  # includes compilation
    record.peak_mem_mb = measure.peak_memory_mb(step, device)
    for _ in range(warmup):
        step()
    faults = measure.minor_page_faults() if device.type == "cpu" else None
    _set_times(record, measure.time_steps(step, device, reps), peaks)
    if faults is not None:
        record.page_faults_per_step = (measure.minor_page_faults() - faults) / reps  # type: ignore[operator]
    return record


def _set_times(record: BenchRecord, times_ms: list[float], peaks: dict[str, float]) -> None:
    """Fill ``record``'s timing fields (and the throughput derived from them) from its timed runs."""
    record.times_ms, record.reps = times_ms, len(times_ms)
    record.time_median_ms, record.time_iqr_ms = measure.summarize_times(times_ms)
    record.gflops_per_s = record.gflop / (record.time_median_ms * 1e-3)  # type: ignore[operator]
    peak = peaks.get(f"{record.device}/{record.dtype}")
    record.matmul_peak_pct = 100 * record.gflops_per_s / peak if peak else None


def _pool_rounds(rounds: list[BenchRecord], peaks: dict[str, float]) -> BenchRecord:
    """One record from the same cell measured in several rounds: pooled runs, median peak memory and faults."""
    failed = [r for r in rounds if r.status != "ok"]
    if failed or len(rounds) == 1:
        return (failed or rounds)[0]
    pooled = dataclasses.replace(rounds[0])
    _set_times(pooled, [t for r in rounds for t in r.times_ms], peaks)
    pooled.peak_mem_mb = _median_of(r.peak_mem_mb for r in rounds)
    pooled.page_faults_per_step = _median_of(r.page_faults_per_step for r in rounds)
    return pooled


def _median_of(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def run_cells(
    network_name: str, cells: Sequence[Cell], reps: int, warmup: int, seed: int, peaks: dict[str, float]
) -> Iterator[BenchRecord]:
    """Measure the cells of one network in this process, yielding one record per cell.

    Failures become records (``skipped``/``error``), never exceptions, so a sweep always completes.
    """
    cuda_ok = torch.cuda.is_available()
    try:
        network: BenchNetwork | None = build_network(network_name)
        reason = ""
    except NetworkUnavailable as err:
        network, reason = None, f"skipped: {err}"
    except Exception as err:  # noqa: BLE001 - reported in the record
        network, reason = None, f"error: building the network failed: {type(err).__name__}: {err}"
    for cell in cells:
        if network is None:
            yield BenchRecord.for_cell(cell, reason)
        elif cell.device == "cuda" and not cuda_ok:
            yield BenchRecord.for_cell(cell, "skipped: CUDA not available", network.kind, network.taps)
        else:
            try:
                yield _measure_cell(network, cell, reps, warmup, seed, peaks)
            except Exception as err:  # noqa: BLE001 - one failing cell must not stop the sweep
                logger.warning("%s failed: %s: %s", cell, type(err).__name__, err)
                yield BenchRecord.for_cell(cell, f"error: {type(err).__name__}: {err}"[:300], network.kind, network.taps)
            finally:
                if cell.device == "cuda" and cuda_ok:
                    torch.cuda.empty_cache()


def _worker_env(malloc_keep: bool) -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    if malloc_keep:
        env.update(_MALLOC_KEEP_ENV)
    return env


def _run_isolated(
    network: str, cells: Sequence[Cell], config: BenchConfig, peaks: dict[str, float]
) -> Iterator[BenchRecord]:
    """Measure one network's cells in a fresh Python process (see ``codecloss.bench._worker``)."""
    job = {
        "network": network,
        "cells": [dataclasses.asdict(cell) for cell in cells],
        "reps": config.reps,
        "warmup": config.warmup,
        "seed": config.seed,
        "threads": config.threads or torch.get_num_threads(),
        "peaks": peaks,
        "parent": os.getpid(),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "codecloss.bench._worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_worker_env(config.malloc_keep),
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    process.stdin.write(json.dumps(job))
    process.stdin.close()
    done = 0
    try:
        for line in process.stdout:
            if line.startswith(_RECORD_PREFIX):
                done += 1
                yield BenchRecord(**json.loads(line[len(_RECORD_PREFIX):]))
    except BaseException:  # interrupted, or the records abandoned: the worker must not go on measuring
        process.kill()
        process.wait()
        raise
    stderr = process.stderr.read()
    process.wait()
    if stderr.strip():
        logger.debug("worker %s stderr:\n%s", network, stderr)
    if done < len(cells):
        tail = stderr.strip().splitlines()[-1:] or [f"exit code {process.returncode}"]
        for cell in cells[done:]:
            yield BenchRecord.for_cell(cell, f"error: worker died: {tail[0]}"[:300])


def attach_speedups(records: list[BenchRecord], baseline: str = BASELINE) -> None:
    """Set each record's speed-up and memory ratio against ``baseline`` measured in the same run.

    ``speedup_vs_baseline = baseline.time_median_ms / record.time_median_ms`` and
    ``mem_ratio_vs_baseline = record.peak_mem_mb / baseline.peak_mem_mb``, matching records by
    mode, device, dtype, memory format, compile, batch and resolution.
    """

    def key(r: BenchRecord) -> tuple:
        return (r.mode, r.device, r.dtype, r.channels_last, r.compile, r.batch, r.resolution)

    base = {key(r): r for r in records if r.network == baseline and r.status == "ok"}
    for record in records:
        ref = base.get(key(record))
        if record.status != "ok" or ref is None:
            continue
        record.speedup_vs_baseline = ref.time_median_ms / record.time_median_ms  # type: ignore[operator]
        if ref.peak_mem_mb and record.peak_mem_mb is not None:
            record.mem_ratio_vs_baseline = record.peak_mem_mb / ref.peak_mem_mb


def _matmul_peaks(config: BenchConfig) -> dict[str, float]:
    peaks = {}
    for device, dtype in itertools.product(config.devices, config.dtypes):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        peaks[f"{device}/{dtype}"] = measure.matmul_peak_gflops(torch.device(device), DTYPES[dtype])["gflops"]
        logger.info("matmul peak %s/%s: %.1f GFLOP/s", device, dtype, peaks[f"{device}/{dtype}"])
    return peaks


def _progress_bar(total: int, progress: bool | None) -> Any:
    from codecloss._progress import progress as progress_bar

    return progress_bar(None, progress, total=total, desc="codecloss bench", unit="cell", leave=False)


def run(config: BenchConfig | None = None, progress: bool | None = None) -> BenchResult:
    """Run a benchmark sweep.

    Args:
        config: what to measure (default: :class:`BenchConfig`'s defaults).
        progress: show a tqdm bar; ``None`` shows it only when stderr is a terminal.

    Returns:
        A :class:`BenchResult` with machine facts, the matmul peak and one record per cell,
        speed-ups against :data:`~codecloss.bench.networks.BASELINE` attached.

    Example:
        >>> cfg = BenchConfig(networks=("alexnet-lpips",), modes=("forward",), batches=(1,),
        ...                   resolutions=(32,), reps=1, warmup=0, isolate=False)
        >>> run(cfg).records[0].status
        'ok'
    """
    config = config or BenchConfig()
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        machine = measure.machine_info()
        peaks = _matmul_peaks(config)
        cells = {name: config.cells(name) for name in config.networks}
        measured: dict[Cell, list[BenchRecord]] = {cell: [] for network_cells in cells.values() for cell in network_cells}
        with _progress_bar(len(measured) * config.rounds, progress) as bar, competitors(config.contend, _CONTEND_SECONDS):
            for _ in range(config.rounds):
                for name, network_cells in cells.items():
                    bar.set_postfix_str(name)
                    if config.isolate:
                        stream = _run_isolated(name, network_cells, config, peaks)
                    else:
                        stream = run_cells(name, network_cells, config.reps, config.warmup, config.seed, peaks)
                    for cell, record in zip(network_cells, stream):
                        measured[cell].append(record)
                        bar.update()
    finally:
        torch.set_num_threads(previous_threads)
    records = [_pool_rounds(rounds, peaks) for rounds in measured.values()]
    attach_speedups(records)
    settings = dataclasses.asdict(config)
    return BenchResult(
        machine=machine,
        settings=settings,
        matmul_peak={key: {"gflops": value} for key, value in peaks.items()},
        records=records,
    )
