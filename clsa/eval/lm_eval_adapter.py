"""lm-evaluation-harness (0.4.x) on clsa checkpoints, with every data set read from local files.

    pip install "lm-eval>=0.4.8,<0.5"
    from clsa.eval.lm_eval_adapter import run_lm_eval
    res = run_lm_eval("runs/tiny/model", ["arc_challenge", "gsm8k", "drop"], "data/lm_eval",
                      limit=100)
    res["results"]["arc_challenge"]["acc,none"]

Data layout: ``<data_dir>/<task>/<split>.jsonl`` (or ``.json``) in the task's REAL schema, one file
per split the task's YAML names (training_split / validation_split / test_split / fewshot_split).
On a machine with network, ``datasets.load_dataset(path, name)[split].to_json(file)`` writes one;
the schemas, as the built-in YAMLs (and drop's utils.process_docs) read them:
    arc_challenge  test (+ train, validation): id, question, choices {text [..], label [..]},
                   answerKey
    gsm8k          test (+ train for the 5-shot prompt): question, answer ("... #### 42")
    drop           validation (+ train): section_id, query_id, passage, question,
                   answer {number, date {day, month, year}, spans [..], worker_id, hit_id},
                   validated_answers {number [..], date [{day, month, year}, ..], spans [[..]], ..}
For each task a local YAML ``include:``s the installed built-in one (prompt, metrics, filters,
!function hooks unchanged) and overrides only ``dataset_path: json``, ``dataset_name: null``,
``dataset_kwargs: {data_files: {split: file}}`` and sets splits without a file to null.
Hugging Face hub, datasets and evaluate are switched offline for the run.

The model: ``CLSALM`` (registered with lm-eval as "clsa") implements loglikelihood,
loglikelihood_rolling and generate_until with greedy decoding, batching left-padded rows sorted
by length. An empty context is conditioned on <eos> (the document separator of our packing).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError('clsa.eval.lm_eval_adapter needs lm-evaluation-harness: '
                      'pip install "lm-eval>=0.4.8,<0.5"') from e

from clsa.eval.checkpoint import as_tokenizer, load_checkpoint, offline
from clsa.eval.decoding import greedy_generate, pad_left

SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


@register_model("clsa")
class CLSALM(LM):
    """lm-eval's LM interface over a clsa checkpoint (or any causal LM + clsa tokenizer).

    ``pretrained``: checkpoint folder (see load_checkpoint); or pass ``model`` and ``tokenizer``.
    ``max_length``: context limit (default: the model's max_position_embeddings); contexts are
    cut from the left to fit. generate_until is always greedy (do_sample and temperature in a
    task's generation_kwargs are ignored); ``max_gen_toks`` is the default budget per request.
    """

    def __init__(self, pretrained: str | None = None, model=None, tokenizer=None,
                 batch_size: int | str = 8, max_length: int | str | None = None,
                 max_gen_toks: int | str = 256, device: str | None = "cpu",
                 dtype: str = "float32", max_batch_size=None):
        super().__init__()
        if model is None:
            if pretrained is None:
                raise ValueError("CLSALM needs pretrained=<checkpoint dir> or model= and tokenizer=")
            model, tokenizer = load_checkpoint(pretrained, device=device or "cpu",
                                               dtype=getattr(torch, dtype), tokenizer=tokenizer)
        elif tokenizer is None:
            raise ValueError("CLSALM(model=...) needs tokenizer= too")
        self.model = model.eval()
        self.tok = as_tokenizer(tokenizer)
        self._device = next(model.parameters()).device
        self.batch_size = 8 if str(batch_size).startswith("auto") else int(batch_size)
        limit = getattr(model.config, "max_position_embeddings", None)
        self.max_length = int(max_length) if max_length is not None else int(limit or 2048)
        self.max_gen_toks = int(max_gen_toks)

    # Token-level helpers -------------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Trailing spaces of the context move to the continuation; the continuation's tokens are
        those of (context + continuation) after the context's own tokens."""
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        if not context:
            return [self.tok.eos_id], self.tok.encode(continuation)
        whole = self.tok.encode(context + continuation)
        ctx = self.tok.encode(context)
        return ctx, whole[len(ctx):]

    @torch.no_grad()
    def score_tokens(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), continuation is the greedy one) per pair; the
        context is cut from the left to fit max_length."""
        rows, n_cont = [], []
        for ctx, cont in pairs:
            if len(cont) > self.max_length:
                raise ValueError(f"a continuation of {len(cont)} tokens exceeds max_length="
                                 f"{self.max_length}")
            full = (list(ctx) + list(cont))[-(self.max_length + 1):]
            rows.append(full[:-1] if cont else full)
            n_cont.append(len(cont))
        out: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)
        order = sorted((i for i in range(len(pairs)) if n_cont[i]), key=lambda i: -len(rows[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            ids, mask = pad_left([rows[i] for i in idx], self.tok.pad_id)
            keep = max(n_cont[i] for i in idx)
            logits = self.model(ids.to(self._device), attention_mask=mask.to(self._device),
                                use_cache=False, logits_to_keep=keep).logits
            logp = F.log_softmax(logits[:, -keep:].float(), -1)               # [b, keep, V]
            for r, i in enumerate(idx):
                n = n_cont[i]
                target = torch.tensor(pairs[i][1], device=logp.device)
                lp = logp[r, keep - n:]
                total = lp.gather(-1, target[:, None]).sum().item()
                out[i] = (total, bool((lp.argmax(-1) == target).all()))
        return out

    # lm-eval API ---------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        results = self.score_tokens([self._encode_pair(*req.args) for req in requests])
        for req, r in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, r)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        pairs, owner = [], []
        for i, req in enumerate(requests):
            tokens = self.tok.encode(req.args[0])
            for w in get_rolling_token_windows(tokens, prefix_token=self.tok.eos_id,
                                               max_seq_len=self.max_length, context_len=1):
                pairs.append(make_disjoint_window(w))
                owner.append(i)
        scores = self.score_tokens(pairs)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owner, scores):
            totals[i] += lp
        for req, t in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, t)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False):
        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        for idx in groups.values():
            kwargs = dict(requests[idx[0]].args[1] or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.get("max_gen_toks",
                                     kwargs.get("max_new_tokens", self.max_gen_toks)))
            room = self.max_length - max_new
            if room < 1:
                raise ValueError(f"max_gen_toks={max_new} leaves no room for a prompt within "
                                 f"max_length={self.max_length}")
            prompts = []
            for i in idx:
                ctx = self.tok.encode(requests[i].args[0]) or [self.tok.eos_id]
                prompts.append(ctx[-room:])
            new = greedy_generate(self.model, prompts, max_new, self.tok.eos_id, self.tok.pad_id,
                                  self.batch_size, stop=until, decode=self.tok.decode)
            for i, ids in zip(idx, new):
                text = self.tok.decode(ids)
                for s in until:
                    text = text.split(s, 1)[0] if s else text
                results[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return results


# Local task configs -------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _task_lines() -> dict[str, list[Path]]:
    """task name -> installed YAML files with a ``task: <name>`` line (one text scan, ~1 s)."""
    import lm_eval

    found: dict[str, list[Path]] = {}
    pattern = re.compile(r"^task:\s*['\"]?([^\s'\"#]+)", re.MULTILINE)
    for path in sorted((Path(lm_eval.__file__).parent / "tasks").rglob("*.yaml")):
        for name in pattern.findall(path.read_text(errors="ignore")):
            found.setdefault(name, []).append(path)
    return found


def find_task_yaml(task: str) -> Path:
    """The installed lm-eval YAML that defines ``task`` (a text scan; lm-eval's own task index,
    ~10 s, only when the scan finds no single file)."""
    import lm_eval

    hits = _task_lines().get(task, [])
    if len(hits) == 1:
        return hits[0]
    from lm_eval.tasks import TaskManager

    entry = TaskManager().task_index.get(task)
    if entry is None or entry.yaml_path is None:
        raise ValueError(f"lm-eval {lm_eval.__version__} has no YAML task named {task!r} "
                         "(groups and Python-class tasks are not supported here)")
    return Path(entry.yaml_path)


def _split_files(task_dir: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(task_dir.glob("*.json*")):
        if p.suffix in (".json", ".jsonl"):
            files.setdefault(p.name.split(".")[0], p.resolve())
    return files


def write_local_task(task: str, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                     cache_dir: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Write ``<out_dir>/<task>.yaml`` reading ``<data_dir>/<task>/<split>.jsonl``; returns its
    path and a summary {builtin_yaml, data_files, splits}."""
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml

    builtin = find_task_yaml(task)
    cfg = load_yaml(builtin, resolve_func=False)
    task_dir = Path(data_dir) / task
    files = _split_files(task_dir) if task_dir.is_dir() else {}
    used = {cfg[k] for k in SPLIT_KEYS if cfg.get(k)}
    wanted = sorted(used)
    if not files:
        raise FileNotFoundError(f"no data for task {task!r}: expected {task_dir}/<split>.jsonl for "
                                f"the splits its config names: {', '.join(wanted)}")
    local = {"include": str(builtin), "task": task, "dataset_path": "json", "dataset_name": None,
             "dataset_kwargs": {"data_files": {s: str(files[s]) for s in wanted if s in files}}}
    if cache_dir is not None:
        local["dataset_kwargs"]["cache_dir"] = str(cache_dir)
    for key in SPLIT_KEYS:
        if cfg.get(key) and cfg[key] not in files:
            local[key] = None
    if not any(cfg.get(k) in files for k in ("test_split", "validation_split")):
        evals = [cfg[k] for k in ("test_split", "validation_split") if cfg.get(k)]
        raise FileNotFoundError(f"task {task!r} evaluates on split {' or '.join(evals)}: add "
                                f"{task_dir}/{evals[0]}.jsonl (found: {sorted(files) or 'none'})")
    if "fewshot_config" in cfg and isinstance(cfg["fewshot_config"], dict) \
            and cfg["fewshot_config"].get("split") and cfg["fewshot_config"]["split"] not in files:
        local["fewshot_config"] = {**cfg["fewshot_config"], "split": None}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{task}.yaml"
    path.write_text(yaml.safe_dump(local, sort_keys=False))
    return path, {"builtin_yaml": str(builtin), "data_files": local["dataset_kwargs"]["data_files"],
                  "splits": {k: local.get(k, cfg.get(k)) for k in SPLIT_KEYS if k in cfg}}


def run_lm_eval(model_dir, tasks, data_dir, limit: int | float | None = None, *,
                batch_size: int = 8, num_fewshot: int | None = None, max_length: int | None = None,
                max_gen_toks: int = 256, work_dir=None, device: str = "cpu", lm: LM | None = None,
                bootstrap_iters: int = 0, seed: int = 0) -> dict:
    """Evaluate a checkpoint on lm-eval ``tasks`` from local data (module docstring).

    Returns {"results": {task: {metric: value}}, "n_samples", "versions", "n_shot", "tasks":
    {task: local config summary}, "lm_eval_version"}. ``limit``: at most that many documents per
    task (a float < 1: that fraction). ``work_dir`` keeps the generated YAMLs and the datasets
    cache (default: a temporary folder, removed afterwards). ``lm``: an already built CLSALM (or
    any lm-eval LM) to use instead of loading ``model_dir`` (which may then be None).
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="clsa-lm-eval-"))
        work = Path(work_dir)
        stack.enter_context(offline())
        summary = {}
        for t in tasks:
            _, summary[t] = write_local_task(t, data_dir, work / "tasks", work / "hf_datasets")
        if lm is None:
            lm = CLSALM(pretrained=str(model_dir), batch_size=batch_size, max_length=max_length,
                        max_gen_toks=max_gen_toks, device=device)
        manager = TaskManager(include_path=str(work / "tasks"), include_defaults=False)
        out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit,
                                      num_fewshot=num_fewshot, log_samples=False,
                                      bootstrap_iters=bootstrap_iters, random_seed=seed,
                                      numpy_random_seed=seed, torch_random_seed=seed,
                                      fewshot_random_seed=seed)
    results = {t: {k: v for k, v in r.items() if k != "alias"} for t, r in out["results"].items()}
    return {"results": results, "n_samples": out.get("n-samples"), "versions": out.get("versions"),
            "n_shot": out.get("n-shot"), "tasks": summary, "limit": limit,
            "lm_eval_version": getattr(lm_eval, "__version__", None)}


__all__ = ["CLSALM", "find_task_yaml", "run_lm_eval", "write_local_task"]
