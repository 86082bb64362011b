"""Per-stage peak memory: the high-water mark must restart at each reset, not only grow."""

from __future__ import annotations

import gc
import os
import resource
import sys

import pytest

from rulewise import memory


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc")
def test_peak_restarts_after_reset():
    block = bytearray(300 * 2**20)  # 300 MiB, touched page by page below
    for i in range(0, len(block), 4096):
        block[i] = 1
    with_block = memory.own_peak_bytes()
    del block
    memory.reset_peak()
    after_reset = memory.own_peak_bytes()
    assert with_block - after_reset > 250 * 2**20


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc")
def test_meter_counts_a_child_of_its_own_stage_but_not_an_earlier_one():
    import subprocess

    grow = [sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'1' * len(b[::4096])"]
    subprocess.run(grow, check=True)  # an earlier stage's big child
    meter = memory.PeakMeter()
    before = memory.own_peak_bytes()
    peak = meter.peak_bytes()
    assert (
        before <= peak <= memory.own_peak_bytes()
    )  # the earlier child is not ours (a thread may grow us meanwhile)
    # this stage's child, bigger than any child before and than this process: only it can set the peak
    size = max(memory.own_peak_bytes(), memory._maxrss_bytes(resource.RUSAGE_CHILDREN)) + 300 * 2**20
    grow[2] = grow[2].replace("200 * 2**20", str(size))
    subprocess.run(grow, check=True)
    assert meter.peak_bytes() >= size


def test_gib_rounds_to_hundredths():
    assert memory.gib(3 * 2**30 + 2**29) == 3.5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_free_memory_returns_freed_heap_to_the_os():
    import psutil

    process = psutil.Process()
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MiB of small heap allocations
    pin = bytearray(64 * 1024)  # allocated last: glibc cannot shrink the heap past it on its own
    held = process.memory_info().rss
    del blocks
    gc.collect()
    assert held - process.memory_info().rss < 50 * 2**20  # freed, but still resident
    memory.release_free_memory()
    assert held - process.memory_info().rss > 150 * 2**20
    del pin
