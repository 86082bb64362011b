"""Process-wide runtime choices: CPU threads and numeric precision."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads from the argument, ``RULEWISE_THREADS`` or the core count."""
    n = threads or int(os.environ.get("RULEWISE_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


@cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matmuls (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: Precision, device: torch.device) -> bool:
    """Resolve ``auto``: bf16 on CUDA with bf16 support and on CPUs with native bf16, else fp32."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast(precision: Precision, device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast where :func:`use_bf16` says so, otherwise a no-op."""
    if use_bf16(precision, device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def describe_precision(precision: Precision, device: torch.device) -> str:
    """One line for logs: which precision ``precision`` resolves to here, and why."""
    if device.type != "cpu":
        return f"precision: {'bf16' if use_bf16(precision, device) else 'fp32'} on {device.type}"
    native = (
        "the CPU has native bf16 (AVX512-BF16/AMX)" if cpu_has_fast_bf16() else "the CPU has no native bf16"
    )
    chosen = "bf16 autocast" if use_bf16(precision, device) else "fp32"
    return f"precision: {chosen} ({precision}; {native})"
