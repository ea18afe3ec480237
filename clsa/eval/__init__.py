"""Evaluation: perplexity, the long-context synthetic suite, lm-eval tasks, routing analysis.

    from clsa.eval import load_checkpoint, perplexity, run_synthetic_suite, analyze_routing
    model, tok = load_checkpoint("runs/tiny/model")
    perplexity(model, tok, val_docs, seq_len=1024, batch_size=4, max_tokens=65536)
    run_synthetic_suite(model, tok, lengths=[1024, 2048], n=20, out_dir="runs/tiny/eval")
    from clsa.eval.lm_eval_adapter import run_lm_eval          # needs the lm-eval package
    run_lm_eval("runs/tiny/model", ["arc_challenge"], data_dir="data/lm_eval", limit=100)

Command line: ``clsa eval ...`` and ``clsa analyze routing ...`` (see clsa/eval/cli.py).
"""

from clsa.eval.checkpoint import HFTokenizerView, as_tokenizer, load_checkpoint, load_smollm2
from clsa.eval.perplexity import perplexity
from clsa.eval.routing import RoutingAccumulator, analyze_routing, plot_routing, run_routing_analysis
from clsa.eval.synthetic_suite import normalize, run_synthetic_suite, score

__all__ = [
    "HFTokenizerView", "RoutingAccumulator", "analyze_routing", "as_tokenizer", "load_checkpoint",
    "load_smollm2", "normalize", "perplexity", "plot_routing", "run_routing_analysis",
    "run_synthetic_suite", "score",
]
