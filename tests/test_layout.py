"""Layout helpers: per-pixel row views and chunking."""

from __future__ import annotations

import pytest
import torch

from codecloss._layout import CHUNK_ELEMENTS, chunks, dense, pixel_rows


@pytest.mark.parametrize("channels_last", [False, True])
def test_pixel_rows_is_a_view_with_one_row_per_pixel(channels_last: bool) -> None:
    x = torch.randn(2, 5, 3, 4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rows = pixel_rows(dense(x))
    assert rows.shape == (2, 12, 5) and rows.data_ptr() == x.data_ptr()
    torch.testing.assert_close(rows[1, 3 * 4 - 1], x[1, :, 2, 3])


def test_chunks_cover_every_pixel_once_and_are_whole_under_compile(monkeypatch) -> None:
    rows = torch.zeros(2, 3 * CHUNK_ELEMENTS // 64 + 7, 32)
    parts = list(chunks(rows))
    assert len(parts) > 1
    covered = torch.zeros(rows.shape[1])
    for part in parts:
        covered[part] += 1
    assert bool((covered == 1).all())
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert [p.indices(rows.shape[1]) for p in chunks(rows)] == [(0, rows.shape[1], 1)]
