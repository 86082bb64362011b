"""Peak resident memory of one piece of work (a pipeline stage), not of the whole process.

Why not ``resource.getrusage``: its ``ru_maxrss`` only ever grows, so after the first big stage
every later stage would report the same figure. Linux lets a process reset its own high-water
mark (``VmHWM``) by writing ``5`` to ``/proc/self/clear_refs``; we do that before a stage and read
``VmHWM`` after it. Stages launched as child processes (``accelerate launch``) are covered by the
children's ``ru_maxrss`` — but only when it grew during the stage: it is the largest child of
the whole process lifetime, and a forked helper (a ``datasets`` worker) reports its parent's
pages as its own, which would pin every later stage to that figure. Elsewhere ``VmHWM`` falls
back to ``ru_maxrss``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class PeakMeter:
    """The peak resident memory of the work done between creating the meter and :meth:`peak_bytes`."""

    def __init__(self) -> None:
        reset_peak()
        self._children_before = _maxrss_bytes(resource.RUSAGE_CHILDREN)

    def peak_bytes(self) -> int:
        children = _maxrss_bytes(resource.RUSAGE_CHILDREN)
        return max(own_peak_bytes(), children if children > self._children_before else 0)


def reset_peak() -> None:
    """Start a new high-water mark for this process (a no-op where the OS cannot)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def _maxrss_bytes(who: int) -> int:
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # Linux reports KiB


def own_peak_bytes() -> int:
    """This process's largest resident size since :func:`reset_peak`."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _maxrss_bytes(resource.RUSAGE_SELF)


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS.

    Why: trainers hold reference cycles, and glibc keeps freed memory in its arenas, so without
    this each stage of a pipeline starts from the previous stage's high-water mark.
    """
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass


def gib(n_bytes: int) -> float:
    return round(n_bytes / 2**30, 2)
