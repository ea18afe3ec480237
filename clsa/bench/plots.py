"""PNG plots of benchmark results (matplotlib, Agg): readable without the code.

    decode_plot(res, path)    step latency vs context, one line per (variant, backend), a panel per
                              batch size, log-log, with the byte floor of clsa dashed
    modes_plot(res, path)     throughput at each row's largest batch, and time to first token
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def decode_plot(res: dict, path: str) -> None:
    rows = res["rows"]
    batches = sorted({r["B"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.8), squeeze=False)
    for ax, B in zip(axes[0], batches):
        for name in dict.fromkeys(r["row"] for r in rows):
            pts = sorted((r["N"], r["step_ms"]) for r in rows if r["row"] == name and r["B"] == B)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name,
                        linestyle="-" if name.endswith("/triton") else ":")
        floor = sorted((r["N"], r["floor_ms"]) for r in rows
                       if r["row"] == "clsa/triton" and r["B"] == B and "floor_ms" in r)
        if floor:
            # a marker too: a run at one context has no line to draw
            ax.plot(*zip(*floor), "k--", marker="_", markersize=14, linewidth=1,
                    label="clsa byte floor")
        ax.set(xscale="log", yscale="log", xlabel="context (tokens)", ylabel="decode step (ms)",
               title=f"batch {B}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    env = res["env"]
    fig.suptitle(f"{res['preset']} decode step, {env.get('device')}, torch {env['torch']}, "
                 f"commit {str(env['commit'])[:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def modes_plot(res: dict, path: str) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, key, field, label in ((a, "throughput", "tokens_per_s", "decode tokens/s at max batch"),
                                  (b, "prefill", "ttft_ms", "time to first token (ms)")):
        items = [x for x in res[key] if x.get(field)]
        ns = sorted({x["N"] for x in items})
        names = list(dict.fromkeys(x["row"] for x in items))
        w = 0.8 / max(len(ns), 1)
        for j, n in enumerate(ns):
            vals = [next((x[field] for x in items if x["row"] == r and x["N"] == n), 0) for r in names]
            bars = ax.bar([i + j * w for i in range(len(names))], vals, w, label=f"{n // 1024}K")
            if key == "throughput":
                for bar, r in zip(bars, names):
                    B = next((x["B"] for x in items if x["row"] == r and x["N"] == n), None)
                    if B:
                        ax.annotate(f"B={B}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                    ha="center", va="bottom", fontsize=6)
        ax.set_xticks([i + w * (len(ns) - 1) / 2 for i in range(len(names))], names, rotation=30,
                      ha="right", fontsize=7)
        ax.set(yscale="log", ylabel=label)
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{res['preset']}, {res['env'].get('device')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
