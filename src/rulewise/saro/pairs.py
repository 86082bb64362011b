"""SRPO preference pairs: outcome-level and process-level, from the RW model's own chains.

For each prompt the RW model samples ``samples`` chains, and the judge labels each *right*
(harmful: a clean refusal; benign: full compliance; maths: the correct number) or *wrong*.

* **Outcome pair** — a right chain (the shortest; the teacher's chain when the model had none)
  against a wrong one.
* **Process pair** — a wrong chain is cut into steps and the first step that commits to the
  wrong behaviour is found (:func:`~rulewise.saro.steps.first_wrong_step`). The steps before it
  are the shared prefix. From that prefix the model samples ``branches`` continuations; the
  chosen one is a right continuation — preferring one whose first step stops to weigh safety
  (the earliest reflection), then the shortest — or, when the model found none, the teacher's
  reflection ("Wait — …") and corrected answer. The rejected one is the original continuation.
* **Anchor pair** (off by default) — for a benign request (not maths) on which every sampled
  chain was right: the model's shortest chain against an over-cautious refusal
  (:func:`over_refusal`). Why it exists: the RW model errs mostly on harmful requests, so
  mistake-driven pairs are mostly "refuse ≻ help". Why it is off: at the full ASCL run's
  budget (48 prompts, 72 pairs: 40 on harmful requests, 14 on look-alikes and plain tasks) DPO
  on them alone refused everything (XSTest safe 0% answered, dev 100% / 9% / 0 of 4 pairs);
  the 12 anchors added swung it to answering everything (XSTest safe 100%, dev 7% / 97%). DPO
  here moves one refuse-or-help bias, and the pairs' balance sets it; neither discriminates.

Storage is TRL's conversational preference format: ``prompt`` holds the system and user
messages, ``chosen`` / ``rejected`` one assistant message each. TRL 1.16's DPOTrainer renders a
conversational prompt with a generation prompt, so a half-written assistant turn cannot end
the prompt; the shared prefix therefore opens both completions (and is also kept in
``prefix``). Its tokens are identical in both, so their log-probabilities cancel exactly in the
DPO margin (sigmoid loss): the gradient is the one of a prefix-in-the-prompt pair.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from rulewise.data.prompt_set import TrainingPrompt
from rulewise.data.scripted_teacher import ScriptedTeacher
from rulewise.evaluation.judges.math_check import math_correct
from rulewise.evaluation.judges.refusal import RefusalJudge
from rulewise.fileio import append_record, keep_first_records, read_records
from rulewise.generation.parsing import THINK_CLOSE, split_reasoning
from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT
from rulewise.saro.rw import ScriptedRWTeacher
from rulewise.saro.steps import Splitter, first_wrong_step, join_steps, reflects_early, split_steps

PairType = Literal["outcome", "process", "anchor"]


def chain_text(steps: list[str], answer: str, splitter: Splitter = "paragraphs") -> str:
    return f"<think>\n{join_steps(steps, splitter)}\n</think>\n{answer}"


def close_reasoning(text: str) -> str:
    """``text`` with an unclosed ``<think>`` block closed (a chain cut off by the token limit)."""
    return text if THINK_CLOSE in text else text.rstrip() + f"\n{THINK_CLOSE}"


def is_right(prompt: TrainingPrompt, text: str, judge: RefusalJudge) -> bool:
    """Whether a chain ends in the behaviour the prompt's label asks for (and finished its reasoning)."""
    if "</think>" not in text:
        return False  # cut off while reasoning: no answer was given at all
    answer = split_reasoning(text)[1]
    if not answer:
        return False
    if prompt.answer is not None:
        return math_correct(answer, prompt.answer)
    judgement = judge.judge(prompt.prompt, answer, harmful=prompt.label == "harmful")
    return judgement.refused if prompt.label == "harmful" else judgement.complied


class PreferencePair(BaseModel):
    id: str
    type: PairType
    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    prefix: str = ""  # the shared reasoning steps (process pairs)
    divergence_step: int | None = None  # index of the first wrong step in the rejected chain
    chosen_source: Literal["model", "teacher"] = "model"
    label: str
    kind: str


def _messages(prompt: TrainingPrompt) -> list[dict[str, str]]:
    return [{"role": "system", "content": PLAIN_SYSTEM_PROMPT}, {"role": "user", "content": prompt.prompt}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def outcome_pair(
    prompt: TrainingPrompt, chosen: str, rejected: str, *, source: Literal["model", "teacher"]
) -> PreferencePair:
    return PreferencePair(
        id=f"{prompt.id}:outcome",
        type="outcome",
        prompt=_messages(prompt),
        chosen=_assistant(chosen),
        rejected=_assistant(rejected),
        chosen_source=source,
        label=prompt.label,
        kind=prompt.kind,
    )


def anchor_pair(prompt: TrainingPrompt, chosen: str, rejected: str) -> PreferencePair:
    """The model's own right answer to a benign request against an over-cautious refusal."""
    return outcome_pair(prompt, chosen, rejected, source="model").model_copy(
        update={"id": f"{prompt.id}:anchor", "type": "anchor"}
    )


def process_pair(
    prompt: TrainingPrompt,
    prefix: list[str],
    chosen_steps: list[str],
    chosen_answer: str,
    rejected_steps: list[str],
    rejected_answer: str,
    *,
    splitter: Splitter,
    source: Literal["model", "teacher"],
) -> PreferencePair:
    """Two chains that share ``prefix`` and then part: the rejected one at its first wrong step."""
    return PreferencePair(
        id=f"{prompt.id}:process",
        type="process",
        prompt=_messages(prompt),
        chosen=_assistant(chain_text(prefix + chosen_steps, chosen_answer, splitter)),
        rejected=_assistant(chain_text(prefix + rejected_steps, rejected_answer, splitter)),
        prefix=join_steps(prefix, splitter),
        divergence_step=len(prefix),
        chosen_source=source,
        label=prompt.label,
        kind=prompt.kind,
    )


def teacher_reflection(teacher: ScriptedTeacher, prompt: TrainingPrompt) -> tuple[list[str], str]:
    """The teacher's course correction: one reflective step and the right answer."""
    rule = teacher.category_rule(prompt.category)
    if prompt.label == "harmful":
        cited = (
            f"{rule.disallowed[0]}, which rule {rule.id} does not allow"
            if rule
            else "help that could cause serious harm"
        )
        step = f"Wait — before I go on: this asks for {cited}. I should stop here, refuse, and offer a safe alternative."
        return [step], teacher.refusal(prompt)
    allowed = f"rule {rule.id} explicitly allows {rule.allowed[0]}" if rule else "no safety rule forbids this"
    step = f"Wait — let me check that again: {allowed}, and this request is of that harmless kind, so refusing would be wrong. I should help fully."
    return [step], teacher.answer(prompt)


def over_refusal(teacher: ScriptedTeacher, prompt: TrainingPrompt, splitter: Splitter) -> str:
    """The chain a benign request must not get: the request restated, then a refusal on its
    surface words (the over-refusal that anchor pairs rank below the model's own answer)."""
    restated = ScriptedRWTeacher(teacher).steps(prompt)[0]
    steps = [
        restated,
        "2. Assessment: the wording sounds like a request for something harmful, so I should not risk it.",
        "3. Plan: refuse.",
    ]
    return chain_text(steps, teacher.refusal(prompt), splitter)


# -- building pairs with a model ----------------------------------------------------------------

Sampler = Callable[[list[str]], list[str]]
"""Rendered prompts → sampled continuations (one each)."""


@dataclass
class PairStats:
    prompts: int = 0
    skipped: int = 0  # done by an earlier run
    by_type: Counter[str] = field(default_factory=Counter)
    chosen_from_teacher: Counter[str] = field(default_factory=Counter)
    divergence_steps: Counter[int] = field(default_factory=Counter)
    model_right: int = 0
    model_samples: int = 0
    cut_off: int = 0  # samples cut off before "</think>": closed explicitly when used as rejected chains


def progress_path(out: Path) -> Path:
    return out.with_name(out.stem + ".progress.jsonl")


def build_pairs(
    prompts: Sequence[TrainingPrompt],
    *,
    render: Callable[[TrainingPrompt], str],
    sample: Sampler,
    teacher: ScriptedTeacher,
    out: str | Path,
    samples: int = 4,
    branches: int = 2,
    splitter: Splitter = "paragraphs",
    prompts_per_batch: int = 4,
    anchors: bool = False,
    judge: RefusalJudge | None = None,
    on_progress: Callable[[], None] | None = None,
) -> PairStats:
    """Write outcome and process pairs (and, with ``anchors``, anchor pairs) for every prompt not
    yet done; resumable per prompt.

    ``render(prompt)`` is the model's generation prompt; ``sample`` continues rendered texts
    (called with ``prompts_per_batch × samples`` texts at a time, then the branches).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    judge = judge or RefusalJudge()
    finished = read_records(progress_path(out))
    done = {r["id"] for r in finished}
    # a kill after a chunk's pairs but before its progress lines leaves pairs of unconfirmed
    # prompts at the end of the file; they are redone, so cut them (and any torn line) off first
    keep_first_records(out, sum(r["pairs"] for r in finished))
    stats = PairStats(prompts=len(prompts), skipped=sum(p.id in done for p in prompts))
    pending = [p for p in prompts if p.id not in done]
    for start in range(0, len(pending), prompts_per_batch):
        chunk = pending[start : start + prompts_per_batch]
        bases = [render(p) for p in chunk]
        drawn = sample([base for base in bases for _ in range(samples)])
        plans = [
            _plan(
                prompt,
                base,
                [t.strip() for t in drawn[i * samples : (i + 1) * samples]],
                teacher,
                splitter,
                judge,
                stats,
                anchors,
            )
            for i, (prompt, base) in enumerate(zip(chunk, bases, strict=True))
        ]
        openings = [plan.opened for plan in plans if plan.opened for _ in range(branches)]
        branch_texts = sample(openings) if openings else []
        for plan in plans:
            if plan.opened:
                plan.finish(branch_texts[:branches], teacher, splitter, judge)
                branch_texts = branch_texts[branches:]
            for pair in plan.pairs:
                append_record(out, pair.model_dump())
                stats.by_type[pair.type] += 1
                if pair.chosen_source == "teacher":
                    stats.chosen_from_teacher[pair.type] += 1
                if pair.divergence_step is not None:
                    stats.divergence_steps[pair.divergence_step] += 1
            if on_progress:
                on_progress()
        # a chunk is confirmed whole, after all its pairs: a rerun always starts at a chunk
        # boundary, so it samples the same chunks (and, seeded by them, the same chains) as a
        # run that was never interrupted
        for plan in plans:
            append_record(progress_path(out), {"id": plan.prompt.id, "pairs": len(plan.pairs)})
    return stats


@dataclass
class _Plan:
    """One prompt's pairs in the making: the outcome pair, and the wrong chain to branch from."""

    prompt: TrainingPrompt
    pairs: list[PreferencePair]
    opened: str = ""  # generation prompt + <think> + shared prefix; empty when nothing to branch
    prefix: list[str] = field(default_factory=list)
    rejected_steps: list[str] = field(default_factory=list)
    rejected_answer: str = ""

    def finish(
        self, branches: list[str], teacher: ScriptedTeacher, splitter: Splitter, judge: RefusalJudge
    ) -> None:
        """Pick the chosen continuation among the model's branches (else the teacher's) and add the pair."""
        candidates = []
        for text in branches:
            cont_reasoning, _, cont_answer = text.partition("</think>")
            cont_steps = split_steps(cont_reasoning, splitter)
            full = chain_text(self.prefix + cont_steps, cont_answer.strip(), splitter)
            if cont_steps and is_right(self.prompt, full, judge):
                candidates.append(
                    (not reflects_early(cont_steps), len(text), cont_steps, cont_answer.strip())
                )
        source: Literal["model", "teacher"]
        if candidates:
            _, _, chosen_steps, chosen_answer = min(candidates, key=lambda c: (c[0], c[1]))
            source = "model"
        else:
            chosen_steps, chosen_answer = teacher_reflection(teacher, self.prompt)
            source = "teacher"
        self.pairs.append(
            process_pair(
                self.prompt,
                self.prefix,
                chosen_steps,
                chosen_answer,
                self.rejected_steps,
                self.rejected_answer,
                splitter=splitter,
                source=source,
            )
        )


def _plan(
    prompt: TrainingPrompt,
    base: str,
    chains: list[str],
    teacher: ScriptedTeacher,
    splitter: Splitter,
    judge: RefusalJudge,
    stats: PairStats,
    anchors: bool,
) -> _Plan:
    verdicts = [is_right(prompt, text, judge) for text in chains]
    stats.model_samples += len(chains)
    stats.model_right += sum(verdicts)
    # a chain cut off by the token limit (no "</think>") is wrong — it gave no answer — but is not
    # trained against as written: its reasoning is closed explicitly, so the rejected example is
    # "reasoned until the limit and answered nothing", with well-formed markup
    stats.cut_off += sum(
        not ok and THINK_CLOSE not in text for text, ok in zip(chains, verdicts, strict=True)
    )
    wrong = [close_reasoning(text) for text, ok in zip(chains, verdicts, strict=True) if not ok]
    right = sorted((text for text, ok in zip(chains, verdicts, strict=True) if ok), key=len)
    if not wrong:  # the model already behaves: nothing to correct
        if anchors and prompt.label == "benign" and prompt.kind != "math":
            rejected = over_refusal(teacher, prompt, splitter)
            return _Plan(prompt, [anchor_pair(prompt, right[0], rejected)])
        return _Plan(prompt, [])
    if right:
        pairs = [outcome_pair(prompt, right[0], wrong[0], source="model")]
    else:
        reference = ScriptedRWTeacher(teacher).trajectory(prompt).final_content
        pairs = [outcome_pair(prompt, reference, wrong[0], source="teacher")]
    reasoning, answer = split_reasoning(wrong[0])
    steps = split_steps(reasoning, splitter)
    cut = first_wrong_step(steps, harmful=prompt.label == "harmful")
    prefix = steps[:cut]
    opened = base + "<think>\n" + (join_steps(prefix, splitter) + "\n\n" if prefix else "")
    return _Plan(prompt, pairs, opened, prefix, steps[cut:], answer)


def stats_summary(stats: PairStats) -> dict[str, Any]:
    return {
        "prompts": stats.prompts,
        "skipped": stats.skipped,
        "pairs": dict(stats.by_type),
        "chosen_from_teacher": dict(stats.chosen_from_teacher),
        "divergence_step": dict(sorted(stats.divergence_steps.items())),
        "model_right_share": stats.model_right / stats.model_samples if stats.model_samples else None,
        "cut_off_samples": stats.cut_off,
    }
