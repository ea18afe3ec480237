"""Routing analysis: how much of each cross layer's own dense attention a shared top-k index keeps.

Shape legend
    probs     [L, B, C, T] fp32  head-averaged dense attention of the L analysed layers, for C query
                                 rows at absolute positions q_pos [C], over T keys; a row sums to 1
                                 over its visible keys (j <= q; inputs are unpadded) and is 0 beyond
    scores    [B, C, T]          an index's scores (higher = kept); invisible keys are masked here
    S_k(q)                       the min(k, q + 1) visible keys of highest score

Metrics for each k in ``ks``, means over all B*T queries unless said otherwise
    shared_mass[k][l]    sum of probs_l[q, j] over j in S_k(q) of the routing index: the model's
                         indexer for the sparse variants (clsa: its one indexer for every layer;
                         yoco-dsa / indexcache: the indexer serving layer l); for models without
                         one (dense, yoco, any HF model), the oracle shared index below
    oracle_shared_mass   S_k of mean_l probs_l: of all single k-sets shared by every layer, the
                         one that keeps the most mass averaged over layers
    own_mass[k][l]       S_k of probs_l itself: the per-layer oracle, an upper bound on what any
                         k keys keep of layer l
    *_by_position        the same means within query-position buckets
                         bucket_edges[b] <= q < bucket_edges[b + 1]
    overlap[k][l][m]     |S_k^l & S_k^m| / k between the layers' OWN top-k sets, over queries that
                         see more than k keys (one that sees <= k keys selects all of them in every
                         layer: overlap 1 by construction); 1.0 where there is no such query
    jaccard[k][l][m]     |S_k^l & S_k^m| / |S_k^l | S_k^m| over the same queries

Dense attention is the reference: YOCO models are run by ``cross_states`` (dense cross-attention),
transformers models with ``output_attentions=True`` under eager attention (all layers' maps are
held at once: L x H x T^2 x 4 bytes, e.g. 4.5 GB for SmolLM2 at T = 2048). Ties in top-k are broken
by torch.topk; overlap is only well defined for attention rows without tied scores.

    from clsa.eval.routing import analyze_routing, plot_routing
    report = analyze_routing(model, input_ids, ks=[64, 256, 1024])
    plot_routing(report, "out/")        # routing_mass.png, routing_overlap_k*.png, ...
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import torch

from clsa.eval import plots


def default_bucket_edges(T: int, first: int = 16) -> list[int]:
    """[0, 16, 32, 64, ..., T): powers of two below T, then T."""
    edges, e = [0], first
    while e < T:
        edges.append(e)
        e *= 2
    return edges + [T]


class RoutingAccumulator:
    """Sums the routing metrics over query chunks; ``result()`` gives the means (module legend)."""

    def __init__(self, n_layers: int, ks, bucket_edges):
        self.L = n_layers
        self.ks = sorted({int(k) for k in ks})
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"ks={list(ks)} must be a non-empty list of integers >= 1")
        self.edges = [int(e) for e in bucket_edges]
        if self.edges[0] != 0 or any(a >= b for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"bucket_edges={self.edges} must start at 0 and increase")
        nk, nb = len(self.ks), len(self.edges) - 1
        f64 = dict(dtype=torch.float64)
        self.mass = {name: torch.zeros(nk, n_layers, nb, **f64)
                     for name in ("shared", "oracle", "own")}
        self.queries = torch.zeros(nb, **f64)
        self.inter = torch.zeros(nk, n_layers, n_layers, **f64)
        self.jacc = torch.zeros(nk, n_layers, n_layers, **f64)
        self.overlap_queries = torch.zeros(nk, **f64)

    def _bucket_sums(self, per_query, bucket):
        """[L, B, C] -> [L, nb]: sums of each layer's values per position bucket."""
        out = torch.zeros(self.L, len(self.edges) - 1, dtype=torch.float64)
        return out.index_add_(1, bucket, per_query.double().sum(1))

    @torch.no_grad()
    def add(self, probs: torch.Tensor, q_pos: torch.Tensor, index_scores=None) -> None:
        """One chunk of query rows. ``index_scores``: None (use the oracle shared index) or a list
        of L score tensors [B, C, T], one per layer (the same tensor object for layers sharing an
        index, so its top-k is taken once)."""
        L, B, C, T = probs.shape
        if L != self.L:
            raise ValueError(f"probs has {L} layers, the accumulator {self.L}")
        if index_scores is not None and len(index_scores) != L:
            raise ValueError(f"index_scores has {len(index_scores)} entries for {L} layers")
        probs = probs.float()
        q_pos = q_pos.to(probs.device).long()
        if int(q_pos.max()) >= T or int(q_pos.max()) >= self.edges[-1]:
            raise ValueError(f"query position {int(q_pos.max())} is outside the {T} keys or the "
                             f"last bucket edge {self.edges[-1]}")
        n_vis = q_pos + 1                                                     # [C]
        visible = torch.arange(T, device=probs.device)[None, :] <= q_pos[:, None]  # [C, T]
        bucket = torch.bucketize(q_pos, torch.tensor(self.edges[1:-1], device=q_pos.device),
                                 right=True).cpu()
        self.queries.index_add_(0, bucket, torch.full((C,), float(B), dtype=torch.float64))
        own_scores = probs.masked_fill(~visible, float("-inf"))               # [L, B, C, T]
        mean_scores = probs.mean(0).masked_fill(~visible, float("-inf"))      # [B, C, T]
        for ki, k in enumerate(self.ks):
            kk = min(k, T)
            valid = torch.arange(kk, device=probs.device)[None, :] < n_vis[:, None]  # [C, kk]

            def kept(scores):  # [B, C, T] -> mass each layer keeps, [L, B, C]
                idx = scores.topk(kk, dim=-1).indices
                got = probs.gather(-1, idx.expand(L, B, C, kk))
                return (got * valid).sum(-1)

            oracle = kept(mean_scores)
            if index_scores is None:
                shared = oracle
            else:
                cache: dict[int, torch.Tensor] = {}
                rows = []
                for l, s in enumerate(index_scores):
                    if id(s) not in cache:
                        cache[id(s)] = kept(s.float().masked_fill(~visible, float("-inf")))
                    rows.append(cache[id(s)][l])
                shared = torch.stack(rows)
            top = own_scores.topk(kk, dim=-1)
            own = torch.where(valid, top.values, torch.zeros((), device=probs.device)).sum(-1)
            for name, val in (("shared", shared), ("oracle", oracle), ("own", own)):
                self.mass[name][ki] += self._bucket_sums(val.cpu(), bucket)
            # Overlap of the layers' own sets, on queries that see more than k keys.
            choice = n_vis > k
            if choice.any():
                members = torch.zeros(L, B, C, T, device=probs.device)
                members.scatter_(-1, top.indices, valid.expand(L, B, C, kk).float())
                m = members[:, :, choice]                                     # [L, B, C', T]
                inter = torch.einsum("lbct,mbct->lmbc", m, m).double().cpu()  # [L, L, B, C']
                self.inter[ki] += (inter / k).sum((2, 3))
                self.jacc[ki] += (inter / (2 * k - inter)).sum((2, 3))
                self.overlap_queries[ki] += inter.shape[2] * inter.shape[3]

    def result(self) -> dict:
        """JSON-ready means; keys of per-k dicts are str(k)."""
        def num(x):
            return None if math.isnan(x) else float(x)

        out: dict = {"ks": self.ks, "bucket_edges": self.edges,
                     "queries_per_bucket": [int(q) for q in self.queries.tolist()]}
        total = self.queries.sum()
        for name, key in (("shared", "shared_mass"), ("oracle", "oracle_shared_mass"),
                          ("own", "own_mass")):
            sums = self.mass[name]
            out[key] = {str(k): [num(v) for v in (sums[ki].sum(-1) / total).tolist()]
                        for ki, k in enumerate(self.ks)}
            by_pos = (sums / self.queries).tolist()                          # NaN: empty bucket
            out[key + "_by_position"] = {str(k): [[num(v) for v in row] for row in by_pos[ki]]
                                         for ki, k in enumerate(self.ks)}
        for key, sums in (("overlap", self.inter), ("jaccard", self.jacc)):
            out[key] = {}
            for ki, k in enumerate(self.ks):
                n = self.overlap_queries[ki]
                mat = sums[ki] / n if n > 0 else torch.ones(self.L, self.L, dtype=torch.float64)
                out[key][str(k)] = [[float(v) for v in row] for row in mat.tolist()]
        out["overlap_queries"] = {str(k): int(n)
                                  for k, n in zip(self.ks, self.overlap_queries.tolist())}
        return out


def _is_clsa(model) -> bool:
    from clsa.model.backbone import CLSABackbone

    return isinstance(getattr(model, "model", None), CLSABackbone)


@contextlib.contextmanager
def _recording_attention():
    """Record the (q, k, q_pos, k_pos, kv_start, window, scale) of every ``clsa.ops.attention``
    call made inside the block: the op seam every clsa attention layer goes through, so the
    probabilities below do not depend on how a layer builds its queries and keys."""
    import clsa.ops as ops_module
    from clsa.ops.rotary.naive import rotary

    calls, original = [], ops_module.attention

    def recording(q, k, v, q_pos, k_pos, kv_start, *args, **kwargs):
        window = args[0] if args else kwargs.get("window")
        scale = args[1] if len(args) > 1 else kwargs.get("scale")
        rope = kwargs.get("rope")  # layers hand over q unrotated, with its tables
        q_rot = q if rope is None else rotary(q.detach(), *rope)
        calls.append((q_rot.detach(), k.detach(), q_pos, k_pos, kv_start, window, scale))
        return original(q, k, v, q_pos, k_pos, kv_start, *args, **kwargs)

    ops_module.attention = recording
    try:
        yield calls
    finally:
        ops_module.attention = original


def _recorded_probs(call, rows: slice):
    """Head-averaged attention [B, C, S] of one recorded ops.attention call, query rows ``rows``."""
    from clsa.ops.attention.naive import visible_mask

    q, k, q_pos, k_pos, kv_start, window, scale = call
    q = q[:, rows]                                                           # [B, C, H, D]
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)                 # [B, S, H, D]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.einsum("bchd,bshd->bhcs", q.float(), k.float()) * scale
    m = visible_mask(q_pos[:, rows], q_pos if k_pos is None else k_pos, kv_start, window)
    return torch.softmax(logits.masked_fill(~m[:, None], float("-inf")), -1).nan_to_num(0.0).mean(1)


def _clsa_chunks(model, input_ids, chunk: int):
    """(layer names, index kind, iterator of (probs [L,B,C,T], q_pos [C], index_scores|None))."""
    from clsa.model.backbone import attention_probs, cross_states

    bb, cfg = model.model, model.config
    T = input_ids.shape[1]
    if not cfg.is_yoco:
        layers = list(range(cfg.num_hidden_layers // 2, cfg.num_hidden_layers))
        with _recording_attention() as calls:
            model(input_ids, use_cache=False)
        if len(calls) != cfg.num_hidden_layers:
            raise RuntimeError(f"expected one attention call per layer, saw {len(calls)}")

        def dense_gen():
            for s in range(0, T, chunk):
                rows = slice(s, min(s + chunk, T))
                probs = torch.stack([_recorded_probs(calls[l], rows) for l in layers])
                yield probs, torch.arange(T, device=input_ids.device)[rows], None

        return [f"layer {l}" for l in layers], "oracle-shared", dense_gen()
    st = cross_states(bb, input_ids)
    n = cfg.num_cross_layers
    owners = sorted(bb.indexers()) if cfg.is_sparse else []
    # Layer l is routed by the last indexer at or before it (clsa: the one indexer, for all).
    serving = [max((i for i in owners if i <= l), default=None) for l in range(n)]
    kind = {"clsa": "clsa-indexer", "yoco-dsa": "per-layer-indexers",
            "indexcache": "indexcache-indexers"}.get(cfg.attention_variant, "oracle-shared")

    def gen():
        for s in range(0, T, chunk):
            rows = slice(s, min(s + chunk, T))
            probs = torch.stack([attention_probs(bb, st, l, rows) for l in range(n)])
            scores = None
            if owners:
                by_owner = {i: bb.indexers()[i].scores(st.inputs[i][:, rows], st.positions[:, rows],
                                                       st.q_pos[:, rows], st.kv_start, st.keys[i])
                            for i in owners}
                scores = [by_owner[serving[l]] for l in range(n)]
            yield probs, st.q_pos[0, rows], scores

    names = [f"cross {l} (layer {cfg.num_self_layers + l})" for l in range(n)]
    return names, kind, gen()


def _hf_chunks(model, input_ids, chunk: int, layers=None):
    """Same for a transformers causal LM: its upper half of layers plays the cross layers."""
    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers // 2, n_layers)) if layers is None else list(layers)
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl != "eager":
        raise ValueError(f"the model uses attn_implementation={impl!r}; per-layer attention needs "
                         "'eager': load it with attn_implementation='eager'")
    out = model(input_ids=input_ids, output_attentions=True, use_cache=False)
    if out.attentions is None or any(out.attentions[l] is None for l in layers):
        raise ValueError("the model returned no attention maps for output_attentions=True")
    maps = [out.attentions[l].float().mean(1) for l in layers]               # [B, T, T] each
    del out
    T = input_ids.shape[1]

    def gen():
        for s in range(0, T, chunk):
            rows = slice(s, min(s + chunk, T))
            yield torch.stack([m[:, rows] for m in maps]), torch.arange(T)[rows], None

    return [f"layer {l}" for l in layers], "oracle-shared", gen()


@torch.no_grad()
def analyze_routing(model, input_ids: torch.Tensor, ks, bucket_edges=None, chunk: int = 256,
                    layers=None) -> dict:
    """Routing metrics (module legend) of ``model`` on unpadded ``input_ids`` [B, T].

    clsa models: the cross-decoder layers (a dense model: its upper half); any other
    transformers causal LM: ``layers`` (default its upper half). ``chunk`` query rows at a time.
    """
    if input_ids.dim() != 2 or input_ids.numel() == 0:
        raise ValueError("input_ids must be a non-empty [batch, seq] tensor, got "
                         f"{tuple(input_ids.shape)}")
    model.eval()
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    T = input_ids.shape[1]
    edges = default_bucket_edges(T) if bucket_edges is None else list(bucket_edges)
    if _is_clsa(model):
        names, kind, chunks = _clsa_chunks(model, input_ids, chunk)
    else:
        names, kind, chunks = _hf_chunks(model, input_ids, chunk, layers)
    acc = RoutingAccumulator(len(names), ks, edges)
    for probs, q_pos, scores in chunks:
        acc.add(probs, q_pos, scores)
    report = acc.result()
    cfg = model.config
    report.update(layers=names, index=kind, tokens=T, batch=input_ids.shape[0],
                  model_type=getattr(cfg, "model_type", type(model).__name__),
                  attention_variant=getattr(cfg, "attention_variant", None),
                  index_top_k=getattr(cfg, "index_top_k", None) if _is_clsa(model) else None)
    return report


def plot_routing(report: dict, out_dir: str | os.PathLike) -> list[Path]:
    """routing_mass.png (mass vs k), routing_mass_by_position.png, routing_layers.png (layer x k
    shared mass) and routing_overlap_k{k}.png (layer x layer) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ks, n = report["ks"], len(report["layers"])
    short = [name.split(" (")[0] for name in report["layers"]]

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else math.nan

    def over_k(key, reduce=mean):
        return [reduce(report[key][str(k)]) for k in ks]

    series = {
        f"shared index ({report['index']}), mean over layers": over_k("shared_mass"),
        "shared index, worst layer": (over_k("shared_mass", min), {"linestyle": ":"}),
        "oracle shared index (mean attention)": over_k("oracle_shared_mass"),
        "own top-k per layer (upper bound)": (over_k("own_mass"), {"linestyle": "--"}),
    }
    paths = [plots.lines(ks, series, out / "routing_mass.png", logx=True, xlabel="k",
                         ylabel="share of attention mass kept",
                         title=f"{report['tokens']} tokens x {report['batch']}: mass kept by top-k")]
    starts = report["bucket_edges"][:-1]
    by_pos = {f"k={k}": [mean([report["shared_mass_by_position"][str(k)][l][b] for l in range(n)])
                         for b in range(len(starts))] for k in ks}
    paths.append(plots.lines([max(e, 1) for e in starts], by_pos,
                             out / "routing_mass_by_position.png", logx=True,
                             xlabel="query position (bucket start)",
                             ylabel="shared-index mass, mean over layers",
                             title="mass kept by the shared index vs query position"))
    grid = [[report["shared_mass"][str(k)][l] for k in ks] for l in range(n)]
    paths.append(plots.heatmap(grid, short, [str(k) for k in ks], out / "routing_layers.png",
                               title="shared-index mass per layer", xlabel="k"))
    for k in ks:
        paths.append(plots.heatmap(report["overlap"][str(k)], short, short,
                                   out / f"routing_overlap_k{k}.png",
                                   title=f"own top-{k} overlap |A&B|/k "
                                         f"({report['overlap_queries'][str(k)]} queries)"))
    return paths


def routing_inputs(tokenizer, docs, tokens: int, batch: int = 1) -> torch.Tensor:
    """[batch, tokens] ids: consecutive stretches of the documents' token stream (docs + <eos>)."""
    from clsa.eval.perplexity import token_stream

    stream = token_stream(docs, tokenizer, tokens * batch)
    if len(stream) < tokens * batch:
        raise ValueError(f"the documents hold {len(stream)} tokens, fewer than tokens x batch = "
                         f"{tokens * batch}")
    return torch.tensor(stream[:tokens * batch], dtype=torch.long).view(batch, tokens)


def run_routing_analysis(model_spec: str, ks, out_dir, tokens: int = 1024, batch: int = 1,
                         docs=None, chunk: int = 256, device: str = "cpu") -> dict:
    """Load ``model_spec`` ('smollm2' or a clsa checkpoint dir), analyse ``tokens`` tokens of
    ``docs`` (default: the stdlib corpus's validation split), write routing.json + PNGs."""
    from clsa.eval.checkpoint import load_checkpoint, load_smollm2
    from clsa.train.corpus import split_train_val, stdlib_corpus

    if model_spec == "smollm2":
        model, tok = load_smollm2(device=device)
    else:
        model, tok = load_checkpoint(model_spec, device=device)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and tokens > limit:
        raise ValueError(f"tokens={tokens} exceeds the model's max_position_embeddings={limit}")
    if docs is None:
        docs = split_train_val(stdlib_corpus(), val_fraction=0.02, seed=0)[1]
    ids = routing_inputs(tok, docs, tokens, batch)
    report = analyze_routing(model, ids, ks, chunk=chunk)
    report["model"] = model_spec
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_routing(report, out)
    return report


__all__ = ["RoutingAccumulator", "analyze_routing", "default_bucket_edges", "plot_routing",
           "routing_inputs", "run_routing_analysis"]
