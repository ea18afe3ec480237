"""Process-group setup, model wrapping (DDP / FSDP2) and full (unsharded) state dicts.

Under ``torchrun`` the environment holds RANK, WORLD_SIZE and LOCAL_RANK; ``setup`` then joins
the process group (nccl on cuda, gloo on cpu). Without them it is a single process and every
helper below is a no-op or a plain local call.

    torchrun --standalone --nproc_per_node=2 -m clsa.cli train --preset debug --device cpu
    torchrun --standalone --nproc_per_node=8 -m clsa.cli train --preset small --parallel fsdp2

Wrapping
    ddp    DistributedDataParallel over the backbone and LM head. Indexer parameters are left out
           of DDP and averaged with one all_reduce after backward (``sync_grads``): their loss is
           computed outside the model's forward (distill, sparse KL), which DDP cannot see.
    fsdp2  ``fully_shard`` on every indexer projection, every Block / CrossBlock, then the root.
           Pretrain stage only: the indexer stages call submodules outside the root forward,
           where FSDP2 parameters stay sharded.

Checkpoints hold FULL state dicts gathered to rank 0 (``get_model_state_dict`` /
``get_optimizer_state_dict`` with full_state_dict=True, cpu_offload=True), so a checkpoint
written under any world size and wrapping resumes under any other, or in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_model_state_dict,
                                                     set_optimizer_state_dict)

_GET = StateDictOptions(full_state_dict=True, cpu_offload=True)
# strict=False for the optimizer only: parameters that never received a gradient (a sparse
# variant's indexer during pretrain) have no AdamW state to restore.
_SET_MODEL = StateDictOptions(full_state_dict=True)
_SET_OPTIM = StateDictOptions(full_state_dict=True, strict=False)


@dataclass
class DistEnv:
    """Where this process sits: rank / world size, its device, and whether we own the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (fp64, so logged means are exact)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def sync_grads(self, params) -> None:
        """Average the gradients of ``params`` over ranks in one flat all_reduce."""
        if not self.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    @property
    def _comm_device(self):
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device: str = "auto") -> DistEnv:
    """Read the torchrun environment, pick the device and join the process group if needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainArgs.device='cuda' but torch sees no CUDA GPU; pass --device cpu "
                         "(or auto) or install a CUDA build of torch")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    return DistEnv(rank, world, local, dev, owns)


def is_indexer_param(name: str) -> bool:
    """Whether a parameter (state-dict key) belongs to an indexer (clsa's or a cross layer's)."""
    return name.startswith("indexer.") or ".indexer." in name


def wrap(model, env: DistEnv, parallel: str, stage: str):
    """The module the training forward runs through (``model`` itself when single-process)."""
    if not env.distributed:
        return model
    if parallel == "fsdp2":
        if stage != "pretrain":
            raise ValueError(f"--parallel fsdp2 supports the pretrain stage only, not {stage!r}: "
                             "the indexer stages run submodules outside the sharded forward. "
                             "Use --parallel ddp (the indexers are small; sharding saves nothing)")
        from torch.distributed.fsdp import fully_shard

        from clsa.model.attention import Block
        from clsa.model.indexer import Indexer

        for module in list(model.modules()):
            if isinstance(module, Indexer):
                # The backbone computes indexer keys in the root forward, outside the CrossBlock
                # owning a yoco-dsa/indexcache indexer: each projection is sharded on its own, so
                # it gathers its weights whenever it runs.
                for child in module.children():
                    fully_shard(child)
        for module in model.modules():
            if isinstance(module, Block):  # CrossBlock is a Block
                fully_shard(module)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ignored = [n for n, _ in model.named_parameters() if is_indexer_param(n)]
    if not any(p.requires_grad for n, p in model.named_parameters() if n not in set(ignored)):
        return model  # distill: only indexers train, synced by sync_grads
    DDP._set_params_and_buffers_to_ignore_for_model(model, ignored)
    return DDP(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)


def full_model_state(model) -> dict:
    """Full model state dict on CPU; complete on rank 0 (other ranks may get an empty dict).

    A collective under FSDP2: every rank must call it. Tied weights appear once (lm_head.weight
    is dropped when the config ties it; ``load_model_state`` restores it).
    """
    sd = get_model_state_dict(model, options=_GET)
    if getattr(model.config, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)
    return sd


def full_optim_state(model, optimizer) -> dict:
    """Full optimizer state keyed by parameter name; complete on rank 0. A collective."""
    return get_optimizer_state_dict(model, optimizer, options=_GET)


def load_model_state(model, state: dict) -> None:
    """Load a full state dict into a plain, DDP-owned or FSDP2-sharded model (every rank)."""
    state = dict(state)
    if getattr(model.config, "tie_word_embeddings", False) and "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    set_model_state_dict(model, state, options=_SET_MODEL)


def load_optim_state(model, optimizer, state: dict) -> None:
    set_optimizer_state_dict(model, optimizer, state, options=_SET_OPTIM)
