"""Turn a :class:`~codecloss.bench.runner.BenchResult` into a table, JSON, CSV or a PNG plot."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

from codecloss.bench.runner import MODES, BenchRecord, BenchResult

__all__ = ["format_table", "plot", "to_csv", "to_json"]

#: Machine facts repeated in every CSV row.
_MACHINE_COLUMNS = ("cpu_model", "torch_threads", "torch", "gpu_name")
# Settings columns, shown in the table only when they vary.
_SETTING_COLUMNS = ("mode", "device", "dtype", "channels_last", "compile", "batch", "resolution")


def to_json(result: BenchResult) -> str:
    """The whole result as indented JSON."""
    return json.dumps(result.to_dict(), indent=2)


def to_csv(result: BenchResult) -> str:
    """One CSV row per record (per-run times as a ``;``-joined column), with machine facts in every row."""
    fields = [f.name for f in dataclasses.fields(BenchRecord)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*fields, *(f"machine_{c}" for c in _MACHINE_COLUMNS)])
    writer.writeheader()
    for record in result.records:
        row = dataclasses.asdict(record)
        row["times_ms"] = ";".join(f"{t:.4f}" for t in record.times_ms)
        row.update({f"machine_{c}": result.machine.get(c) for c in _MACHINE_COLUMNS})
        writer.writerow(row)
    return buffer.getvalue()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _columns(result: BenchResult) -> list[tuple[str, Callable[[BenchRecord], str]]]:
    varying = [c for c in _SETTING_COLUMNS if len({getattr(r, c) for r in result.records}) > 1]
    columns: list[tuple[str, Callable[[BenchRecord], str]]] = [("network", lambda r: r.network)]
    columns += [(c, (lambda r, c=c: str(getattr(r, c)))) for c in varying]
    columns += [
        ("median ms", lambda r: _fmt(r.time_median_ms, ".1f")),
        ("IQR ms", lambda r: _fmt(r.time_iqr_ms, ".1f")),
        ("peak MiB", lambda r: _fmt(r.peak_mem_mb, ".0f")),
        ("faults/step", lambda r: _fmt(r.page_faults_per_step, ".0f")),
        ("GFLOP", lambda r: _fmt(r.gflop, ".2f")),
        ("GFLOP/s", lambda r: _fmt(r.gflops_per_s, ".1f")),
        ("% mm peak", lambda r: _fmt(r.matmul_peak_pct, ".0f")),
        ("params M", lambda r: _fmt(None if r.params is None else r.params / 1e6, ".2f")),
        (f"speed-up vs {result.baseline}", lambda r: _fmt(r.speedup_vs_baseline, ".2f")),
        ("mem vs baseline", lambda r: _fmt(r.mem_ratio_vs_baseline, ".2f")),
        ("status", lambda r: r.status if r.status == "ok" else r.status[:60]),
    ]
    return columns


def _constant_settings(result: BenchResult) -> str:
    constant = [c for c in _SETTING_COLUMNS if len({getattr(r, c) for r in result.records}) == 1]
    first = result.records[0]
    return ", ".join(f"{c}={getattr(first, c)}" for c in constant)


def format_table(result: BenchResult) -> str:
    """A plain-text report: machine facts, method notes and one table row per record.

    Columns whose setting is the same for every record are folded into the header.
    """
    m = result.machine
    gpu = m.get("gpu_name") or "none (CUDA not available)"
    lines = [
        f"machine: {m.get('cpu_model')}, {m.get('logical_cpus')} logical CPUs, torch threads {m.get('torch_threads')}, "
        f"OpenMP wait policy {m.get('omp_wait_policy') or 'default'}, torch {m.get('torch')}, GPU: {gpu}",
        f"CPU capability: {m.get('cpu_capability')}, fast bf16 on CPU (AVX512-BF16 or AMX): {m.get('fast_bf16_cpu')}",
        f"weights: {result.weights}",
        "matmul peak: " + (", ".join(f"{k} {v['gflops']:.1f} GFLOP/s" for k, v in result.matmul_peak.items()) or "-"),
        f"reps per cell: {result.settings.get('reps')} x {result.settings.get('rounds', 1)} round(s), "
        "networks alternating (median and inter-quartile range of all)",
    ]
    if result.settings.get("contend"):
        lines.append(f"contention: {result.settings['contend']} busy competitor process(es) ran during the measurements (--contend)")
    if result.settings.get("malloc_keep"):
        lines.append("allocator: glibc told to keep freed memory in the heap (--malloc-keep), in every network's process")
    for device in sorted({r.device for r in result.records}):
        lines.append(f"peak memory ({device}): {result.memory_method.get(device, '?')}")
    if result.records:
        lines.append(f"settings: {_constant_settings(result)}")
    notes = sorted({f"{r.network}: {r.note}" for r in result.records if r.note})
    lines += [f"note: {n}" for n in notes]
    if not result.records:
        return "\n".join(lines + ["(no records)"])
    columns = _columns(result)
    rows = [[name for name, _ in columns]] + [[get(r) for _, get in columns] for r in result.records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines.append("")
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(result: BenchResult, path: str | Path, networks: Sequence[str] | None = None) -> Path:
    """Save a PNG of median time vs resolution, one line per network (matplotlib, Agg backend).

    One panel per combination of the other settings (mode, device, dtype, format, compile, batch).

    Args:
        result: benchmark result.
        path: output PNG path.
        networks: networks to draw (default: every network with measurements).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[Any, ...], dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in result.records:
        if r.status == "ok" and (networks is None or r.network in networks):
            key = (r.mode, r.device, r.dtype, r.channels_last, r.compile, r.batch)
            groups[key][r.network].append((r.resolution, r.time_median_ms))  # type: ignore[arg-type]
    if not groups:
        raise ValueError("result: no successful measurements to plot")
    order = {mode: i for i, mode in enumerate(MODES)}
    keys = sorted(groups, key=lambda k: (order.get(k[0], 99), str(k[1:])))
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False, dpi=90)
    for ax, key in zip(axes[0], keys):
        mode, device, dtype, channels_last, compiled, batch = key
        for network, points in sorted(groups[key].items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=network)
        ax.set_xscale("log", base=2)
        resolutions = sorted({p[0] for points in groups[key].values() for p in points})
        ax.set_xticks(resolutions, [str(r) for r in resolutions])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("resolution (px, square)")
        ax.set_ylabel("median time per step (ms)")
        extras = ", channels_last" * channels_last + ", compiled" * compiled
        ax.set_title(f"{mode}, batch {batch}, {device} {dtype}{extras}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{result.machine.get('cpu_model')}, torch {result.machine.get('torch')}; random weights", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
