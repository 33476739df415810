"""Result tables of the evaluation harness: text, JSON-ready dicts and a matplotlib bar chart."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["Row", "Table", "plot_tables", "save_figure"]


@dataclass
class Row:
    """One metric's results.

    Attributes:
        name: metric name.
        values: column -> value; ``None`` where the metric could not score that column.
        note: e.g. ``"skipped: weights not available"``.
    """

    name: str
    values: dict[str, float | None]
    note: str | None = None


@dataclass
class Table:
    """Results of one evaluation: a row per metric, a column per category or statistic.

    Attributes:
        title: e.g. ``"BAPPS 2AFC (val)"``.
        columns: column names in order.
        rows: one :class:`Row` per metric.
        meta: extra facts for the JSON output (dataset root, counts, settings).
    """

    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""

        def clean(v: float | None) -> float | None:
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [
                {"metric": r.name, "values": {c: clean(r.values.get(c)) for c in self.columns}, "note": r.note}
                for r in self.rows
            ],
            "meta": self.meta,
        }

    def format(self, digits: int = 4) -> str:
        """Plain-text table (``-`` for missing values, notes at the end of the row)."""
        names = [r.name for r in self.rows]
        first = max([len("metric"), *map(len, names)])
        widths = [max(len(c), digits + 3) for c in self.columns]
        lines = [self.title, "  ".join(["metric".ljust(first), *(c.rjust(w) for c, w in zip(self.columns, widths))])]
        for row in self.rows:
            cells = []
            for column, width in zip(self.columns, widths):
                value = row.values.get(column)
                text = "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"
                cells.append(text.rjust(width))
            line = "  ".join([row.name.ljust(first), *cells])
            lines.append(line + (f"  ({row.note})" if row.note else ""))
        return "\n".join(lines)


def plot_tables(tables: Sequence[Table], path: str | os.PathLike, columns: Iterable[str] | None = None) -> Path:
    """Grouped bar chart (one panel per table, one bar per metric and column) saved as PNG.

    Args:
        tables: tables to draw.
        path: output PNG file.
        columns: restrict to these columns (default: all).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = None if columns is None else list(columns)
    fig, axes = plt.subplots(len(tables), 1, figsize=(10, 3.6 * len(tables)), squeeze=False)
    for ax, table in zip(axes[:, 0], tables):
        cols = [c for c in table.columns if wanted is None or c in wanted]
        rows = [r for r in table.rows if any(r.values.get(c) is not None for c in cols)]
        width = 0.8 / max(len(rows), 1)
        for i, row in enumerate(rows):
            values = [row.values.get(c) for c in cols]
            heights = [float("nan") if v is None else v for v in values]
            ax.bar([j + i * width for j in range(len(cols))], heights, width, label=row.name)
        ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(cols))])
        ax.set_xticklabels(cols, rotation=20)
        ax.set_title(table.title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Lay out a matplotlib figure, write it to ``path`` (its folder created) at 120 dpi and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
