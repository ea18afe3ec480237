"""Training checkpoints: atomic write, ``latest`` pointer, resume checks, init ``--from``.

Layout of ``out_dir/checkpoints/``
    step-000200/                 one checkpoint, written to .tmp-step-000200-<pid>/ then renamed
        model.safetensors        full model state (lm_head.weight dropped when tied)
        optimizer.pt             full AdamW state keyed by parameter name
        trainer_state.pt         step, schedule, data-stream state, RNG states, last metrics
        train_args.json          the TrainArgs of the run that wrote it
        config.json              the CLSAConfig
        clsa_tokenizer.json      the tokenizer (+ tokenizer.json for BPE)
    latest                       a text file naming the newest step folder, replaced atomically

    save_checkpoint(out_dir, step, model_state=..., ...)      # rank 0
    ckpt = latest_checkpoint(out_dir)                         # Path or None
    missing, unexpected = init_from(model, "runs/yoco")       # run dir, checkpoint or model dir
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from clsa.config import CLSAConfig
from clsa.train.distributed import is_indexer_param

CKPT_DIR = "checkpoints"
LATEST = "latest"
WEIGHTS = "model.safetensors"
_CONFIG_FIELDS = [p for p in inspect.signature(CLSAConfig.__init__).parameters
                  if p not in ("self", "kwargs", "use_cache", "query_chunk_size",
                               "self_decoder_chunk", "indexer_key_bits")]
# ^ runtime knobs, free to change (indexer_key_bits: an inference cache format; training never
#   quantizes, so checkpoints from before the field existed resume as they are)


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def latest_checkpoint(out_dir) -> Path | None:
    """The checkpoint folder ``out_dir/checkpoints/latest`` names, or None when there is none."""
    root = Path(out_dir) / CKPT_DIR
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "trainer_state.pt").is_file():
        raise ValueError(f"{pointer} names {path.name}, which is missing or incomplete; delete "
                         f"{pointer} to start over or point it at an existing step folder")
    return path


def save_checkpoint(out_dir, step: int, *, model_state: dict, optim_state: dict,
                    trainer_state: dict, args_json: str, config: CLSAConfig, tokenizer,
                    keep: int = 0) -> Path:
    """Write one checkpoint atomically and move ``latest`` to it; keep the newest ``keep``."""
    root = Path(out_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in model_state.items()}, str(tmp / WEIGHTS))
    torch.save(optim_state, tmp / "optimizer.pt")
    torch.save(trainer_state, tmp / "trainer_state.pt")
    (tmp / "train_args.json").write_text(args_json + "\n")
    config.to_json_file(str(tmp / "config.json"))
    tokenizer.save(tmp)
    if final.exists():  # the same step written again (a resumed run repeating its last save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / f".{LATEST}-{os.getpid()}"
    pointer_tmp.write_text(final.name + "\n")
    os.replace(pointer_tmp, root / LATEST)
    if keep > 0:
        steps = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in steps[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path) -> dict:
    """Everything ``save_checkpoint`` wrote, as tensors and plain Python objects."""
    path = Path(path)
    return {
        "path": path,
        "model": load_file(str(path / WEIGHTS)),
        "optimizer": torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True),
        "trainer": torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True),
        "args": json.loads((path / "train_args.json").read_text()),
        "config": json.loads((path / "config.json").read_text()),
    }


def config_diff(saved: dict, config: CLSAConfig) -> list[str]:
    """'field: checkpoint X, now Y' for every model-defining field that differs."""
    now = config.to_dict()
    return [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}"
            for k in _CONFIG_FIELDS if saved.get(k) != now.get(k)]


def check_resumable(ckpt: dict, config: CLSAConfig, args) -> list[str]:
    """Raise ValueError when the checkpoint belongs to another model or data/objective setup;
    return warnings for settings that changed harmlessly (the schedule)."""
    where = ckpt["path"]
    diff = config_diff(ckpt["config"], config)
    if diff:
        raise ValueError(f"checkpoint {where} was written for a different model ("
                         + "; ".join(diff) + "). Fix: pass the --preset/--variant/--override of "
                         "that run to resume it, or choose another --out-dir (to start a new "
                         "stage from it, use --from " + str(where) + ")")
    saved, now = ckpt["args"], args.to_dict()
    from clsa.train.args import RESUME_MUST_MATCH

    diff = [f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}" for k in RESUME_MUST_MATCH
            if saved.get(k) != now[k]]
    if diff:
        raise ValueError(f"checkpoint {where} was written by a run with other data or objective ("
                         + "; ".join(diff) + "). Fix: resume with that run's settings, or choose "
                         f"another --out-dir (to start a new stage from it, use --from {where})")
    return [f"{k} changed from {saved.get(k)!r} to {now[k]!r}: the learning-rate schedule of the "
            "remaining steps differs from the original run's"
            for k in ("steps", "lr", "min_lr", "warmup") if saved.get(k) != now[k]]


def resolve_source(path) -> Path:
    """The folder holding the weights for ``--from``: a step folder, a model/ folder (from
    save_pretrained), a run's out_dir (its latest checkpoint, else its model/), or the
    ``checkpoints`` folder or its ``latest`` file."""
    p = Path(path)
    if p.is_file() and p.name == LATEST:
        p = p.parent / p.read_text().strip()
    if not p.exists():
        raise ValueError(f"--from {path}: no such file or folder; pass a run folder, a "
                         "checkpoints/step-XXXXXX folder or a saved model/ folder")
    if (p / LATEST).is_file():
        return resolve_source(p / LATEST)
    if (p / CKPT_DIR / LATEST).is_file():
        return resolve_source(p / CKPT_DIR / LATEST)
    if (p / WEIGHTS).is_file() or (p / (WEIGHTS + ".index.json")).is_file():
        return p
    if (p / "model" / WEIGHTS).is_file():
        return p / "model"
    raise ValueError(f"--from {path}: found no {WEIGHTS} there nor a checkpoints/latest; pass a "
                     "run folder, a checkpoints/step-XXXXXX folder or a saved model/ folder")


def read_weights(folder: Path) -> dict:
    """Tensors of model.safetensors, or of every shard a model.safetensors.index.json lists."""
    index = folder / (WEIGHTS + ".index.json")
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    return load_file(str(folder / WEIGHTS))


def init_from(model, path) -> tuple[list[str], list[str]]:
    """Load weights of a previous stage into ``model`` (non-strict): (missing, unexpected) keys.

    New indexer parameters (e.g. a yoco run continued as clsa) keep their fresh initialisation;
    any other missing parameter, or a shape that differs, raises ValueError.
    """
    src = resolve_source(path)
    state = read_weights(src)
    tied = getattr(model.config, "tie_word_embeddings", False)
    if tied and "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    own = model.state_dict()
    bad = [f"{k}: {tuple(v.shape)} there, {tuple(own[k].shape)} here" for k, v in state.items()
           if k in own and v.shape != own[k].shape]
    if bad:
        raise ValueError(f"--from {src}: parameter shapes differ (" + "; ".join(bad[:5])
                         + (" ..." if len(bad) > 5 else "") + "). Fix: use the --preset and "
                         "--override of the run that wrote it")
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    hard = [k for k in missing if not is_indexer_param(k)]
    if hard:
        raise ValueError(f"--from {src}: the model needs parameters the source lacks: "
                         + ", ".join(hard[:8]) + (" ..." if len(hard) > 8 else "")
                         + ". Only indexer parameters may be new; the source is another "
                         "architecture (e.g. dense vs yoco) or preset")
    return missing, unexpected


def source_tokenizer(path) -> Path | None:
    """The folder of the tokenizer saved beside the ``--from`` weights, if any."""
    src = resolve_source(path)
    return src if (src / "clsa_tokenizer.json").is_file() else None
