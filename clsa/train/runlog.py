"""The run's JSONL log and its loss-curve PNG.

``log.jsonl``: one JSON object per line. Training steps carry step, loss, lr, tokens_per_s,
grad_norm and the stage's metrics (lm_loss, kl, recall, trivial_rows); validation adds val_*
keys to the line of the step it ran at (step 0 = before training). A resumed run first drops the
lines after its checkpoint's step, so the log reads as if the run had never stopped.

    log = RunLog("runs/x/log.jsonl", resume_step=200)    # or None for a fresh run
    log.write({"step": 201, "loss": 2.31})
    plot_log("runs/x/log.jsonl", "runs/x/loss.png")
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def read_log(path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


class RunLog:
    def __init__(self, path, resume_step: int | None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            kept = [r for r in read_log(self.path) if r.get("step", 0) <= resume_step]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _series(records, key):
    pts = [(r["step"], r[key]) for r in records
           if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def _panel(ax, records, keys, ylabel: str, title: str = "") -> None:
    """One axis: the training series (line) and its validation twin (dots) against step."""
    for key, style in zip(keys, ("-", "o-")):
        x, y = _series(records, key)
        if x:
            ax.plot(x, y, style, label=key, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_log(log_path, png_path, title: str = "") -> None:
    """Training and validation loss against step (plus recall when logged), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    has_recall = any(r.get("recall") is not None or r.get("val_recall") is not None
                     for r in records)
    fig, axes = plt.subplots(1, 2 if has_recall else 1, figsize=(11 if has_recall else 6, 4),
                             squeeze=False)
    _panel(axes[0, 0], records, ("loss", "val_loss"), "loss", title)
    if has_recall:
        _panel(axes[0, 1], records, ("recall", "val_recall"), "recall of target attention mass in top-k")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
