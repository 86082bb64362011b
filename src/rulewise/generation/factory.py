"""Wiring a loaded model, a rulebook and the loop together (what ``chat`` and ``eval`` share)."""

from __future__ import annotations

from pathlib import Path

from rulewise.generation.backends import HFBackend, SamplingConfig
from rulewise.generation.engine import LoopConfig, ToolUseGenerator
from rulewise.models.loading import LoadedModel
from rulewise.rules.loading import load_rulebook
from rulewise.rules.retrieval import RetrieverKind, build_retriever
from rulewise.rules.tool import make_consult_tool
from rulewise.runtime import Precision


def build_generator(
    loaded: LoadedModel,
    *,
    use_tools: bool = True,
    rulebook: str | Path | None = None,
    retriever: RetrieverKind = "bm25",
    top_k: int = 2,
    sampling: SamplingConfig | None = None,
    precision: Precision = "auto",
    loop: LoopConfig | None = None,
    system_prompt: str | None = None,
) -> ToolUseGenerator:
    """A :class:`ToolUseGenerator` on the HF backend, offering ``consult_safety_rules`` if ``use_tools``."""
    tools = []
    if use_tools:
        tools.append(make_consult_tool(build_retriever(load_rulebook(rulebook), retriever), k=top_k))
    backend = HFBackend(loaded.model, loaded.tokenizer, sampling=sampling, precision=precision)
    return ToolUseGenerator(backend, loaded.tokenizer, tools=tools, config=loop, system_prompt=system_prompt)
