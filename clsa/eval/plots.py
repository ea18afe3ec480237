"""PNG plots for the evaluations: annotated heat maps and line charts (matplotlib, Agg, no pyplot).

Figures are drawn on ``matplotlib.figure.Figure`` with an Agg canvas, so nothing touches the
global pyplot state or needs a display.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def heatmap(grid, row_labels, col_labels, path: str | os.PathLike, title: str = "",
            xlabel: str = "", ylabel: str = "", vmin: float = 0.0, vmax: float = 1.0,
            fmt: str = "{:.2f}", annotate: bool | None = None) -> Path:
    """Rows x columns of values (NaN = missing, shown as "-"), colour scale [vmin, vmax]."""
    import numpy as np

    data = np.asarray(grid, dtype=float)
    rows, cols = data.shape
    annotate = rows * cols <= 400 if annotate is None else annotate
    fig = _figure(max(4.0, 1.0 + 0.75 * cols), max(2.5, 1.0 + 0.45 * rows))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(data), vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
    ax.set_xticks(range(cols), labels=[str(c) for c in col_labels])
    ax.set_yticks(range(rows), labels=[str(r) for r in row_labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if annotate:
        mid = (vmin + vmax) / 2
        for i in range(rows):
            for j in range(cols):
                v = data[i, j]
                text = "-" if math.isnan(v) else fmt.format(v)
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="black" if math.isnan(v) or v > mid else "white")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def lines(x, series: dict, path: str | os.PathLike, title: str = "", xlabel: str = "",
          ylabel: str = "", logx: bool = False, ylim=(0.0, 1.02)) -> Path:
    """One line per ``series`` entry {label: ys (or (ys, style dict))} against ``x``."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for label, ys in series.items():
        ys, style = ys if isinstance(ys, tuple) else (ys, {})
        ax.plot(x, ys, marker="o", label=label, **style)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


__all__ = ["heatmap", "lines"]
