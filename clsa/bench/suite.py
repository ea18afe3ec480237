"""`clsa bench`: decode latency and memory of every variant, side by side, in one run.

    clsa bench decode --out benchmarks/results            # GPU: yoco-3b shape, bf16, graphs
    clsa bench all --quick --out /tmp/bench               # CPU smoke test (debug preset)

Every row is a (variant, backend) pair: ``torch`` is stock PyTorch (SDPA / bmm + torch.topk /
torch.gather) and ``triton`` our kernels; both run the same model in a CUDA graph. A pair whose
decoding disagrees with the fp32 reference on a small correctness check is refused, not reported.
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass

import torch

from clsa import ops
from clsa.bench.env import environment
from clsa.bench.floor import cache_bytes_read, copy_bandwidth, weight_bytes
from clsa.config import CLSAConfig
from clsa.model.memory import cache_report


@dataclass(frozen=True)
class Row:
    variant: str
    backend: str
    refresh_every: int = 1
    key_bits: int = 16  # indexer_key_bits: 8 = the int8 indexer key cache

    @property
    def name(self) -> str:
        g = f"(G={self.refresh_every})" if self.variant == "indexcache" else ""
        k = "(k8)" if self.key_bits == 8 else ""
        return f"{self.variant}{g}{k}/{self.backend}"


ROWS = (Row("dense", "torch"), Row("dense", "triton"), Row("yoco", "torch"), Row("yoco", "triton"),
        Row("yoco-dsa", "torch"), Row("yoco-dsa", "triton"), Row("indexcache", "torch", 4),
        Row("indexcache", "triton", 4), Row("clsa", "torch"), Row("clsa", "triton"),
        Row("clsa", "triton", key_bits=8))


def config_for(preset: str, row: Row, **overrides) -> CLSAConfig:
    return CLSAConfig.from_name(preset, attention_variant=row.variant,
                                index_refresh_every=row.refresh_every,
                                indexer_key_bits=row.key_bits, **overrides)


def check_row(row: Row, device: str, steps: int = 8) -> dict:
    """Greedy decoding of a small fp32 model with this backend (graphs on GPU) vs the reference."""
    from clsa.bench.decode import build_model
    from clsa.engine import Decoder
    from clsa.testing import rel_rms

    cfg = config_for("tiny", row, index_top_k=32)
    torch.manual_seed(0)
    model = build_model(cfg, device, torch.float32)
    prompt = torch.randint(0, cfg.vocab_size, (2, 200), device=device)
    out = {}
    for backend, graph in (("naive", False), (row.backend, device == "cuda")):
        with ops.use_backend(backend):
            dec = Decoder(model, 2, 200 + steps + 1, cuda_graph=graph)
            logits = [dec.prefill(prompt)]
            for _ in range(steps):
                logits.append(dec.step(logits[-1].argmax(-1)).clone())
            out[backend if backend == "naive" else "test"] = torch.stack(logits)
    err = rel_rms(out["test"], out["naive"])
    ok = err < 1e-3 and torch.equal(out["test"].argmax(-1), out["naive"].argmax(-1))
    return {"ok": bool(ok), "rel_rms": err}


def run_decode(preset: str, contexts, batches, rows=ROWS, device="cuda", rep: int = 100, log=print) -> dict:
    from clsa.bench.decode import build_model, time_step

    on_gpu = device == "cuda"
    res = {"env": environment(), "preset": preset, "dtype": "bfloat16" if on_gpu else "float32",
           "weights": "random (decode speed does not depend on weight values)", "rows": [], "skipped": []}
    bw = copy_bandwidth() if on_gpu else None
    res["copy_bandwidth_TBps"] = None if bw is None else bw / 1e12
    checks = {r.name: check_row(r, device) for r in rows}
    res["checks"] = checks
    for r in rows:
        if not checks[r.name]["ok"]:
            log(f"REFUSED {r.name}: disagrees with the reference ({checks[r.name]})")
            continue
        cfg = config_for(preset, r)
        torch.manual_seed(0)
        model = build_model(cfg, device, torch.bfloat16 if on_gpu else torch.float32)
        for B in batches:
            for N in contexts:
                need = cache_report(cfg, 2).per_sequence(N + 1) * B  # the weights are resident
                if on_gpu:
                    gc.collect()
                    torch.cuda.empty_cache()
                    free = torch.cuda.mem_get_info()[0]
                    if need + (3 << 30) > free:  # 3 GiB for activations, scratch and graph pools
                        res["skipped"].append({"row": r.name, "B": B, "N": N, "reason":
                                               f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"})
                        log(f"skip {r.name} B={B} N={N}: does not fit")
                        continue
                try:
                    ms = time_step(model, r.backend, B, N, rep) if on_gpu else _cpu_time(model, r.backend, B, N)
                except Exception as e:  # record it and go on: one failure must not hide the rest
                    res["skipped"].append({"row": r.name, "B": B, "N": N, "reason": f"error: {e!r}"[:400]})
                    log(f"error {r.name} B={B} N={N}: {e!r}"[:400])
                    continue
                nbytes = weight_bytes(model, B) + cache_bytes_read(cfg, B, N)
                row = {"row": r.name, "variant": r.variant, "backend": r.backend, "B": B, "N": N,
                       "step_ms": ms, "tokens_per_s": B / (ms * 1e-3), "bytes": nbytes,
                       "achieved_TBps": nbytes / (ms * 1e-3) / 1e12}
                if bw:
                    row["floor_ms"] = nbytes / bw * 1e3
                    row["vs_floor"] = ms / row["floor_ms"]
                res["rows"].append(row)
                log(json.dumps(row))
                torch.cuda.empty_cache() if on_gpu else None
        del model
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()
    add_ratios(res["rows"])
    return res


def run_modes(preset: str, contexts, rows, prefill_contexts, log=print, device="cuda",
              memory_context: int = 131072) -> dict:
    """Throughput, time to first token and measured cache memory of each row.

    On a GPU every row runs in a fresh process (spawned, one at a time): a row's static caches,
    graph pools and allocator fragmentation cannot shrink the memory the next row measures.
    """
    on_gpu = device == "cuda"
    res = {"env": environment(), "preset": preset,
           "dtype": "bfloat16" if on_gpu else "float32", "throughput": [], "prefill": [], "memory": []}
    args = [(preset, r, list(contexts), list(prefill_contexts), device, memory_context) for r in rows]
    if on_gpu:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            parts = []
            for a in args:  # one at a time, logged as each row lands
                part = pool.apply(_modes_row, a)
                for line in part.pop("log"):
                    log(line)
                parts.append(part)
    else:
        parts = [_modes_row(*a, log=log) for a in args]
    for part in parts:
        for key in ("throughput", "prefill", "memory"):
            res[key] += part[key]
    for key, field in (("throughput", "tokens_per_s"), ("prefill", "ttft_ms")):
        for x in res[key]:
            base = [y.get(field) for y in res[key] if y["row"] == "dense/torch" and y["N"] == x["N"]]
            if base and base[0] and x.get(field):
                x["ratio_vs_dense_stock"] = (x[field] / base[0]) if key == "throughput" else (base[0] / x[field])
    return res


def _modes_row(preset: str, r: Row, contexts, prefill_contexts, device: str, memory_context: int,
               log=None) -> dict:
    from clsa.bench.decode import build_model
    from clsa.bench.modes import cache_memory, throughput, time_to_first_token

    lines = []
    if log is None:  # in a worker process: lines travel back with the result
        log = lines.append
    on_gpu = device == "cuda"
    out = {"throughput": [], "prefill": [], "memory": [], "log": lines}
    torch.manual_seed(0)
    model = build_model(config_for(preset, r), device, torch.bfloat16 if on_gpu else torch.float32)
    for N in contexts:
        try:
            t = {"row": r.name, "N": N, **throughput(model, r.backend, N, log)}
        except Exception as e:  # record and go on
            t = {"row": r.name, "N": N, "error": repr(e)[:300]}
        out["throughput"].append(t)
        log(json.dumps(t))
    if r.backend == "torch" or r.variant == "clsa":
        try:
            m = {"row": r.name, **cache_memory(model, 1, memory_context)}
        except Exception as e:
            m = {"row": r.name, "error": repr(e)[:300]}
        out["memory"].append(m)
        log(json.dumps(m))
    for N in prefill_contexts:
        try:
            p = {"row": r.name, "N": N, "ttft_ms": time_to_first_token(model, r.backend, N)}
        except torch.OutOfMemoryError as e:
            p = {"row": r.name, "N": N, "error": repr(e)[:300]}
        out["prefill"].append(p)
        log(json.dumps(p))
    return out


def _cpu_time(model, backend, B, N, reps: int = 3) -> float:
    from clsa.bench.decode import decode_step_fn

    with ops.use_backend(backend), torch.no_grad():
        step, _ = decode_step_fn(model, B, N)
        step()
        t = time.perf_counter()
        for _ in range(reps):
            step()
        return (time.perf_counter() - t) / reps * 1e3


def add_ratios(rows) -> None:
    """speedup vs the fastest dense step (any backend) and vs the fastest yoco-dsa at the same (B, N)."""
    for r in rows:
        same = [x for x in rows if x["B"] == r["B"] and x["N"] == r["N"]]
        dense = [x["step_ms"] for x in same if x["variant"] == "dense"]
        dsa = [x["step_ms"] for x in same if x["variant"] == "yoco-dsa"]
        r["speedup_vs_dense_best"] = min(dense) / r["step_ms"] if dense else None
        r["speedup_vs_yoco_dsa_best"] = min(dsa) / r["step_ms"] if dsa else None


def memory_table(preset: str) -> list[dict]:
    out = []
    for r in ROWS:
        if r.backend != "torch":
            continue
        rep = cache_report(config_for(preset, r), 2)
        out.append({"variant": r.name.split("/")[0], "bytes_per_token": rep.per_token,
                    "fixed_bytes_per_sequence": rep.per_sequence_fixed,
                    "bytes_per_128k_sequence": rep.per_sequence(131072)})
    return out


def markdown(res: dict) -> str:
    env = res["env"]
    lines = [f"# Decode benchmark ({res['preset']}, {res['dtype']})", "",
             f"{env.get('device')} | torch {env['torch']} | triton {env.get('triton')} | commit {env['commit']} | "
             f"{env['date']}", ""]
    if res.get("copy_bandwidth_TBps"):
        lines += [f"Copy bandwidth measured in this run: {res['copy_bandwidth_TBps']:.2f} TB/s", ""]
    lines += ["| row | B | N | step ms | tok/s | floor ms | x floor | vs dense best | vs yoco-dsa best |",
              "|---|---|---|---|---|---|---|---|---|"]
    f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in res["rows"]:
        lines.append(f"| {r['row']} | {r['B']} | {r['N']} | {r['step_ms']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{f(r.get('floor_ms'), 3)} | {f(r.get('vs_floor'))} | {f(r['speedup_vs_dense_best'])} | "
                     f"{f(r['speedup_vs_yoco_dsa_best'])} |")
    for s in res.get("skipped", []):
        lines.append(f"\nskipped {s['row']} B={s['B']} N={s['N']}: {s['reason']}")
    return "\n".join(lines) + "\n"


def modes_markdown(res: dict) -> str:
    env = res["env"]
    out = [f"# Throughput, prefill and memory ({res['preset']}, {res['dtype']})", "",
           f"{env.get('device')} | torch {env['torch']} | triton {env.get('triton')} | commit {env['commit']} | "
           f"{env['date']}", "", "## Throughput at the largest batch that fits", "",
           "| row | N | max batch | step ms | tokens/s | vs dense stock |", "|---|---|---|---|---|---|"]
    f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for t in res["throughput"]:
        out.append(f"| {t['row']} | {t['N']} | {t.get('B', '-')} | {f(t.get('step_ms'), 3)} | "
                   f"{f(t.get('tokens_per_s'), 0)} | {f(t.get('ratio_vs_dense_stock'))} |"
                   + (f" {t['error']} |" if "error" in t else ""))
    out += ["", "## Time to first token (one prompt)", "", "| row | N | TTFT ms | dense stock / this |",
            "|---|---|---|---|"]
    for p in res["prefill"]:
        out.append(f"| {p['row']} | {p['N']} | {f(p.get('ttft_ms'), 1)} | {f(p.get('ratio_vs_dense_stock'))} |")
    out += ["", "## Cache memory of one sequence", "", "| row | N | measured bytes | computed bytes |",
            "|---|---|---|---|"]
    for m in res["memory"]:
        out.append(f"| {m['row']} | {m.get('N', '-')} | {m.get('measured_bytes', '-'):,} | "
                   f"{m.get('computed_bytes', '-'):,} |" if "error" not in m else f"| {m['row']} | error |")
    return "\n".join(out) + "\n"


def save(res: dict, out_dir: str, stem: str) -> str:
    """JSON + Markdown + PNG for a decode result (``rows``) or a modes result (``throughput``)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, stem)
    with open(path + ".json", "w") as f:
        json.dump(res, f, indent=1)
    decode = "rows" in res
    with open(path + ".md", "w") as f:
        f.write(markdown(res) if decode else modes_markdown(res))
    try:
        from clsa.bench.plots import decode_plot, modes_plot
    except ImportError as e:  # a bare GPU image without matplotlib: `clsa bench plot` redraws later
        print(f"no PNG for {path}: {e}")
        return path
    if decode and res["rows"]:
        decode_plot(res, path + ".png")
    elif not decode and (res["throughput"] or res["prefill"]):
        modes_plot(res, path + ".png")
    return path
