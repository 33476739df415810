"""codecloss.integrations.torchmetrics.CPIPSMetric: values, range checks, gradients, DDP sync, optional import."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import socket
import sys
from pathlib import Path

import pytest
import torch

import codecloss

pytest.importorskip("torchmetrics")
from codecloss.integrations.torchmetrics import CPIPSMetric  # noqa: E402


def _images(n: int, seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)


@pytest.fixture(scope="module")
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [_images(3, seed=1), _images(2, seed=2)]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_values_equal_codecloss_metric(batches, reduction):
    metric = CPIPSMetric(reduction=reduction)
    for x, y in batches:
        metric.update(x, y)
    expected = torch.cat([codecloss.metric(x, y) for x, y in batches])
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    torch.testing.assert_close(metric.compute(), expected, rtol=1e-4, atol=0)


def test_normalize_false_takes_minus_one_to_one(batches):
    metric = CPIPSMetric(normalize=False, reduction="none")
    x, y = batches[0]
    metric.update(x * 2 - 1, y * 2 - 1)
    torch.testing.assert_close(metric.compute(), codecloss.metric(x, y), rtol=1e-4, atol=0)


def test_layers_and_weights_are_passed_on(batches):
    x, y = batches[0]
    metric = CPIPSMetric(layers=["gdn1", "y"], weights=None, reduction="none")
    metric.update(x, y)
    expected = codecloss.CPIPS(layers=["gdn1", "y"], weights=None)
    expected.load_state_dict(metric.net.state_dict())  # same random backbone
    torch.testing.assert_close(metric.compute(), expected(x, y), rtol=1e-4, atol=0)
    assert metric.net.layers == ["gdn1", "y"]


def test_metric_contract():
    metric = CPIPSMetric()
    assert metric.higher_is_better is False and metric.is_differentiable is True
    assert metric.full_state_update is False
    assert metric._defaults["scores"] == [] and metric._reductions["scores"].__name__ == "dim_zero_cat"


def test_forward_is_differentiable_and_accumulates(batches):
    metric = CPIPSMetric()
    (x, y), (x2, y2) = batches
    x = x.clone().requires_grad_(True)
    value = metric(x, y)  # batch value, with a graph to the images
    value.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.testing.assert_close(value.detach(), codecloss.metric(x.detach(), y).mean(), rtol=1e-4, atol=0)
    metric(x2, y2)
    expected = torch.cat([codecloss.metric(x.detach(), y), codecloss.metric(x2, y2)]).mean()
    torch.testing.assert_close(metric.compute().detach(), expected, rtol=1e-4, atol=0)
    assert all(not p.requires_grad for p in metric.parameters())


def test_reset(batches):
    metric = CPIPSMetric()
    metric.update(*batches[0])
    metric.reset()
    assert metric.scores == []


@pytest.mark.parametrize(
    ("normalize", "low", "high", "hint"),
    [(True, -1.0, 1.0, "normalize=False"), (False, 0.0, 2.0, "normalize=True"), (True, 0.0, 255.0, "use x / 255"),
     (False, 0.0, 255.0, "use x / 255 with normalize=True")],
)
def test_update_rejects_values_out_of_range(normalize, low, high, hint):
    metric = CPIPSMetric(normalize=normalize)
    x = torch.rand(1, 3, 32, 32) * (high - low) + low
    x[0, 0, 0, 0], x[0, 0, 0, 1] = low, high
    ok = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=rf"img1: values must lie in .* got min {low:.4g} and max {high:.4g}.*{hint}"):
        metric.update(x, ok)
    with pytest.raises(ValueError, match="img2: values must lie in"):
        metric.update(ok, x)
    assert metric.scores == []


def test_update_rejects_nan_and_bad_inputs():
    metric = CPIPSMetric()
    x = torch.rand(1, 3, 32, 32)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        metric.update(bad, x)
    with pytest.raises(TypeError, match="uint8"):
        metric.update((x * 255).to(torch.uint8), x)
    with pytest.raises(ValueError, match="same size"):
        metric.update(x, torch.rand(1, 3, 48, 32))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reduction": "max"}, ValueError, r"reduction: got 'max', expected one of \['mean', 'sum', 'none'\]"),
        ({"normalize": "yes"}, TypeError, "normalize: expected a bool"),
        ({"layers": ["conv5_4"]}, ValueError, "unknown tap 'conv5_4'"),
        ({"heads": 3}, TypeError, "heads:"),
        ({"backbone": "nope-q1"}, ValueError, "nope-q1"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CPIPSMetric(**kwargs)


def _images_for_ddp() -> tuple[torch.Tensor, torch.Tensor]:
    return _images(5, seed=3)


def _ddp_worker(rank: int, port: int, out: str) -> None:
    """One rank: uneven shards (rank 0 updates twice), results of two reductions written to ``out``."""
    import torch.distributed as dist

    torch.set_num_threads(1)  # forked from a process that used OpenMP: stay single-threaded
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        x, y = _images_for_ddp()
        results = {}
        for reduction in ("mean", "none"):
            metric = CPIPSMetric(reduction=reduction)
            if rank == 0:
                metric.update(x[:2], y[:2])
                metric.update(x[2:3], y[2:3])
            else:
                metric.update(x[3:], y[3:])
            results[reduction] = metric.compute().tolist()
        Path(out).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_sync_with_two_gloo_processes_equals_one_process(tmp_path):
    # fork: the children inherit the imported modules (a fresh interpreter spends ~8 s CPU importing compressai)
    context = multiprocessing.get_context("fork")
    port = _free_port()
    outs = [tmp_path / f"rank{rank}.json" for rank in range(2)]
    procs = [context.Process(target=_ddp_worker, args=(rank, port, str(outs[rank]))) for rank in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    assert [proc.exitcode for proc in procs] == [0, 0]
    x, y = _images_for_ddp()
    single = CPIPSMetric(reduction="none")
    single.update(x, y)
    expected = single.compute()
    for out in outs:
        result = json.loads(out.read_text())
        torch.testing.assert_close(torch.tensor(result["none"]), expected, rtol=1e-4, atol=0)
        torch.testing.assert_close(torch.tensor(result["mean"]), expected.mean(), rtol=1e-4, atol=0)


def test_import_codecloss_never_needs_the_extras(monkeypatch):
    """Re-import codecloss with torchmetrics, lpips and basicsr unimportable; restore the old modules after."""
    before = set(sys.modules)
    for name in [n for n in sys.modules if n == "codecloss" or n.startswith("codecloss.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("torchmetrics", "lpips", "basicsr"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    try:
        importlib.import_module("codecloss")
        importlib.import_module("codecloss.integrations.lpips")
        importlib.import_module("codecloss.integrations.basicsr")
        importlib.import_module("codecloss.cli").build_parser()
        with pytest.raises(ImportError) as info:
            importlib.import_module("codecloss.integrations.torchmetrics")
    finally:
        for name in set(sys.modules) - before:
            if name == "codecloss" or name.startswith("codecloss."):
                del sys.modules[name]
    message = str(info.value)
    assert "codecloss.integrations.torchmetrics needs the optional package 'torchmetrics'" in message
    assert 'pip install ".[integrations]" in the codecloss clone' in message
