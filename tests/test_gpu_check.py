"""``benchmarks/gpu_check.sh --dry-run`` lists its steps without running anything (no GPU needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_dry_run_lists_every_step(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    steps = [line.split("]")[0].strip(" [").split(",")[0] for line in lines[1:]]
    assert steps == ["venv", "install", "gpu", "cuda-tests", "bench-eager", "bench-compile", "sr-step"]
    limits = [int(line.split("limit ")[1].split("s]")[0]) for line in lines[1:]]
    assert sum(limits) <= 8 * 60
    text = result.stdout
    assert 'pip install --quiet ".[test]"' in text and "-k 'cuda or gpu'" in text
    assert "--device cuda --dtype float32 bfloat16 --channels-last both" in text and "--compile on" in text
    assert "benchmarks/sr_step.py --device cuda" in text
    assert "vgg16-lpips" in text.split("[bench-eager")[1].splitlines()[0] and "fast_bf16_available" in text
    assert not (tmp_path / "out").exists()  # nothing ran


def test_unknown_arguments_are_usage_errors():
    result = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "unknown argument '--bogus'" in result.stderr
