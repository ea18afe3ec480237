"""SIGTERM (timeout, pre-emption) checkpoints the current step and stops; the same command resumes."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _steps(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [r["step"] for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_the_run_resumes_from_it(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "clsa.cli", "train", "--preset", "debug", "--variant", "yoco",
           "--seq-len", "64", "--batch-size", "2", "--save-every", "0", "--eval-every", "0",
           "--device", "cpu", "--no-progress", "--out-dir", str(out)]
    proc = subprocess.Popen(cmd + ["--steps", "100000"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(_steps(out / "log.jsonl")) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    last = _steps(out / "log.jsonl")[-1]
    assert last >= 3
    # no periodic saves (--save-every 0): the one checkpoint is the one SIGTERM wrote, at the last step
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step-{last:06d}"
    assert json.loads(stdout[stdout.index("{"):])["stopped_at"] == last
    assert not (out / "model").exists()  # not finished: no final model folder
    done = subprocess.run(cmd + ["--steps", str(last + 2)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _steps(out / "log.jsonl")[-3:] == [last, last + 1, last + 2]
    assert (out / "model").exists()
