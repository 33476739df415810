"""Shared fixtures: small backbones, random images, and the optional ../shared/data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder beside the project root; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_trunks_env(monkeypatch) -> None:
    """Tests choose their ImageNet trunk folder explicitly: a developer's CODECLOSS_TRUNKS must not leak in."""
    monkeypatch.delenv("CODECLOSS_TRUNKS", raising=False)


@pytest.fixture(autouse=True)
def _openmp_env_restored(monkeypatch) -> None:
    """``codecloss.cli.main`` sets OMP_WAIT_POLICY for its process; keep it from leaking into later tests."""
    exported = os.environ.get("OMP_WAIT_POLICY")
    monkeypatch.setenv("OMP_WAIT_POLICY", exported or "")
    if exported is None:
        monkeypatch.delenv("OMP_WAIT_POLICY")


@pytest.fixture()
def one_thread():
    """Run the test with one torch thread (training loops: steadier and kinder to a shared CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
