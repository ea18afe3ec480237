"""Learning-rate schedule: linear warm-up from 0, then cosine decay to ``min_lr`` at ``steps``.

The rate is a pure function of the optimizer step, so the schedule's whole state is the step it
last applied; a resumed run with the same settings gets bit-identical rates.

    sched = CosineSchedule(opt, lr=1e-3, min_lr=1e-4, warmup=50, steps=1000)
    lr = sched.apply(step)           # 1-based optimizer step; sets every param group's lr
"""

from __future__ import annotations

import math


def lr_at(step: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """Rate for optimizer step ``step`` (1-based): lr*step/warmup while step <= warmup, then
    min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2 with t = (step - warmup) / (steps - warmup)."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if steps <= warmup:
        return lr
    t = min(1.0, (step - warmup) / (steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t))


class CosineSchedule:
    def __init__(self, optimizer, lr: float, min_lr: float, warmup: int, steps: int):
        self.optimizer = optimizer
        self.lr, self.min_lr, self.warmup, self.steps = lr, min_lr, warmup, steps
        self.last_step = 0

    def apply(self, step: int) -> float:
        rate = lr_at(step, self.lr, self.min_lr, self.warmup, self.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.last_step = step
        return rate

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "lr": self.lr, "min_lr": self.min_lr,
                "warmup": self.warmup, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Only the position is restored: the settings of the current run win (a run may be
        extended with a larger ``steps``; the caller warns when the settings changed)."""
        self.last_step = int(state["last_step"])
