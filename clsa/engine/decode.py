"""Static-shape decoding: eager (chunked, early-exit) prefill, then a CUDA-graph decode step.

    dec = Decoder(model, batch_size=4, max_length=131072 + 256)     # one bucket: B and capacity
    first = dec.prefill(input_ids, attention_mask)                  # logits [B, V] of the last token
    logits = dec.step(next_tokens)                                  # [B] -> [B, V]; graph replay
    ids = dec.generate(input_ids, max_new_tokens=64, attention_mask=mask)   # greedy

The cache is allocated once (``max_length`` slots); every write is indexed by device tensors,
so one captured graph serves every step of the bucket. Kernels scan the LIVE length (q_pos), not
the allocated one: the Triton kernels skip slot blocks past q_pos, so a graph captured for 1M
slots costs what the context costs. On CPU (or ``cuda_graph=False``) the same step runs eagerly.
"""

from __future__ import annotations

import torch


class Decoder:
    def __init__(self, model, batch_size: int, max_length: int, cuda_graph: bool | None = None):
        self.model = model.eval()
        self.batch_size, self.max_length = batch_size, max_length
        self.cache = model.new_cache(batch_size, max_length)
        dev = model.device
        self.use_graph = (dev.type == "cuda") if cuda_graph is None else cuda_graph
        if self.use_graph and dev.type != "cuda":
            raise ValueError("cuda_graph=True needs the model on a CUDA device")
        self._tok = torch.zeros(batch_size, 1, dtype=torch.long, device=dev)
        self._arange = torch.arange(1, device=dev)
        self._graph, self._logits = None, None

    @torch.no_grad()
    def prefill(self, input_ids, attention_mask=None):
        """Fill the cache with the prompts (left-padded batch); logits [B, V] of the last token."""
        if self.cache.seen:
            raise ValueError("prefill on a used Decoder: make a new Decoder (or call reset())")
        out = self.model(input_ids, attention_mask=attention_mask, cache=self.cache, logits_to_keep=1)
        return out.logits[:, -1]

    def reset(self) -> None:
        """Reuse the buffers (and the captured graph) for a new batch of the same bucket."""
        c = self.cache
        c.seen = 0
        c.pos.zero_()
        c.kv_start.zero_()
        for layer in c.layers:
            if hasattr(layer, "pos"):
                layer.pos.fill_(-1)

    @torch.no_grad()
    def _body(self):
        """One decode step from self._tok, written only with device-side indexing."""
        c = self.cache
        q_pos = (c.pos + self._arange).expand(self.batch_size, 1)
        positions = q_pos - c.kv_start[:, None]
        h = self.model.model(self._tok, positions, q_pos, c.kv_start, c, keep=1)
        return self.model.lm_head(h)[:, -1].float()

    def _capture(self):
        c = self.cache
        seen, pos = c.seen, c.pos.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: compiles kernels, sizes the pool
            for _ in range(2):
                self._body()
                c.seen = seen
                c.pos.copy_(pos)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._logits = self._body()
        c.seen = seen
        c.pos.copy_(pos)

    @torch.no_grad()
    def step(self, tokens):
        """Append one token per row ([B] or [B, 1]); logits [B, V] for the next one."""
        if not self.cache.seen:
            raise ValueError("step before prefill: call prefill(input_ids) first")
        self.cache.check_room(1)
        self._tok.copy_(tokens.view(self.batch_size, 1))
        if not self.use_graph:
            return self._body()
        if self._graph is None:
            self._capture()
        self._graph.replay()  # the graph itself advances cache.pos
        self.cache.seen += 1
        return self._logits

    @torch.no_grad()
    def generate(self, input_ids, max_new_tokens: int, attention_mask=None):
        """Greedy decoding: [B, T] -> [B, T + max_new_tokens]."""
        nxt = self.prefill(input_ids, attention_mask).argmax(-1)
        out = [input_ids, nxt[:, None]]
        for _ in range(max_new_tokens - 1):
            nxt = self.step(nxt).argmax(-1)
            out.append(nxt[:, None])
        return torch.cat(out, 1)
