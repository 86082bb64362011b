"""SaRO's two data jobs, as functions the CLI and the recipe runner share: reasoning-style
warm-up data (``rw``) and SRPO preference pairs (``srpo``). They live here, above ``data``,
because they use both the data layer's teachers and SaRO's chains and pairs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rulewise.data.jobs import ProgressHooks, no_progress
from rulewise.data.prompt_set import spread_over_kinds
from rulewise.data.synthesis import SynthesisReport, load_prompts, synthesize
from rulewise.errors import RulewiseError
from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT


def synthesize_rw(
    prompts: str | Path,
    out: str | Path,
    *,
    teacher: str = "scripted",
    rulebook: str = "default",
    shortest_of: int = 1,
    progress: ProgressHooks = no_progress,
) -> SynthesisReport:
    """SaRO reasoning-style warm-up data: long policy-grounded chains (see ``rulewise.saro.rw``).

    ``shortest_of`` > 1 draws that many chains per prompt and keeps the shortest accepted one.
    """
    from rulewise.data.scripted_teacher import ScriptedTeacher
    from rulewise.data.teachers import ContextDistillTeacher, build_teacher, rules_context
    from rulewise.rules import load_rulebook, make_consult_tool
    from rulewise.rules.retrieval import build_retriever
    from rulewise.saro.rw import RW_TEACHER_PROMPT, VARIANTS, ScriptedRWTeacher, ShortestAccepted

    if shortest_of < 1:
        raise RulewiseError("shortest_of must be at least 1", field="shortest_of")
    items = load_prompts(prompts)
    book = load_rulebook(rulebook)
    if teacher == "scripted":
        base = ScriptedTeacher(book, make_consult_tool(build_retriever(book)))
        # The scripted draws are its verbosity variants, longest first: one draw = the full chain.
        draws = [ScriptedRWTeacher(base, variant=v) for v in range(min(shortest_of, VARIANTS))]
    else:
        inner = build_teacher(
            teacher, book, use_tools=False, system_prompt=RW_TEACHER_PROMPT + rules_context(book)
        )
        draws = [ContextDistillTeacher(inner, book) for _ in range(shortest_of)]
    draws_path = Path(out).with_name(Path(out).stem + ".draws.jsonl")  # each draw kept as it is made
    chosen = (
        draws[0]
        if len(draws) == 1
        else ShortestAccepted(draws, name=f"shortest-of-{shortest_of}:{teacher}", draws_path=draws_path)
    )
    return synthesize(items, chosen, out, tools=[], on_progress=progress(len(items)))


class SRPOPairsSettings(BaseModel):
    """How SRPO pairs are sampled: the one place for these settings (``rulewise data srpo``'s
    flags and a recipe's ``srpo`` stage both read it)."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(default=4, ge=2, description="chains sampled per prompt")
    branches: int = Field(
        default=2, ge=1, description="continuations sampled from a wrong chain's shared prefix"
    )
    splitter: Literal["paragraphs", "numbered", "sentences"] = Field(
        default="paragraphs", description="how a chain is cut into steps"
    )
    temperature: float = Field(default=0.8, gt=0, description="sampling temperature")
    max_new_tokens: int = Field(default=256, ge=8, description="token limit per sampled chain")
    prompts_per_batch: int = Field(default=4, ge=1, description="prompts sampled together")
    limit: int | None = Field(
        default=None, ge=1, description="use N prompts, taken in turn from each kind (seeded)"
    )
    anchors: bool = Field(
        default=False,
        description="also pair a benign request the model always gets right: its answer over an "
        "over-cautious refusal (anchor pairs; they swing DPO from refusing everything to answering "
        "everything at the full budget, see rulewise.saro.pairs)",
    )
    rulebook: str = Field(
        default="default", description="the rulebook the teacher's reflections cite (YAML/JSON path)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto", description="sampling precision")


def synthesize_srpo_pairs(
    model: str,
    prompts: str | Path,
    out: str | Path,
    settings: SRPOPairsSettings | None = None,
    *,
    progress: ProgressHooks = no_progress,
):
    """SRPO preference pairs from ``model``'s own chains (see ``rulewise.saro.pairs``); resumable."""
    from rulewise.data.scripted_teacher import ScriptedTeacher
    from rulewise.generation.backends import HFBackend, SamplingConfig
    from rulewise.models import load_model
    from rulewise.rules import load_rulebook, make_consult_tool
    from rulewise.rules.retrieval import build_retriever
    from rulewise.saro.pairs import build_pairs

    settings = settings or SRPOPairsSettings()
    items = load_prompts(prompts)
    if settings.limit is not None:
        items = spread_over_kinds(items, settings.limit)
    book = load_rulebook(settings.rulebook)
    teacher = ScriptedTeacher(book, make_consult_tool(build_retriever(book)))
    import torch

    loaded = load_model(model)
    backend = HFBackend(
        loaded.model,
        loaded.tokenizer,
        sampling=SamplingConfig(temperature=settings.temperature),
        precision=settings.precision,
    )
    system = {"role": "system", "content": PLAIN_SYSTEM_PROMPT}

    def render(prompt) -> str:
        return loaded.tokenizer.apply_chat_template(
            [system, {"role": "user", "content": prompt.prompt}], add_generation_prompt=True, tokenize=False
        )

    def sample(texts: list[str]) -> list[str]:
        # seeded by what is asked, not by what came before: a resumed run draws what an
        # uninterrupted one drew for the same chunk
        torch.manual_seed(int(hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12], 16))
        return [c.text for c in backend.complete(texts, settings.max_new_tokens, stop_at_tool_call=False)]

    return build_pairs(
        items,
        render=render,
        sample=sample,
        teacher=teacher,
        out=out,
        samples=settings.samples,
        branches=settings.branches,
        splitter=settings.splitter,
        prompts_per_batch=settings.prompts_per_batch,
        anchors=settings.anchors,
        on_progress=progress(len(items)),
    )
