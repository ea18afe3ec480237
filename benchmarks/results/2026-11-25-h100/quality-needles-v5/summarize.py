"""The four-seed table of quality-needles-v3/v4/v5 (issue 6), from the committed eval JSONs.

    python benchmarks/results/2026-11-25-h100/quality-needles-v5/summarize.py

Seed 0 is v3's run, seed 1 v4's, seeds 2 and 3 this folder's; every run has v3's setup. The score
of a run is its mean exact-match accuracy over the six cells (needle and multi-needle at 256, 512
and 1024 tokens); paired differences are taken seed by seed.
"""

import json
import os
import statistics as st

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = ("yoco", "clsa", "yoco-dsa")
SOURCES = {0: ("quality-needles-v3", ""), 1: ("quality-needles-v4", "-s1"),
           2: ("quality-needles-v5", "-s2"), 3: ("quality-needles-v5", "-s3")}


def score(folder: str, name: str) -> float:
    rep = json.load(open(os.path.join(HERE, "..", folder, f"q-eval-{name}.json")))
    acc = rep["synthetic"]["accuracy"]
    cells = [acc[t][n] for t in ("needle", "multi_needle") for n in ("256", "512", "1024")]
    return 100 * sum(cells) / len(cells)


def main() -> dict:
    table = {r: [score(f, r + suffix) for f, suffix in SOURCES.values()] for r in ROWS}
    print("| row | " + " | ".join(f"seed {s}" for s in SOURCES) + " | mean | sd |")
    print("|---|" + "---|" * (len(SOURCES) + 2))
    for r, v in table.items():
        print(f"| {r} | " + " | ".join(f"{x:.1f}" for x in v) + f" | {st.mean(v):.1f} | {st.stdev(v):.1f} |")
    for a, b in (("clsa", "yoco"), ("clsa", "yoco-dsa")):
        d = [x - y for x, y in zip(table[a], table[b])]
        se = st.stdev(d) / len(d) ** 0.5
        print(f"{a} - {b}: per seed " + ", ".join(f"{x:+.1f}" for x in d)
              + f"; mean {st.mean(d):+.1f}, standard error {se:.1f} points")
    return table


if __name__ == "__main__":
    main()
