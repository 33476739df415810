"""``torchrun -m codecloss metric`` and ``eval mos|bapps`` with 2 gloo processes == one process.

The workers run with ``OMP_NUM_THREADS=1``; the single-process reference runs with one torch thread too
(the ``one_thread`` fixture), because a reduction split over another number of threads sums in another order
and may differ in the last bits. With equal thread settings both sides run the same kernels on the same
inputs, so their outputs are equal by construction and are compared exactly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from codecloss.cli import main
from test_evaluate import make_2afc, make_jnd, make_mos_layout, save_png, smooth_image

#: Runs the CLI once per argument list under torchrun; each rank writes each command's stdout/stderr to files.
DRIVER = """
import contextlib, io, json, os, sys
from codecloss.cli import main
rank, out = os.environ["RANK"], sys.argv[1]
for index, argv in enumerate(json.loads(sys.argv[2])):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    for name, text in (("out", stdout.getvalue()), ("err", stderr.getvalue()), ("code", str(code))):
        with open(os.path.join(out, f"{index}.{rank}.{name}"), "w") as handle:
            handle.write(text)
"""


def _torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for i in range(5):  # odd: rank 0 gets three pairs, rank 1 two
        image = smooth_image(rng, 24 + 8 * i)
        save_png(tmp_path / "A" / f"{i}.png", image)
        save_png(tmp_path / "B" / f"{i}.png", image + 0.1 * rng.standard_normal(image.shape))
    save_png(tmp_path / "A" / "only_a.png", smooth_image(rng))  # a failing pair: reported, exit code 1
    return tmp_path / "A", tmp_path / "B"


def test_torchrun_metric_equals_one_process(tmp_path, capsys, one_thread):
    a, b = _folders(tmp_path)
    assert main(["metric", str(a), str(b), "--json"]) == 1
    single = capsys.readouterr()
    result = _torchrun(tmp_path, "--log-dir", str(tmp_path / "logs"), "--redirects", "3",
                       "-m", "codecloss", "metric", str(a), str(b), "--json")
    assert result.returncode != 0  # the failing pair, as in one process
    logs = {p.parent.name + "/" + p.name: p.read_text() for p in (tmp_path / "logs").rglob("std*.log")}
    assert logs["0/stdout.log"] == single.out
    assert json.loads(single.out)["pairs"][0]["distance"] > 0 and json.loads(single.out)["failed"] == 1
    assert "only_a.png" in logs["0/stderr.log"]
    assert logs["1/stdout.log"] == "" and logs["1/stderr.log"] == ""  # other ranks print nothing


def test_torchrun_eval_mos_and_bapps_equal_one_process(tmp_path, capsys, monkeypatch, one_thread):
    make_mos_layout(tmp_path / "tid", "tid2013", refs=2, levels=4)
    make_2afc(tmp_path / "bapps", "val", "cnn", [0.0, 0.3, 1.0, 0.2, 0.5, 0.9, 0.1])
    make_jnd(tmp_path / "bapps", "traditional", [0.01, 0.2, 0.05, 0.3, 0.02], [0.9, 0.1, 0.6, 0.0, 0.8])
    commands = [
        ["eval", "mos", "--layout", "tid2013", "--root", str(tmp_path / "tid"), "--json"],
        ["eval", "bapps", "--root", str(tmp_path / "bapps"), "--batch-size", "2", "--json", "--no-baselines"],
    ]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no piq LPIPS/DISTS weights: skipped rows
    single = []
    for argv in commands:
        assert main(argv) == 0
        single.append(capsys.readouterr().out)
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "out").mkdir()
    result = _torchrun(tmp_path, str(tmp_path / "driver.py"), str(tmp_path / "out"), json.dumps(commands))
    assert result.returncode == 0, result.stderr[-2000:]
    for index, expected in enumerate(single):
        read = {name: (tmp_path / "out" / f"{index}.{name}").read_text() for name in ("0.out", "1.out", "1.err")}
        assert read["0.out"] == expected
        assert read["1.out"] == read["1.err"] == ""
    mos_rows = {row["metric"]: row for row in json.loads(single[0])["tables"][0]["rows"]}
    assert mos_rows["CPIPS"]["values"]["SRCC"] is not None and "skipped" in mos_rows["MS-SSIM"]["note"]
