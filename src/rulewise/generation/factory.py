"""Wiring a loaded model, a rulebook and the loop together (what ``chat`` and ``eval`` share)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from rulewise.generation.backends import CompletionBackend, HFBackend, SamplingConfig
from rulewise.generation.engine import LoopConfig, ToolUseGenerator
from rulewise.models.loading import LoadedModel
from rulewise.rules.loading import load_rulebook
from rulewise.rules.retrieval import RetrieverKind, RuleRetriever, build_retriever
from rulewise.rules.tool import RULES_PER_CALL, make_consult_tool
from rulewise.runtime import Precision, use_bf16

BackendKind = Literal["hf", "vllm"]


def build_generator(
    loaded: LoadedModel,
    *,
    use_tools: bool = True,
    rulebook: str | Path | None = None,
    retriever: RetrieverKind = "bm25",
    top_k: int = RULES_PER_CALL,
    sampling: SamplingConfig | None = None,
    precision: Precision = "auto",
    loop: LoopConfig | None = None,
    system_prompt: str | None = None,
    backend: BackendKind = "hf",
    rules: RuleRetriever | None = None,
) -> ToolUseGenerator:
    """A :class:`ToolUseGenerator` offering ``consult_safety_rules`` if ``use_tools``.

    Where ``precision`` resolves to bf16, the model's weights are cast to bf16 in place (the
    model is then for generation only).

    ``backend="vllm"`` continues the same rendered prompts with vLLM (GPU) from ``loaded.source``;
    ``loaded`` then only needs its tokenizer (see :func:`load_for_backend`). ``rules`` replaces
    the retriever built from ``rulebook`` (a server's live, reloadable rulebook).
    """
    tools = []
    if use_tools:
        rules = rules or build_retriever(load_rulebook(rulebook), retriever)
        tools.append(make_consult_tool(rules, k=top_k))
    if backend == "vllm":
        from rulewise.generation.vllm_backend import VLLMBackend

        completions: CompletionBackend = VLLMBackend(loaded.source, sampling=sampling)
    else:
        if use_bf16(precision, loaded.model.device) and loaded.model.dtype == torch.float32:
            # Generation reads every weight once per token: bf16 weights halve that, and autocast
            # would cast them again at every step.
            loaded.model.to(torch.bfloat16)
        completions = HFBackend(loaded.model, loaded.tokenizer, sampling=sampling, precision=precision)
    return ToolUseGenerator(
        completions, loaded.tokenizer, tools=tools, config=loop, system_prompt=system_prompt
    )


def load_for_backend(spec: str, backend: BackendKind) -> LoadedModel:
    """The model for ``backend``: loaded in torch for ``hf``; only the tokenizer for ``vllm``."""
    from rulewise.models.loading import load_model, load_tokenizer, resolve_model_spec

    if backend == "vllm":
        return LoadedModel(model=None, tokenizer=load_tokenizer(spec), source=str(resolve_model_spec(spec)))
    return load_model(spec)
