"""Helpers shared by the trainer tests: ``write_corpus`` (a dozen stdlib files read by path, so no
test tokenizes the whole stdlib), ``small_args`` (debug preset, 32-64 tokens) and ``read_log``."""

import json
import sysconfig
from pathlib import Path

from clsa.train.args import TrainArgs

_FILES = ("argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py", "csv.py",
          "dataclasses.py", "difflib.py", "fractions.py", "heapq.py", "textwrap.py", "typing.py")


def write_corpus(folder: Path) -> Path:
    """12 stdlib sources, 12 KB each, as a corpus folder (11 train / 1 validation documents)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    folder.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        (folder / name).write_text((root / name).read_text()[:12_000])
    return folder


def small_args(corpus: Path, out: Path, **kw) -> TrainArgs:
    base = dict(preset="debug", variant="yoco", data=str(corpus), out_dir=str(out), seq_len=32,
                batch_size=4, steps=10, lr=3e-3, min_lr=3e-4, warmup=2, eval_every=5,
                eval_batches=2, save_every=5, progress=False)
    return TrainArgs(**{**base, **kw})


def read_log(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]
