"""The two ASCL data-synthesis jobs, as functions the CLI and the recipe runner share.

``bc`` writes ASCL trajectories (the tool offered, the teacher decides whether to call it);
``context-distill`` writes the baseline (rules pasted into the teacher's context, removed from
what is stored). Both resume: prompts already in ``out`` (or its rejected file) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rulewise.data.synthesis import SynthesisReport, counterfactual_prompts, load_prompts, synthesize
from rulewise.errors import RulewiseError
from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT

ProgressHooks = Callable[[int], Callable[[], None]]
"""Called with the number of prompts; returns the per-prompt progress callback."""


def no_progress(_total: int) -> Callable[[], None]:
    return lambda: None


def synthesize_bc(
    prompts: str | Path,
    out: str | Path,
    *,
    teacher: str = "scripted",
    rulebook: str = "default",
    paraphrase: str | None = None,
    counterfactual: float = 0.0,
    consult_plain: float | None = None,
    progress: ProgressHooks = no_progress,
) -> SynthesisReport:
    """Behaviour-cloning trajectories from ``teacher``, judge-filtered, appended to ``out``;
    ``counterfactual`` adds swapped-rule copies of that share of look-alikes
    (:func:`~rulewise.data.synthesis.counterfactual_prompts`, scripted teacher only);
    ``consult_plain`` sets the scripted teacher's share of plain tasks it consults on anyway
    (``ScriptedTeacher.consult_benign``; ``None`` keeps its default)."""
    from transformers.utils import get_json_schema

    from rulewise.data.teachers import ParaphrasingTeacher, build_teacher
    from rulewise.endpoint import ChatClient, parse_endpoint_spec
    from rulewise.rules import load_rulebook, make_consult_tool
    from rulewise.rules.retrieval import build_retriever

    items = load_prompts(prompts)
    book = load_rulebook(rulebook)
    consult = make_consult_tool(build_retriever(book))
    tools = [get_json_schema(consult)]
    chosen = build_teacher(teacher, book, consult=consult)
    if consult_plain is not None:
        if teacher != "scripted":
            raise RulewiseError(
                "consult_plain sets the scripted teacher's choice; another teacher decides for itself",
                field="consult_plain",
            )
        chosen.consult_benign = consult_plain
    if counterfactual > 0:
        if teacher != "scripted":
            raise RulewiseError(
                "counterfactual copies need the scripted teacher (it consults a swapped rulebook per prompt)",
                field="counterfactual",
            )
        items += counterfactual_prompts(items, consult, counterfactual)
    if paraphrase is not None:
        endpoint = parse_endpoint_spec(paraphrase, "openai")
        if endpoint is None:
            raise RulewiseError(f"paraphraser '{paraphrase}' must be openai:MODEL@URL", field="paraphrase")
        chosen = ParaphrasingTeacher(chosen, ChatClient(*endpoint))
    return synthesize(items, chosen, out, tools=tools, on_progress=progress(len(items)))


def synthesize_context_distill(
    prompts: str | Path,
    out: str | Path,
    *,
    teacher: str = "scripted",
    rulebook: str = "default",
    progress: ProgressHooks = no_progress,
) -> SynthesisReport:
    """The context-distillation baseline: generated with every rule in context, stored without."""
    from rulewise.data.teachers import ContextDistillTeacher, build_teacher, rules_context
    from rulewise.rules import load_rulebook

    items = load_prompts(prompts)
    book = load_rulebook(rulebook)
    system = f"{PLAIN_SYSTEM_PROMPT}\n\n# Safety rules\n\n{rules_context(book)}"
    inner = build_teacher(teacher, book, use_tools=False, system_prompt=system)
    return synthesize(
        items, ContextDistillTeacher(inner, book), out, tools=[], on_progress=progress(len(items))
    )
