"""Two-process training on gloo (CPU) through ``torchrun -m clsa.cli train``, against one process.

Same global batch: one process with batch_size 4 reads windows 4s..4s+3 at step s; two ranks with
batch_size 2 read 4s+2r..4s+2r+1, i.e. the same rows. The losses then agree to fp32 rounding: the
only difference is the order of summation (per-rank partial sums of the cross-entropy, gradients
averaged by all_reduce), about 1e-7 relative per step. The tolerance is rtol 2e-5: two orders
above that rounding after 6 AdamW steps, three below what a real fault moves (a rank reading the
wrong rows, gradients summed instead of averaged, an indexer gradient left unsynced: >= 1e-3
after one step).
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clsa.train.args import TrainArgs
from clsa.train.distributed import DistEnv, wrap
from clsa.train.trainer import train
from tests.train.helpers import read_log, small_args

RTOL = 2e-5
REPO = Path(__file__).resolve().parents[2]


def cli_flags(args: TrainArgs) -> list[str]:
    """The `clsa train` command line that reproduces ``args``."""
    flags = []
    for f in dataclasses.fields(TrainArgs):
        value = getattr(args, f.name)
        if f.name == "overrides":
            for k, v in value.items():
                flags += ["--override", f"{k}={v}"]
        elif value is None or value == f.default:
            continue
        elif isinstance(value, bool):
            flags.append(("--" if value else "--no-") + f.name.replace("_", "-"))
        else:
            flag = "--from" if f.name == "from_checkpoint" else "--" + f.name.replace("_", "-")
            flags += [flag, str(value)]
    return flags


def torchrun(args: TrainArgs, nproc: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "clsa.cli", "train", *cli_flags(args)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def _curve(out):
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in read_log(out)]


def _assert_close(a, b):
    assert [r[0] for r in a] == [r[0] for r in b]
    for ra, rb in zip(a, b):
        for x, y in zip(ra[1:], rb[1:]):
            assert (x is None) == (y is None) and (x is None or abs(x - y) <= RTOL * abs(y)), \
                (ra, rb)


def _args(corpus, out, **kw):
    base = dict(steps=6, save_every=3, eval_every=3, device="cpu", keep_checkpoints=0)
    return small_args(corpus, out, **{**base, **kw})


@pytest.mark.slow
def test_ddp_sparse_stage_matches_one_process_and_resumes_under_any_world_size(corpus, tmp_path):
    # The sparse stage exercises both gradient paths: DDP for the backbone and the one
    # all_reduce for the indexer (its KL is computed outside the DDP forward).
    kw = dict(variant="clsa", stage="sparse", kl_weight=1.0)
    train(_args(corpus, tmp_path / "one", batch_size=4, **kw))
    torchrun(_args(corpus, tmp_path / "two", batch_size=2, **kw))
    one = _curve(tmp_path / "one")
    _assert_close(_curve(tmp_path / "two"), one)
    # The 2-process checkpoint of step 3 continues in one process (full state dicts; the data
    # stream is re-sharded by global row).
    (tmp_path / "two" / "checkpoints" / "latest").write_text("step-000003\n")
    train(_args(corpus, tmp_path / "two", batch_size=4, **kw))
    _assert_close(_curve(tmp_path / "two"), one)


@pytest.mark.slow
def test_fsdp2_matches_one_process(corpus, tmp_path):
    train(_args(corpus, tmp_path / "one", batch_size=4))
    torchrun(_args(corpus, tmp_path / "two", batch_size=2, parallel="fsdp2"))
    _assert_close(_curve(tmp_path / "two"), _curve(tmp_path / "one"))
    from clsa.model import CLSAForCausalLM

    a = CLSAForCausalLM.from_pretrained(tmp_path / "one" / "model").state_dict()
    b = CLSAForCausalLM.from_pretrained(tmp_path / "two" / "model").state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in a)


def test_fsdp2_refuses_the_indexer_stages():
    two = DistEnv(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="fsdp2 supports the pretrain stage only.*--parallel ddp"):
        wrap(torch.nn.Linear(2, 2), two, "fsdp2", "distill")


def test_single_process_helpers_are_local():
    one = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert one.sum([1.0, 2.5]) == [1.0, 2.5]
    model = torch.nn.Linear(2, 2)
    assert wrap(model, one, "ddp", "pretrain") is model
    one.barrier()
    one.sync_grads(model.parameters())  # no gradients, no group: nothing to do
