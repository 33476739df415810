"""Tests of the benchmark harness (codecloss.bench) and ``codecloss bench``: tiny sizes, CPU."""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib.util
import io
import json
import mmap
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from codecloss import DEFAULT_BACKBONE, CodecPerceptualLoss, FeatureExtractor, bench
from codecloss.bench import measure
from codecloss.bench.runner import BenchRecord, Cell, _pool_rounds, _run_isolated, _worker_env, run_cells
from codecloss.cli import main

CODECS = (DEFAULT_BACKBONE, "bmshj2018-hyperprior-mse-q3")
TINY = dict(batches=(1,), resolutions=(32,), reps=1, warmup=0, threads=1)
FIXED_LOSSES = ("piq-lpips", "piq-dists", "piq-content", "piq-style", "lpips-vgg", "lpips-alex", "compressai-plain")
HAS_LPIPS = importlib.util.find_spec("lpips") is not None


@pytest.fixture(scope="module")
def result() -> bench.BenchResult:
    """Every network kind, every mode, 1 rep at 32x32, in this process (fast)."""
    config = bench.BenchConfig(networks=(*CODECS, *bench.REFERENCE_NETWORKS), isolate=False, **TINY)
    return bench.run(config, progress=False)


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_every_network_kind_runs(result: bench.BenchResult) -> None:
    by_key = {(r.network, r.mode): r for r in result.records}
    assert len(by_key) == len(result.records) == len(result.settings["networks"]) * 3
    for (network, mode), record in by_key.items():
        if network.startswith("lpips-") and not HAS_LPIPS:
            assert record.status.startswith("skipped: the lpips package"), record.status
        elif network in FIXED_LOSSES and mode == "content_style":
            assert record.status.startswith("n/a"), record.status
        else:
            assert record.status == "ok", (network, mode, record.status)
            assert record.time_median_ms > 0 and record.gflop > 0 and record.params > 0
            assert record.reps == len(record.times_ms) == 1
            assert record.page_faults_per_step is not None and record.page_faults_per_step >= 0
            assert record.kind in {"codec", "torchvision", "piq", "lpips", "compressai"}
    kinds = {r.kind for r in result.records if r.status == "ok"}
    assert {"codec", "torchvision", "piq", "compressai"} <= kinds


def test_backward_costs_more_flops_than_forward(result: bench.BenchResult) -> None:
    # forward runs the network on x and y; backward flows through the x branch only (y is the
    # target, the network is frozen), so fwd+bwd costs about 1.5x forward: never less than 1.25x.
    for network in (*CODECS, "vgg16-lpips"):
        fwd, bwd = (next(r for r in result.records if r.network == network and r.mode == m)
                    for m in ("forward", "forward_backward"))
        assert 1.25 * fwd.gflop < bwd.gflop < 2.5 * fwd.gflop


def test_speedups_come_from_measured_times(result: bench.BenchResult) -> None:
    base = {r.mode: r for r in result.records if r.network == bench.BASELINE}
    checked = 0
    for record in result.records:
        if record.network in CODECS and record.status == "ok":
            ref = base[record.mode]
            assert record.speedup_vs_baseline == pytest.approx(ref.time_median_ms / record.time_median_ms)
            if ref.peak_mem_mb:
                assert record.mem_ratio_vs_baseline == pytest.approx(record.peak_mem_mb / ref.peak_mem_mb)
            checked += 1
    assert checked == 2 * 3
    assert all(r.speedup_vs_baseline == pytest.approx(1.0) for r in base.values())


def test_attach_speedups_matches_settings() -> None:
    cell = dict(mode="forward", device="cpu", dtype="float32", channels_last=False, compile=False, batch=1)
    records = [
        bench.BenchRecord(network=bench.BASELINE, kind="torchvision", taps="", resolution=64, time_median_ms=30.0,
                          peak_mem_mb=100.0, **cell),
        bench.BenchRecord(network="codec", kind="codec", taps="", resolution=64, time_median_ms=5.0,
                          peak_mem_mb=20.0, **cell),
        bench.BenchRecord(network="codec", kind="codec", taps="", resolution=128, time_median_ms=5.0, **cell),
    ]
    bench.attach_speedups(records)
    assert records[1].speedup_vs_baseline == pytest.approx(6.0)
    assert records[1].mem_ratio_vs_baseline == pytest.approx(0.2)
    assert records[2].speedup_vs_baseline is None  # no baseline at that resolution


def test_json_csv_and_table(result: bench.BenchResult) -> None:
    data = json.loads(bench.to_json(result))
    assert data["schema"] == "codecloss-bench/1"
    assert "random" in data["weights"]
    for key in ("cpu_model", "torch_threads", "torch", "gpu_name"):
        assert key in data["machine"]
    assert data["matmul_peak"]["cpu/float32"]["gflops"] > 0
    assert len(data["records"]) == len(result.records)
    rows = list(csv.DictReader(io.StringIO(bench.to_csv(result))))
    assert len(rows) == len(result.records)
    ok = [row for row in rows if row["status"] == "ok"]
    assert ok and all(float(row["time_median_ms"]) > 0 and row["machine_cpu_model"] for row in ok)
    table = bench.format_table(result)
    assert "random initialisation" in table and f"speed-up vs {bench.BASELINE}" in table
    assert all(network in table for network in CODECS)


def test_plot_writes_png(result: bench.BenchResult, tmp_path) -> None:
    path = bench.plot(result, tmp_path / "sub" / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_isolated_subprocess_measures_memory() -> None:
    config = bench.BenchConfig(networks=("alexnet-lpips",), modes=("forward_backward",), add_baseline=False, **TINY)
    (record,) = bench.run(config, progress=False).records
    assert record.status == "ok"
    if measure.cpu_peak_measurable():
        assert record.peak_mem_mb is not None and record.peak_mem_mb >= 0


def test_abandoned_records_stop_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer that stops reading (an interrupt, an error) must not leave the worker measuring on."""
    started: list[subprocess.Popen] = []
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: started.append(popen(*args, **kwargs)) or started[-1])
    config = bench.BenchConfig(networks=("alexnet-lpips",), modes=("forward", "forward_backward"), add_baseline=False,
                               **{**TINY, "resolutions": (64,), "reps": 50})
    records = _run_isolated("alexnet-lpips", config.cells("alexnet-lpips"), config, {})
    assert next(records).status == "ok"
    records.close()
    assert started[0].poll() is not None  # the second cell's 50 reps were still running


_KILLED_PARENT = """
import subprocess
popen = subprocess.Popen
def spy(command, *args, **kwargs):
    process = popen(command, *args, **kwargs)
    if "codecloss.bench._worker" in command:
        print(process.pid, flush=True)
    return process
subprocess.Popen = spy
from codecloss import bench
bench.run(bench.BenchConfig(networks=("alexnet-lpips",), modes=("forward",), add_baseline=False, batches=(1,),
                            resolutions=(64,), reps=100000, warmup=0, threads=1), progress=False)
"""


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (Linux)")
def test_the_worker_stops_when_the_bench_process_is_killed() -> None:
    """``codecloss bench`` killed by a signal (no chance to clean up) must not leave its worker measuring."""
    parent = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        time.sleep(1.0)
        assert not _gone(worker)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(worker)


def test_malloc_keep_sets_the_worker_environment_and_is_reported() -> None:
    assert _worker_env(True)["MALLOC_MMAP_THRESHOLD_"] == str(1 << 30)
    assert _worker_env(False).get("MALLOC_MMAP_THRESHOLD_") == os.environ.get("MALLOC_MMAP_THRESHOLD_")
    config = bench.BenchConfig(networks=("alexnet-lpips",), modes=("forward",), add_baseline=False, malloc_keep=True, **TINY)
    result = bench.run(config, progress=False)
    assert result.records[0].status == "ok" and result.settings["malloc_keep"] is True
    assert "allocator: glibc" in bench.format_table(result)
    assert "allocator" not in bench.format_table(dataclasses.replace(result, settings={**result.settings, "malloc_keep": False}))


@pytest.mark.skipif(measure.minor_page_faults() is None, reason="needs getrusage (Unix)")
def test_minor_page_faults_count_a_fresh_mapping() -> None:
    size = 16 * 2**20
    before = measure.minor_page_faults()
    with mmap.mmap(-1, size) as fresh:  # anonymous memory the process has never touched
        for offset in range(0, size, mmap.PAGESIZE):
            fresh[offset] = 1
    after = measure.minor_page_faults()
    assert before is not None and after is not None and after > before


@pytest.mark.skipif(not measure.cpu_peak_measurable(), reason="needs Linux /proc/self/clear_refs")
def test_cpu_peak_memory_sees_a_large_allocation() -> None:
    def step() -> None:
        buffer = torch.empty(64 * 2**20 // 4)
        buffer.fill_(1.0)  # touch every page

    assert measure.peak_memory_mb(step, torch.device("cpu")) >= 60


def test_matmul_peak_is_positive() -> None:
    peak = measure.matmul_peak_gflops(torch.device("cpu"), torch.float32, size=128, reps=1)
    assert peak["gflops"] > 0 and peak["size"] == 128


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_cells_are_skipped_without_gpu() -> None:
    cell = Cell("alexnet-lpips", "forward", "cuda", "float32", False, False, 1, 32)
    (record,) = run_cells("alexnet-lpips", [cell], reps=1, warmup=0, seed=0, peaks={})
    assert record.status == "skipped: CUDA not available"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_path_runs_on_gpu() -> None:
    config = bench.BenchConfig(networks=(CODECS[1],), modes=("forward_backward",), devices=("cuda",),
                               dtypes=("float32", "bfloat16"), isolate=False, **TINY)
    records = bench.run(config, progress=False).records
    assert records and all(r.status == "ok" and r.peak_mem_mb is not None for r in records)


def test_reference_networks_never_download(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_downloads(monkeypatch)
    for name in ("piq-lpips", "piq-dists", "piq-content", "vgg19-gatys"):
        network = bench.build_network(name)
        assert network.params > 0 and not any(p.requires_grad for p in network.module.parameters())


def test_vgg16_is_the_reference_trunk_run_to_relu5_3() -> None:
    from codecloss.reference import Trunk

    network = bench.build_network("vgg16-lpips")
    assert network.taps == "relu1_2, relu2_2, relu3_3, relu4_3, relu5_3"
    assert isinstance(network.module, Trunk) and network.module.backbone_id == "vgg16"
    ran = []
    last_pool = network.module.features[30].register_forward_hook(lambda *_: ran.append("pool5"))
    try:
        network.content(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    finally:
        last_pool.remove()
    assert ran == []  # the trunk stops after relu5_3


@pytest.mark.parametrize(
    "kwargs",
    [dict(networks=("vgg99",)), dict(modes=("sideways",)), dict(resolutions=(16,)), dict(reps=0),
     dict(devices=("tpu",)), dict(batches=(0,)), dict(rounds=0)],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        bench.BenchConfig(**kwargs)


def test_rounds_pool_every_timed_run_of_a_cell() -> None:
    config = bench.BenchConfig(networks=("alexnet-lpips",), modes=("forward", "forward_backward"),
                               add_baseline=False, isolate=False, rounds=3, **{**TINY, "reps": 2})
    records = bench.run(config, progress=False).records
    assert [r.mode for r in records] == ["forward", "forward_backward"]
    for record in records:
        assert record.status == "ok" and record.reps == 6 and len(record.times_ms) == 6
        assert record.time_median_ms == measure.summarize_times(record.times_ms)[0]


def test_pooled_rounds_take_the_median_memory_and_page_faults() -> None:
    cell = dict(network="alexnet-lpips", kind="torchvision", taps="", mode="forward", device="cpu", dtype="float32",
                channels_last=False, compile=False, batch=1, resolution=32, gflop=1.0)
    rounds = [BenchRecord(**cell, times_ms=[t], peak_mem_mb=memory, page_faults_per_step=faults)
              for t, memory, faults in ((1.0, 10.0, 5.0), (2.0, None, 30.0), (3.0, 30.0, 20.0))]
    pooled = _pool_rounds(rounds, {})
    assert pooled.times_ms == [1.0, 2.0, 3.0] and pooled.time_median_ms == 2.0
    assert pooled.peak_mem_mb == 20.0 and pooled.page_faults_per_step == 20.0


def test_cli_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--plot" in capsys.readouterr().out


def test_cli_tiny_run_with_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = main(["bench", "--networks", "bmshj2018-factorized-mse-q1", "--modes", "forward", "--batch", "1",
                 "--resolution", "32", "--reps", "1", "--warmup", "0", "--threads", "1", "--no-isolate",
                 "--no-progress", "--json", str(out), "--csv", str(tmp_path / "r.csv")])
    assert code == 0
    data = json.loads(out.read_text())
    assert {r["network"] for r in data["records"]} == {"bmshj2018-factorized-mse-q1", bench.BASELINE}
    assert "speed-up vs" in capsys.readouterr().out


def test_a_codec_id_with_taps_measures_those_taps() -> None:
    network = bench.build_network("bmshj2018-hyperprior-mse-q3:gdn3,h1,h2")
    assert network.name == "bmshj2018-hyperprior-mse-q3:gdn3,h1,h2" and network.taps == "gdn3, h1, h2"
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    assert network.content(x, y) > 0 and network.style(x, y) > 0
    with pytest.raises(ValueError, match="networks: unknown"):
        bench.build_network("vgg16-lpips:relu1_2")
    with pytest.raises(ValueError, match="networks: unknown"):
        bench.build_network("bmshj2018-hyperprior-mse-q3:")


def test_cli_rejects_unknown_network(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--networks", "vgg99", "--no-progress"]) == 2
    assert "vgg99" in capsys.readouterr().err


def test_plain_compressai_computes_the_same_loss_as_the_codec_path() -> None:
    """``compressai-plain`` (hooks on CompressAI's g_a) and the codecloss backbone agree on equal weights."""
    plain = bench.build_network("compressai-plain")
    ours = CodecPerceptualLoss(FeatureExtractor(copy.deepcopy(plain.module.g_a), backbone_id="same-weights"))
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    torch.testing.assert_close(plain.content(x, y), ours(x, y), rtol=1e-4, atol=1e-6)
