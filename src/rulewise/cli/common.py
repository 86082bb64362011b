"""Shared CLI plumbing: quiet library logging, the console, option types."""

from __future__ import annotations

import os
import warnings
from enum import Enum
from pathlib import Path
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


class RetrieverChoice(str, Enum):
    bm25 = "bm25"
    dense = "dense"


class BackendChoice(str, Enum):
    hf = "hf"
    vllm = "vllm"


REPETITION_PENALTY_HELP = (
    "1.0 = off. Above 1 it penalises every token already in the context, the prompt included, "
    "which can flip a trained model's decision words."
)


class PrecisionChoice(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


def quiet_libraries() -> None:
    """Hide transformers' per-load progress bars and advisory warnings from CLI output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # TRL still passes transformers' old names for these; nothing a user of ours can change.
    for old in ("gradient_checkpointing", "is_gradient_checkpointing"):
        warnings.filterwarnings("ignore", message=f"`{old}` is deprecated", category=FutureWarning)


def job_settings(
    settings_class: type[T], config: Path | None, flags: dict[str, object], overrides: list[str] | None
) -> T:
    """A job's settings: ``--config`` file, then the named flags, then ``--set`` overrides."""
    from rulewise.config import load_config

    sets = [f"{key}={value}" for key, value in flags.items() if value is not None] + list(overrides or [])
    return load_config(settings_class, config, sets)
