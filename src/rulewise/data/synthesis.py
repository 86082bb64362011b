"""Behaviour-cloning data: teacher trajectories, judged, written resumably as SFT records.

Each record is one conversation in TRL's conversational format — ``messages`` plus a
``tools`` column holding the JSON schemas (dicts, not strings) of the tools the model was
offered — and our metadata (label, kind, category, whether the rules were consulted). A
trajectory whose final answer the judge disagrees with (a refusal for a benign prompt, an
answer for a harmful one, a wrong maths result), or whose retrieved rule points the other way
than the label, is filtered out into ``*.rejected.jsonl``, so
both files together say which prompts are done and a rerun skips them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rulewise.data.prompt_set import TrainingPrompt
from rulewise.errors import RulewiseError
from rulewise.evaluation.judges import RefusalJudge, math_correct
from rulewise.fileio import append_record, load_jsonl_models, read_records
from rulewise.generation.trajectory import Trajectory
from rulewise.rules.tool import verdict_in

OnTrajectory = Callable[[TrainingPrompt, Trajectory], None]


class Teacher(Protocol):
    name: str

    def run(self, prompts: Sequence[TrainingPrompt], on_trajectory: OnTrajectory) -> None:
        """Produce one trajectory per prompt, reporting each as it is finished."""
        ...


def load_prompts(path: str | Path) -> list[TrainingPrompt]:
    """A prompts JSONL (as written by ``rulewise data prompts``); errors name line and field."""
    prompts = load_jsonl_models(TrainingPrompt, path)
    if not prompts:
        raise RulewiseError("no prompts in the file", path=path)
    return prompts


def agrees_with_label(
    prompt: TrainingPrompt, traj: Trajectory, judge: RefusalJudge | None = None
) -> tuple[bool, str]:
    """Whether the trajectory's final behaviour is the one the label asks for, and why not."""
    if not traj.ended_cleanly:
        return False, f"did not finish ({traj.finish_reason})"
    ruled = next((verdict_in(m["content"]) for m in traj.messages if m["role"] == "tool"), None)
    if ruled is not None and ruled != prompt.expected:
        # the answer may match the label, but the reasoning followed the rule to the other side
        return False, f"the retrieved rule says {ruled}, the label {prompt.expected}"
    judgement = (judge or RefusalJudge()).judge(
        prompt.prompt, traj.final_content, harmful=prompt.label == "harmful"
    )
    if prompt.label == "harmful" and not judgement.refused:
        return False, f"harmful prompt not refused ({judgement.verdict})"
    if prompt.label == "benign" and not judgement.complied:
        return False, f"benign prompt not answered ({judgement.verdict})"
    if prompt.answer is not None and not math_correct(traj.final_content, prompt.answer):
        return False, "wrong maths answer"
    return True, ""


@dataclass
class SynthesisReport:
    written: int = 0
    rejected: int = 0
    skipped: int = 0  # already done by an earlier run
    with_tool_call: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def consult_share(self) -> float:
        return self.with_tool_call / self.written if self.written else 0.0


def sft_record(
    prompt: TrainingPrompt, traj: Trajectory, tools: list[dict[str, Any]], teacher: str
) -> dict[str, Any]:
    return {
        "id": prompt.id,
        "messages": traj.messages,
        "tools": tools,
        "label": prompt.label,
        "kind": prompt.kind,
        "category": prompt.category,
        "consulted": traj.consulted,
        "consulted_rules": traj.consulted_rules,
        "teacher": teacher,
        **({"swapped_rule": prompt.swapped_rule} if prompt.swapped_rule else {}),
    }


def counterfactual_prompts(
    prompts: Sequence[TrainingPrompt], consult: Callable[[str], str], share: float, seed: int = 0
) -> list[TrainingPrompt]:
    """Counterfactual copies of about ``share`` of the look-alike prompts: the same request under
    a rulebook whose retrieved rule has its sides swapped, so it is to be refused.

    Why: in ordinary BC data the retrieved clause always agrees with the prompt's label, so a
    student can reach the right answer from the prompt alone and never learn to read the rule;
    then editing a rule changes nothing. With the same request answered under both rulebooks,
    only the clause tells the two apart. Only look-alikes are swapped (allowed → forbidden):
    the copy's answer is a refusal, so no harmful content is ever written as training data.
    """
    from rulewise.data.prompt_set import family_key
    from rulewise.data.scripted_teacher import stable_unit
    from rulewise.rules.tool import rule_ids_in

    copies = []
    for prompt in prompts:
        if prompt.kind != "lookalike" or stable_unit(seed, prompt.id, "counterfactual") >= share:
            continue
        output = consult(family_key(prompt))
        ids = rule_ids_in(output)
        if ids and verdict_in(output) == "comply":
            copies.append(
                prompt.model_copy(
                    update={
                        "id": f"{prompt.id}#swap-{ids[0]}",
                        "label": "harmful",
                        "pair": None,
                        "swapped_rule": ids[0],
                    }
                )
            )
    return copies


def rejected_path(out: Path) -> Path:
    return out.with_name(out.stem + ".rejected.jsonl")


def synthesize(
    prompts: Sequence[TrainingPrompt],
    teacher: Teacher,
    out: str | Path,
    *,
    tools: list[dict[str, Any]],
    on_progress: Callable[[], None] | None = None,
) -> SynthesisReport:
    """Run ``teacher`` on the prompts not yet in ``out`` (or its rejected file) and append the results."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejected = rejected_path(out)
    done = {r["id"] for r in read_records(out)} | {r["id"] for r in read_records(rejected)}
    pending = [p for p in prompts if p.id not in done]
    report = SynthesisReport(skipped=len(prompts) - len(pending))
    judge = RefusalJudge()

    def keep(prompt: TrainingPrompt, traj: Trajectory) -> None:
        ok, reason = agrees_with_label(prompt, traj, judge)
        record = sft_record(prompt, traj, tools, teacher.name)
        if ok:
            append_record(out, record)
            report.written += 1
            report.by_kind[prompt.kind] += 1
            report.with_tool_call += int(record["consulted"])
        else:
            append_record(rejected, {**record, "rejected_because": reason})
            report.rejected += 1
            report.reasons[reason] += 1
        if on_progress is not None:
            on_progress()

    teacher.run(pending, keep)
    return report
