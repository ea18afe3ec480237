"""TrainArgs: every setting of one training run, validated; the CLI flags are generated from it.

Stages
    pretrain  LM loss through the model's normal forward (sparse variants: the indexer's top-k is
              not differentiable, so the indexer is not trained; run the distill stage after)
    distill   backbone frozen, only the indexers trained: KL(dense attention || indexer) over
              every visible key (DSA warm-up; multi-layer targets as in IndexCache)
    sparse    LM loss through the sparse forward + kl_weight * indexer KL over the selected set
              (DSA stage 2); start it ``--from`` a distilled checkpoint

    args = TrainArgs(preset="debug", variant="clsa", out_dir="runs/x", steps=30, seq_len=64)
    args.config(vocab_size=260)      # the CLSAConfig this run trains
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field

from clsa.config import PRESETS, VARIANTS, CLSAConfig
from clsa.train.synthetic import TASKS

STAGES = ("pretrain", "distill", "sparse")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bf16", "fp32")
PARALLEL = ("ddp", "fsdp2")
# Settings a resumed run must share with its checkpoint: they fix the data and the objective.
RESUME_MUST_MATCH = ("data", "max_docs", "val_fraction", "tokenizer", "seq_len", "seed",
                     "synthetic_mix", "synthetic_len", "synthetic_min_len", "synthetic_tasks", "synthetic_weight",
                     "stage", "distill_target")


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class TrainArgs:
    """One training run; see the module docstring for the stages. Field metadata holds the help."""

    preset: str = _help("model preset (clsa.config.PRESETS)", "tiny")
    variant: str = _help("attention variant", "clsa")
    overrides: dict = field(default_factory=dict, metadata={
        "help": "CLSAConfig fields over the preset, e.g. {'index_top_k': 32}"})
    out_dir: str = _help("run folder: log.jsonl, loss.png, checkpoints/, model/", "runs/train")
    data: str | None = _help("corpus folder or .jsonl/.txt file; None = the Python stdlib", None)
    max_docs: int | None = _help("use only the first N documents (by name) of the corpus", None)
    val_fraction: float = _help("share of documents held out for validation", 0.02)
    tokenizer: str | None = _help("'byte' | 'bpe:<vocab>' (trained on the train split, saved "
                                  "in out_dir/tokenizer) | a tokenizer path; None = byte, or the "
                                  "--from source's tokenizer", None)
    seq_len: int = _help("tokens per training row", 256)
    batch_size: int = _help("rows per micro-batch per process", 8)
    grad_accum: int = _help("micro-batches per optimizer step", 1)
    steps: int = _help("optimizer steps in total (a resumed run continues to this)", 1000)
    lr: float = _help("peak learning rate (AdamW)", 1e-3)
    min_lr: float = _help("learning rate at the end of the cosine decay", 1e-4)
    warmup: int = _help("linear warm-up steps", 50)
    weight_decay: float = _help("AdamW weight decay on matrices and embeddings", 0.1)
    grad_clip: float = _help("max global gradient norm (0 = no clipping)", 1.0)
    eval_every: int = _help("validate every N steps, at step 0 and at the end (0 = only at "
                            "the end)", 100)
    eval_batches: int = _help("validation batches (fixed, the same every time)", 8)
    save_every: int = _help("checkpoint every N steps and at the end (0 = only at the end)", 200)
    keep_checkpoints: int = _help("checkpoints kept on disk (0 = all)", 3)
    seed: int = _help("seed for weights, data order and the split", 0)
    synthetic_mix: float = _help("share of rows replaced by synthetic long-context tasks", 0.0)
    synthetic_len: int | None = _help("tokens per synthetic row (None = seq_len)", None)
    synthetic_min_len: int | None = _help("shortest synthetic row: lengths drawn log-uniformly "
                                          "in [this, synthetic_len], never below a sample's own "
                                          "facts + question + answer (1 = from there; None = all "
                                          "synthetic_len)", None)
    synthetic_weight: float = _help("loss weight of each synthetic answer token (text tokens: 1)",
                                    1.0)
    synthetic_tasks: str | None = _help("comma-separated synthetic tasks, e.g. 'needle,mqar' "
                                        "(None = all of clsa.train.synthetic.TASKS)", None)
    compile: bool = _help("torch.compile the model forward (pretrain stage)", False)
    device: str = _help("'auto' (cuda when available) | 'cpu' | 'cuda'", "auto")
    dtype: str = _help("'auto' (bf16 autocast on cuda, fp32 on cpu) | 'bf16' | 'fp32'", "auto")
    parallel: str = _help("under torchrun: 'ddp' | 'fsdp2' (fsdp2: pretrain stage only)", "ddp")
    from_checkpoint: str | None = _help("initialise weights from a checkpoint, run or model dir",
                                        None)
    stage: str = _help("'pretrain' | 'distill' | 'sparse'", "pretrain")
    distill_target: str = _help("'all' layers an indexer serves | 'layer:<j>' the j-th of them "
                                "(indexcache layer:0 = the indexer's own layer)", "all")
    kl_weight: float = _help("weight of the indexer KL in the sparse stage", 1.0)
    progress: bool = _help("tqdm progress bar", True)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and what it allows."""
        _check(self.preset in PRESETS, "preset", self.preset, f"one of {sorted(PRESETS)}")
        _check(self.variant in VARIANTS, "variant", self.variant, f"one of {VARIANTS}")
        _check(isinstance(self.overrides, dict) and all(isinstance(k, str) for k in self.overrides),
               "overrides", self.overrides, "a dict of CLSAConfig field names to values")
        _check("attention_variant" not in self.overrides, "overrides", self.overrides,
               "no 'attention_variant' key (set TrainArgs.variant / --variant instead)")
        for name in ("seq_len", "batch_size", "grad_accum", "steps", "eval_batches"):
            _check(_is_int(getattr(self, name), 1), name, getattr(self, name), "an integer >= 1")
        for name in ("warmup", "eval_every", "save_every", "keep_checkpoints", "seed"):
            _check(_is_int(getattr(self, name), 0), name, getattr(self, name), "an integer >= 0")
        _check(self.max_docs is None or _is_int(self.max_docs, 2), "max_docs", self.max_docs,
               "None or an integer >= 2 (train and validation need a document each)")
        _check(self.synthetic_len is None or _is_int(self.synthetic_len, 1), "synthetic_len",
               self.synthetic_len, "None or an integer >= 1")
        _check(self.synthetic_min_len is None or _is_int(self.synthetic_min_len, 1),
               "synthetic_min_len", self.synthetic_min_len, "None or an integer >= 1")
        _check(self.synthetic_tasks is None or (isinstance(self.synthetic_tasks, str) and all(
            t in TASKS for t in self.synthetic_tasks.split(","))), "synthetic_tasks",
            self.synthetic_tasks, f"None or a comma-separated subset of {sorted(TASKS)}")
        _check(_is_num(self.lr) and self.lr > 0, "lr", self.lr, "a float > 0")
        _check(_is_num(self.min_lr) and 0 <= self.min_lr <= self.lr, "min_lr", self.min_lr,
               f"a float in [0, lr={self.lr}]")
        for name in ("weight_decay", "grad_clip", "kl_weight", "synthetic_weight"):
            _check(_is_num(getattr(self, name)) and getattr(self, name) >= 0, name,
                   getattr(self, name), "a float >= 0")
        _check(_is_num(self.val_fraction) and 0 < self.val_fraction < 1, "val_fraction",
               self.val_fraction, "a float in (0, 1)")
        _check(_is_num(self.synthetic_mix) and 0 <= self.synthetic_mix <= 1, "synthetic_mix",
               self.synthetic_mix, "a float in [0, 1]")
        _check(self.device in DEVICES, "device", self.device, f"one of {DEVICES}")
        _check(self.dtype in DTYPES, "dtype", self.dtype, f"one of {DTYPES}")
        _check(self.parallel in PARALLEL, "parallel", self.parallel, f"one of {PARALLEL}")
        _check(self.stage in STAGES, "stage", self.stage, f"one of {STAGES}")
        _check(self.distill_target == "all" or re.fullmatch(r"layer:\d+", self.distill_target),
               "distill_target", self.distill_target, "'all' or 'layer:<j>' with j >= 0")
        tok = self.tokenizer
        _check(tok is None or (isinstance(tok, str) and tok != ""), "tokenizer", tok,
               "None, 'byte', 'bpe:<vocab>' or a tokenizer path")
        if isinstance(tok, str) and tok.startswith("bpe:"):
            _check(tok[4:].isdigit() and int(tok[4:]) >= 260, "tokenizer", tok,
                   "'bpe:<vocab>' with vocab >= 260 (256 bytes + 4 specials)")
        _check(isinstance(self.compile, bool), "compile", self.compile, "True or False")
        _check(isinstance(self.progress, bool), "progress", self.progress, "True or False")

    @property
    def target_layer(self) -> int | None:
        """j of distill_target='layer:<j>', None for 'all'."""
        return None if self.distill_target == "all" else int(self.distill_target.split(":")[1])

    def config(self, vocab_size: int) -> CLSAConfig:
        """The model config: preset + variant + overrides, vocab from the tokenizer.

        An explicit ``overrides['vocab_size']`` may pad the vocabulary but not shrink it below the
        tokenizer's. Raises ValueError naming the field when seq_len exceeds the context.
        """
        over = dict(self.overrides)
        vocab = over.pop("vocab_size", vocab_size)
        if vocab < vocab_size:
            raise ValueError(f"TrainArgs.overrides['vocab_size']={vocab} is smaller than the "
                             f"tokenizer's vocabulary ({vocab_size}); drop the override or "
                             "raise it")
        cfg = CLSAConfig.from_name(self.preset, attention_variant=self.variant, vocab_size=vocab,
                                   **over)
        if self.seq_len > cfg.max_position_embeddings:
            raise ValueError(f"TrainArgs.seq_len={self.seq_len} exceeds the preset's "
                             f"max_position_embeddings={cfg.max_position_embeddings}; lower "
                             "--seq-len or pass --override max_position_embeddings=<n>")
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainArgs":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _is_int(v, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(cond, name: str, value, allowed: str) -> None:
    if not cond:
        raise ValueError(f"TrainArgs.{name}={value!r} is invalid: allowed {allowed}.")
