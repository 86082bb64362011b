"""Per-stage peak memory: the high-water mark must restart at each reset, not only grow."""

from __future__ import annotations

import gc
import os
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
    assert memory.peak_bytes() >= after_reset


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
