"""Exact tiled evaluation: cut images into overlapping tiles whose features equal the untiled ones.

Along each axis the image is split into owned segments of ``tile`` pixels, a multiple of the
alignment ``A`` (the least common multiple of the taps' strides, 16 for the GDN family), so that
every tap's feature grid splits at the same places. Each segment is run with ``halo`` extra pixels
on both sides (a multiple of ``A`` at least as wide as the deepest tap's receptive field, see
:mod:`codecloss.receptive_field`), clipped at the image. A tile's feature at a tap is exact (equal
to the untiled one up to float rounding) wherever its receptive field stays inside the tile or
leaves it only through the image border, where the tile pads exactly as the whole image does. The
owned part of every tap's grid satisfies that, so the tiles' owned parts, put side by side, are
the untiled feature maps (at any image size, also not multiples of the strides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from codecloss.receptive_field import ReceptiveField

__all__ = ["Tile", "TilePlan", "check_tile", "map_tiles"]


def check_tile(tile: object, argument: str = "tile") -> int | None:
    """``tile`` as a positive int or ``None``; raises ``TypeError``/``ValueError`` naming ``argument``."""
    if tile is None:
        return None
    if isinstance(tile, bool) or not isinstance(tile, int):
        raise TypeError(f"{argument}: expected None or an int (tile side in pixels), got {tile!r}")
    if tile <= 0:
        raise ValueError(f"{argument}: expected a positive tile side in pixels, got {tile}")
    return tile


@dataclass(frozen=True)
class _Axis:
    """One axis of a plan: feature strides per tap, halo and owned segment length."""

    strides: Mapping[str, int]
    halo: int
    tile: int

    def segments(self, size: int) -> list[tuple[slice, dict[str, slice]]]:
        """(input crop, {tap: owned slice of the crop's feature grid}) per segment, in order."""
        out = []
        for start in range(0, size, self.tile):
            end = min(start + self.tile, size)
            crop = slice(max(0, start - self.halo), min(size, end + self.halo))
            owned = {}
            for tap, stride in self.strides.items():
                offset = crop.start // stride
                owned[tap] = slice(start // stride - offset, -(-end // stride) - offset)
            out.append((crop, owned))
        return out


@dataclass(frozen=True)
class Tile:
    """One tile: the input window and, per tap, the owned (exact) window of its feature maps.

    Attributes:
        row, col: position in the grid of tiles.
        rows, cols: input pixel window.
        owned: tap -> (rows, cols) window of the tile's feature map that belongs to this tile.
    """

    row: int
    col: int
    rows: slice
    cols: slice
    owned: Mapping[str, tuple[slice, slice]]


class TilePlan:
    """Where to cut images so that tiled features equal untiled ones.

    Args:
        fields: tap -> (height field, width field) receptive fields (:func:`~codecloss.receptive_field.receptive_field`
            of the stages up to that tap).
        tile: owned tile side in pixels, at least the alignment; rounded down to a multiple of it.

    Example:
        >>> from codecloss.receptive_field import ReceptiveField as RF
        >>> plan = TilePlan({"y": (RF(16, 30, 30), RF(16, 30, 30))}, tile=64)
        >>> plan.alignment, plan.halo, len(plan.tiles(100, 130))
        (16, (32, 32), 6)
    """

    def __init__(self, fields: Mapping[str, tuple[ReceptiveField, ReceptiveField]], tile: int) -> None:
        if not fields:
            raise ValueError("fields: expected at least one tap")
        tile = check_tile(tile)
        strides = {tap: (h.stride, w.stride) for tap, (h, w) in fields.items()}
        self.alignment = math.lcm(*(s for pair in strides.values() for s in pair))
        if tile is None or tile < self.alignment:
            deepest = max(strides, key=lambda tap: max(strides[tap]))
            raise ValueError(
                f"tile: expected an int >= {self.alignment} (the stride of tap {deepest!r}), got {tile}"
            )
        self.tile = tile - tile % self.alignment
        axes = []
        for axis in range(2):
            need = max(max(f[axis].left, f[axis].right - f[axis].stride + 1, 0) for f in fields.values())
            halo = -(-need // self.alignment) * self.alignment
            axes.append(_Axis({tap: f[axis].stride for tap, f in fields.items()}, halo, self.tile))
        self._axes = tuple(axes)
        self.halo = (axes[0].halo, axes[1].halo)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Number of tile rows and columns for an image of ``height`` x ``width``."""
        return -(-height // self.tile), -(-width // self.tile)

    def tiles(self, height: int, width: int) -> list[Tile]:
        """The tiles of an image of ``height`` x ``width``, row by row."""
        rows, cols = self._axes[0].segments(height), self._axes[1].segments(width)
        return [
            Tile(i, j, row_crop, col_crop, {tap: (row_owned[tap], col_owned[tap]) for tap in row_owned})
            for i, (row_crop, row_owned) in enumerate(rows)
            for j, (col_crop, col_owned) in enumerate(cols)
        ]


def map_tiles(
    fn: Callable[..., Mapping[str, Tensor]], images: Sequence[Tensor], plan: TilePlan | None
) -> dict[str, Tensor]:
    """Run a per-position function of features tile by tile and stitch its per-tap maps.

    Args:
        fn: ``fn(*image_windows) -> {tap: (N, C, h, w) map}`` on the tap's feature grid, where each
            output position depends on the features at that position only (features, distances).
        images: (N, C, H, W) tensors of one size, cut into the same windows.
        plan: where to cut; ``None`` runs ``fn`` on the whole images.

    Returns:
        tap -> the stitched map, equal to ``fn(*images)`` up to float rounding.
    """
    height, width = images[0].shape[-2:]
    if plan is None or plan.grid(height, width) == (1, 1):
        return dict(fn(*images))
    pieces: dict[str, list[list[Tensor]]] = {}
    for tile in plan.tiles(height, width):
        maps = fn(*(image[..., tile.rows, tile.cols] for image in images))
        for tap, value in maps.items():
            rows, cols = tile.owned[tap]
            grid = pieces.setdefault(tap, [])
            if tile.col == 0:
                grid.append([])
            grid[-1].append(value[..., rows, cols].clone())  # not a view: the tile's map is freed
        del maps
    return {tap: torch.cat([torch.cat(row, dim=-1) for row in grid], dim=-2) for tap, grid in pieces.items()}
