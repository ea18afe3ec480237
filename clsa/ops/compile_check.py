"""Compile a Triton kernel for sm_90 on a machine without a GPU: Triton's own compiler and its
bundled ptxas. The interpreter that the CPU tests use runs kernels as NumPy and accepts code the
GPU compiler rejects, so every kernel family has a ``--compile-only``
report built on this, and a CI test that fails on any compile error or register spill."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

import triton

DIV16 = [["tt.divisibility", 16]]


def ptxas_report(ptx: str) -> dict:
    """Registers, spills and ptxas' word on one kernel, from Triton's bundled ptxas."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        log = subprocess.run([triton.knobs.nvidia.ptxas.path, "-v", "--gpu-name=sm_90a", src,
                              "-o", os.path.join(d, "k.o")], capture_output=True, text=True)
    text = log.stdout + log.stderr
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, text)) else None  # noqa: E731
    return {"regs": num(r"Used (\d+) registers"), "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads"), "ptxas_rc": log.returncode}


def compile_variant(fn, types: dict, constexprs: dict, opts: dict, tag: dict,
                    divisible=(), target_arch: int = 90) -> dict:
    """Compile one variant of ``fn`` (a ``triton.jit`` function) and return its report row:
    ``types`` maps every non-constexpr argument to a Triton type ("*bf16", "i32", ...); pointer
    arguments and those named in ``divisible`` are declared 16-divisible, as the launcher
    specializes them. A compile error is reported in the row (``error``), not raised, so a report
    lists every failing variant. The row is also printed as ``compile {json}``."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {a: "constexpr" if a in constexprs else types[a] for a in fn.arg_names}
    attrs = {(i,): DIV16 for i, a in enumerate(fn.arg_names)
             if sig[a].startswith("*") or a in divisible}
    row = {"kernel": fn.__name__, **tag, **opts}
    try:
        ck = triton.compile(ASTSource(fn, sig, constexprs, attrs),
                            target=GPUTarget("cuda", target_arch, 32), options=opts)
        row.update(ptxas_report(ck.asm["ptx"]), shared_bytes=ck.metadata.shared)
    except Exception as e:  # report every variant, not just the first failure
        row["error"] = repr(e)[:600]
    print("compile", json.dumps(row), flush=True)
    return row
