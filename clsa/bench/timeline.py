"""Critical-path attribution of a kernel timeline (``benchmarks/profile_graph.py``).

With programmatic dependent launch a kernel starts before the one ahead of it ends, so kernel
durations overlap and do not add up to the step; this charges each stretch of the timeline to the
kernel that ends it instead."""

from __future__ import annotations


def critical_path(kernels: list[tuple[str, float, float]]) -> tuple[list[float], float]:
    """Charges of kernels [(name, start, end)] sorted by start: each owns the stretch from the
    later of its start and the latest end so far to its end (0 if it ends earlier); returns the
    charges and the idle time (stretches no kernel covers)."""
    charges, idle, cursor = [], 0.0, None
    for _, start, end in kernels:
        if cursor is None:
            cursor = start
        if start > cursor:
            idle += start - cursor
            cursor = start
        charges.append(max(0.0, end - cursor))
        cursor = max(cursor, end)
    return charges, idle
