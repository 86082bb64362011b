"""What every speed benchmark shares: the machine's matmul peak and counted FLOPs.

The FLOPs of a run are counted by ``torch.utils.flop_counter.FlopCounterMode`` around it — the
matmuls and attention the implementation really executed, forward and backward — so a
shared-prefix run is not credited with work it skipped. Dividing by the run's seconds and by
:func:`matmul_peak` (a ``torch.matmul`` loop at the same precision and thread count) says how
far a training step is from what this CPU can do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch


def matmul_peak(bf16: bool, size: int = 1024, seconds: float = 3.0) -> float:
    """FLOP/s of square matmuls in the given precision (best of a few timed bursts)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < 0.3:
            torch.matmul(a, b)
            count += 1
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start))
    return best


class Counted:
    """FLOPs counted inside :func:`count_flops` (filled in when the block ends)."""

    flops: int = 0


@contextmanager
def count_flops() -> Iterator[Counted]:
    from torch.utils.flop_counter import FlopCounterMode

    counted = Counted()
    with FlopCounterMode(display=False) as mode:
        yield counted
    counted.flops = mode.get_total_flops()


T = TypeVar("T")


def measured(
    runs: dict[str, Callable[[], T]], count: dict[str, Callable[[], object]] | None = None
) -> dict[str, tuple[T, int, float]]:
    """Each run in turn: what it returned, the FLOPs it executed and its wall seconds.

    The counter intercepts every tensor operation; its overhead per operation nearly doubled a
    decode-heavy RL step, and more so for the implementation with more, smaller operations. So
    each run is timed on its own and then repeated under the counter (``count[label]`` instead
    when given, e.g. fewer steps); every run is seeded, so the repeat executes the same work.
    """
    results = {}
    for label, run in runs.items():
        start = time.perf_counter()
        value = run()
        seconds = time.perf_counter() - start
        with count_flops() as counted:
            (count or {}).get(label, run)()
        results[label] = (value, counted.flops, seconds)
    return results


def share_of_peak(flops: float, seconds: float, peak: float) -> str:
    achieved = flops / seconds
    return f"{achieved / 1e9:6.1f} GFLOP/s = {achieved / peak:5.1%} of peak"
