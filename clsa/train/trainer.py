r"""`train(args)`: pretraining, indexer distillation and sparse training of a CLSA-family model.

Commands (``clsa train --help`` lists every option with its default)
    CPU run (byte tokens, stdlib corpus; ~1-2k tokens/s on 2 cores, so a few minutes):
        clsa train --preset tiny --variant yoco --steps 200 --seq-len 256 --batch-size 8 \
            --out-dir runs/yoco-tiny --device cpu
    distil an indexer into that backbone, then train sparsely (DSA stages 1 and 2):
        clsa distill --preset tiny --variant clsa --from runs/yoco-tiny --steps 300 \
            --out-dir runs/clsa-distill
        clsa train --preset tiny --variant clsa --from runs/clsa-distill --sparse --steps 300 \
            --out-dir runs/clsa-sparse
    single GPU (bf16 autocast, fused AdamW):
        clsa train --preset small --variant yoco --steps 5000 --seq-len 2048 --batch-size 16 \
            --compile --out-dir runs/yoco-small
    several GPUs (batch-size is per process; the global batch is batch-size x grad-accum x N):
        torchrun --standalone --nproc_per_node=8 -m clsa.cli train --preset small \
            --variant yoco --parallel fsdp2 --out-dir runs/yoco-small-8

Run folder: ``log.jsonl`` (runlog.py), ``loss.png``, ``checkpoints/`` (checkpoint.py),
``tokenizer/`` (bpe:<vocab> only) and at the end ``model/`` (save_pretrained + tokenizer).
A run whose out_dir holds ``checkpoints/latest`` resumes from it, exactly: the model, AdamW,
schedule, data stream and RNG states are restored, so N steps in one go and N/2 + resume + N/2
give identical losses on CPU. ``on_step(step, record)`` is called after every step (tests stop
runs through it).

SIGTERM (``timeout``, a scheduler's pre-emption notice, torchrun passing it on) does not lose the
steps since the last checkpoint: the run finishes its current step, saves a checkpoint there and
stops (no ``model/``); the returned metrics hold ``stopped_at`` and ``clsa train`` exits with 143.
Run the same command again to resume.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from clsa.model import CLSAForCausalLM
from clsa.train import distributed as D
from clsa.train.args import TrainArgs
from clsa.train.checkpoint import (check_resumable, init_from, latest_checkpoint,
                                   load_checkpoint, save_checkpoint, source_tokenizer)
from clsa.train.corpus import Corpus, DataError, folder_corpus, split_train_val, stdlib_corpus
from clsa.train.objectives import Objective, token_weights
from clsa.train.packing import PackedStream
from clsa.train.runlog import RunLog, plot_log
from clsa.train.schedule import CosineSchedule
from clsa.train.tokenizer import META_FILE, ByteTokenizer, load_tokenizer, train_bpe

log = logging.getLogger("clsa.train")

__all__ = ["TrainArgs", "train"]


def train(args: TrainArgs, on_step=None) -> dict:
    """Run (or resume) the training run ``args`` describes; returns the final metrics."""
    args.validate()
    env = D.setup(args.device)
    try:
        return _Run(args, env).run(on_step)
    finally:
        env.close()


def _corpus(args: TrainArgs) -> tuple[Corpus, Corpus]:
    corpus = stdlib_corpus() if args.data is None else folder_corpus(args.data)
    if args.max_docs is not None:
        corpus = Corpus(corpus[:args.max_docs])
    return split_train_val(corpus, args.val_fraction, args.seed)


def _tokenizer(args: TrainArgs, train_docs, env: D.DistEnv, resuming: bool):
    spec = args.tokenizer
    if spec is None:
        src = source_tokenizer(args.from_checkpoint) if args.from_checkpoint else None
        return load_tokenizer(src) if src is not None else ByteTokenizer()
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("bpe:"):
        folder = Path(args.out_dir) / "tokenizer"
        if not (resuming and (folder / META_FILE).is_file()):
            if env.is_main:
                log.info("training a byte-level BPE (vocab %s) on %d documents", spec[4:],
                         len(train_docs))
                train_bpe(train_docs, int(spec[4:])).save(folder)
            env.barrier()
        return load_tokenizer(folder)
    return load_tokenizer(spec)


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequest:
    """Notes a SIGTERM while installed (main thread only), so the loop can checkpoint and stop."""

    def __init__(self):
        self.signum, self._old = None, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._note)
        return self

    def _note(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _add(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


class _Run:
    """One process's share of a run: built in __init__, driven by run()."""

    def __init__(self, args: TrainArgs, env: D.DistEnv):
        self.args, self.env = args, env
        self.out = Path(args.out_dir)
        latest = latest_checkpoint(self.out)
        self.ckpt = load_checkpoint(latest) if latest is not None else None
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        train_docs, val_docs = _corpus(args)
        self.tokenizer = _tokenizer(args, train_docs, env, self.ckpt is not None)
        self.config = config = args.config(self.tokenizer.vocab_size)
        if self.ckpt is not None:
            for warning in check_resumable(self.ckpt, config, args):
                log.warning("resume: %s", warning)
        self._check_stage()

        raw = CLSAForCausalLM(config)
        if self.ckpt is not None and args.from_checkpoint:
            self._say(f"resuming {self.ckpt['path']}: --from {args.from_checkpoint} is ignored")
        if self.ckpt is None and args.from_checkpoint:
            missing, unexpected = init_from(raw, args.from_checkpoint)
            self._say(f"initialised from {args.from_checkpoint}: {len(missing)} new (indexer) "
                      f"tensors {missing or ''}, {len(unexpected)} unused {unexpected or ''}")
        if args.stage == "distill":
            for name, p in raw.named_parameters():
                p.requires_grad_(D.is_indexer_param(name))
        self.raw = raw.to(env.device)
        model = D.wrap(self.raw, env, args.parallel, args.stage)
        self.no_sync = self._no_sync_factory(model)
        self.manual_params = [p for n, p in self.raw.named_parameters()
                              if p.requires_grad and D.is_indexer_param(n)
                              and args.parallel == "ddp"]
        self.params = [p for p in self.raw.parameters() if p.requires_grad]
        self.optimizer = self._optimizer()
        self.schedule = CosineSchedule(self.optimizer, args.lr, args.min_lr, args.warmup,
                                       args.steps)
        forward = model
        if args.compile:
            if args.stage == "pretrain":
                forward = torch.compile(model)
            else:
                log.warning("--compile applies to the pretrain stage only; running eagerly")
        bf16 = args.dtype == "bf16" or (args.dtype == "auto" and env.device.type == "cuda")
        autocast = ((lambda: torch.autocast(env.device.type, dtype=torch.bfloat16)) if bf16
                    else contextlib.nullcontext)
        self.objective = Objective(args.stage, self.raw, forward, args, env.world_size, autocast)

        stream_kw = dict(seq_len=args.seq_len, batch_size=args.batch_size, seed=args.seed,
                         rank=env.rank, world_size=env.world_size,
                         synthetic_mix=args.synthetic_mix, synthetic_len=args.synthetic_len,
                         synthetic_min_len=args.synthetic_min_len,
                         synthetic_tasks=(args.synthetic_tasks.split(",") if args.synthetic_tasks
                                          else None))
        self.train_stream = PackedStream(train_docs, self.tokenizer, **stream_kw)
        self.val_stream = PackedStream(val_docs, self.tokenizer, **stream_kw)
        self.step = 0
        self.last_metrics: dict = {}
        if self.ckpt is not None:
            self._restore()
        self.log = None
        if env.is_main:
            self.log = RunLog(self.out / "log.jsonl", self.step if self.ckpt else None)

    def _say(self, msg: str) -> None:
        if self.env.is_main:
            log.info(msg)

    def _check_stage(self) -> None:
        a, c = self.args, self.config
        if a.stage in ("distill", "sparse") and not c.is_sparse:
            raise ValueError(f"--stage {a.stage} trains an indexer, but variant {a.variant!r} has "
                             "none; use --variant clsa, yoco-dsa or indexcache (initialise it "
                             f"--from a trained {a.variant} run)")
        if a.stage == "pretrain" and c.is_sparse and self.env.is_main:
            log.warning("pretraining the sparse variant %r: its indexer receives no gradient (the "
                        "top-k is not differentiable) and routes at random; train it with "
                        "`clsa distill --from %s` afterwards", a.variant, a.out_dir)
        if (a.stage != "pretrain" and not a.from_checkpoint and self.ckpt is None
                and self.env.is_main):
            log.warning("stage %s without --from: the backbone is untrained", a.stage)

    def _no_sync_factory(self, model):
        """Context skipping the gradient all-reduce on all but the last micro-batch."""
        if hasattr(model, "no_sync"):
            return model.no_sync
        if hasattr(model, "set_requires_gradient_sync"):
            @contextlib.contextmanager
            def fsdp_no_sync():
                model.set_requires_gradient_sync(False)
                try:
                    yield
                finally:
                    model.set_requires_gradient_sync(True)
            return fsdp_no_sync
        return contextlib.nullcontext

    def _optimizer(self):
        named = [(n, p) for n, p in self.raw.named_parameters() if p.requires_grad]
        groups = [{"params": [p for _, p in named if p.dim() >= 2],
                   "weight_decay": self.args.weight_decay},
                  {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0}]
        self.fused = (self.env.device.type == "cuda" and self.args.parallel != "fsdp2") or None
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=self.args.lr,
                                 betas=(0.9, 0.95), eps=1e-8, fused=self.fused)

    def _restore(self) -> None:
        ck = self.ckpt
        D.load_model_state(self.raw, ck["model"])
        D.load_optim_state(self.raw, self.optimizer, ck["optimizer"])
        for group in self.optimizer.param_groups:  # a GPU checkpoint may resume on a CPU
            group["fused"] = self.fused
        ts = ck["trainer"]
        self.step = int(ts["step"])
        self.schedule.load_state_dict(ts["schedule"])
        self._restore_stream(ts["stream"])
        _set_rng_state(ts["rng"])
        self.last_metrics = dict(ts.get("metrics") or {})
        self._say(f"resumed from {ck['path']} at step {self.step}")

    def _restore_stream(self, saved: dict) -> None:
        """Continue at the same global window under any world size / per-process batch."""
        mine = self.train_stream.state_dict()
        free = ("step", "rank", "world_size", "batch_size")
        diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in mine.items()
                if k not in free and saved.get(k) != v]
        if diff:
            raise DataError("the checkpoint's data stream does not match this run's ("
                            + "; ".join(diff) + "); resume with the same data and tokenizer")
        windows = saved["step"] * saved["world_size"] * saved["batch_size"]
        per_step = self.env.world_size * self.args.batch_size
        if windows % per_step:
            raise DataError(f"the checkpoint consumed {windows} rows, not a multiple of "
                            f"world_size x batch_size = {per_step}; resume with a global batch "
                            f"that divides it (e.g. {saved['world_size']} x "
                            f"{saved['batch_size']})")
        self.train_stream.load_state_dict({**mine, "step": windows // per_step})

    def _batch(self, stream: PackedStream) -> dict:
        return {k: v.to(self.env.device, non_blocking=True) for k, v in stream.next_batch().items()}

    def _train_step(self, step: int) -> dict:
        a, env = self.args, self.env
        start = time.perf_counter()
        lr = self.schedule.apply(step)
        batches = [self._batch(self.train_stream) for _ in range(a.grad_accum)]
        local = float(sum(float(token_weights(b, a.synthetic_weight).sum()) for b in batches))
        global_tokens = env.sum([local])[0]
        sums: dict = {}
        for k, batch in enumerate(batches):
            sync = self.no_sync if k < a.grad_accum - 1 else contextlib.nullcontext
            _add(sums, self.objective.step(batch, global_tokens, sync))
        env.sync_grads(self.manual_params)
        norm = torch.nn.utils.clip_grad_norm_(self.params, a.grad_clip if a.grad_clip > 0
                                              else math.inf)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        keys = sorted(sums)
        sums = dict(zip(keys, env.sum([sums[k] for k in keys])))
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rows = a.batch_size * a.grad_accum * env.world_size
        return {"step": step, **self.objective.summarize(sums), "lr": lr,
                "grad_norm": float(norm), "tokens_per_s": rows * a.seq_len / seconds,
                "epoch": self.train_stream.epoch}

    def evaluate(self) -> dict:
        """Validation metrics (val_*) over the same eval_batches global batches every time."""
        self.val_stream.step = 0
        sums: dict = {}
        for _ in range(self.args.eval_batches):
            _add(sums, self.objective.evaluate(self._batch(self.val_stream)))
        keys = sorted(sums)
        sums = dict(zip(keys, self.env.sum([sums[k] for k in keys])))
        return self.objective.summarize(sums, prefix="val_")

    def save(self, step: int, metrics: dict) -> None:
        model_state = D.full_model_state(self.raw)  # collectives: every rank takes part
        optim_state = D.full_optim_state(self.raw, self.optimizer)
        if self.env.is_main:
            trainer_state = {"step": step, "schedule": self.schedule.state_dict(),
                             "stream": self.train_stream.state_dict(), "rng": _rng_state(),
                             "world_size": self.env.world_size, "metrics": metrics}
            path = save_checkpoint(self.out, step, model_state=model_state,
                                   optim_state=optim_state, trainer_state=trainer_state,
                                   args_json=self.args.to_json(), config=self.config,
                                   tokenizer=self.tokenizer, keep=self.args.keep_checkpoints)
            log.debug("checkpoint %s", path)
        self.env.barrier()

    def _finish(self) -> None:
        """model/ (save_pretrained + tokenizer) and loss.png, on rank 0."""
        sharded = self.env.distributed and self.args.parallel == "fsdp2"
        state = D.full_model_state(self.raw) if sharded else None
        if self.env.is_main:
            model = self.raw
            if state is not None:  # sharded parameters: save a gathered copy
                model = CLSAForCausalLM(self.config)
                D.load_model_state(model, state)
            model.save_pretrained(self.out / "model")
            self.tokenizer.save(self.out / "model")
            plot_log(self.out / "log.jsonl", self.out / "loss.png",
                     f"{self.args.variant} {self.args.preset} ({self.args.stage})")
        self.env.barrier()

    def run(self, on_step=None) -> dict:
        a, env = self.args, self.env
        metrics = dict(self.last_metrics)
        if self.step == 0:
            metrics = {"step": 0, **self.evaluate()}
            if self.log:
                self.log.write(metrics)
        from tqdm.auto import tqdm

        bar = tqdm(total=a.steps, initial=min(self.step, a.steps), unit="step",
                   disable=not (a.progress and env.is_main), dynamic_ncols=True)
        speeds, first = [], self.step + 1
        saved_at = self.step if self.ckpt is not None else None
        stopped = False
        with StopRequest() as stop, contextlib.closing(bar):
            for step in range(self.step + 1, a.steps + 1):
                record = self._train_step(step)
                if not all(math.isfinite(record[k]) for k in ("loss", "grad_norm")):
                    raise FloatingPointError(f"step {step}: loss {record['loss']}, grad norm "
                                             f"{record['grad_norm']}; lower --lr or --grad-clip")
                if step > first:  # the first step pays one-off warm-up costs
                    speeds.append(record["tokens_per_s"])
                if step == a.steps or (a.eval_every and step % a.eval_every == 0):
                    record.update(self.evaluate())
                if self.log:
                    self.log.write(record)
                metrics = record
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}",
                                tok_s=f"{record['tokens_per_s']:.0f}")
                if step == a.steps or (a.save_every and step % a.save_every == 0):
                    self.save(step, record)
                    saved_at = step
                self.step = step
                if on_step is not None:
                    on_step(step, record)
                # every rank stops at the same step (the checkpoint is a collective)
                stopped = stop.signum is not None
                if env.distributed:
                    stopped = env.sum([float(stopped)])[0] > 0
                if stopped:
                    break
        if saved_at != self.step:
            self.save(self.step, metrics)
        if stopped:
            log.warning("SIGTERM: stopped at step %d with a checkpoint there; run the same "
                        "command again to resume", self.step)
            metrics = {**metrics, "stopped_at": self.step}
        else:
            self._finish()
        if speeds:
            metrics["mean_tokens_per_s"] = sum(speeds) / len(speeds)
        metrics["out_dir"] = str(self.out)
        return metrics

