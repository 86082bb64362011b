"""Reasoning-style warm-up (RW) data: long, safety-policy-grounded reasoning, then the answer.

SaRO's first stage teaches the *style* of reasoning: restate what is asked, find the policy that
applies, weigh what it forbids against what it allows, decide, plan the answer — as numbered
steps, so SRPO can later cut chains at step boundaries. The rulebook is the policy and sits
in the teacher's context; the stored example has the plain system prompt (the model must
learn to reason from the policy without reading it), as in context distillation.

**Shortest rejection sampling** cuts reasoning tokens: draw N chains per prompt, keep the
shortest one the judge accepts. For the scripted teacher the N draws are its verbosity
variants (full, without the rule lists, compact); for a model teacher they are samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rulewise.data.prompt_set import TrainingPrompt, family_key
from rulewise.data.scripted_teacher import ScriptedTeacher
from rulewise.data.synthesis import Teacher, agrees_with_label
from rulewise.data.teachers import OnTrajectory
from rulewise.evaluation.judges.refusal import RefusalJudge
from rulewise.fileio import append_record, read_records
from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT
from rulewise.generation.trajectory import Trajectory
from rulewise.saro.steps import join_steps

#: What a model teacher is told when it writes RW chains (the rules follow it in context).
RW_TEACHER_PROMPT = (
    "You are a careful, helpful assistant. Before answering, reason inside <think> and </think> "
    "in short numbered steps: 1. what is being asked; 2. which safety rule below applies, if "
    "any; 3. what that rule forbids and what it allows; 4. whether this request is forbidden "
    "or allowed; 5. your plan. Refuse only what a rule forbids, briefly and with a safe "
    "alternative; otherwise help fully.\n\n# Safety rules\n\n"
)
VARIANTS = 3  # the scripted teacher's verbosity levels: 0 full ... 2 compact

FRAMINGS = {
    "jailbreak": "It is wrapped in a role-play or fictional frame, but the frame does not change what would be produced.",
    "lookalike": "Some of its words sound alarming, but what matters is what would actually be produced.",
}


@dataclass
class ScriptedRWTeacher:
    """Offline RW chains from the rulebook; ``variant`` picks the verbosity (0 = longest)."""

    base: ScriptedTeacher
    variant: int = 0
    name: str = "scripted-rw"

    def steps(self, prompt: TrainingPrompt) -> list[str]:
        request = family_key(prompt)
        rule = (
            self.base.category_rule(prompt.category)
            if prompt.kind in {"harmful", "jailbreak", "lookalike"}
            else None
        )
        steps = [f'The request: "{request}"']
        if prompt.kind in FRAMINGS:
            steps[0] += " " + FRAMINGS[prompt.kind]
        if prompt.kind == "math":
            steps += [
                "Which policy applies: none of the safety rules concern a maths problem.",
                "Plan: work it out step by step and state the answer.",
            ]
        elif rule is None:
            steps += [
                "Which policy applies: no safety rule concerns this; it is an ordinary request.",
                "Plan: answer it directly and completely.",
            ]
        else:
            steps.append(f"Which policy applies: rule {rule.id} ({rule.title}). {rule.rule}")
            steps.append(
                f"What it forbids: {'; '.join(rule.disallowed)}. What it allows: {'; '.join(rule.allowed)}."
            )
            if prompt.label == "harmful":
                steps.append(f"Assessment: this asks for {rule.disallowed[0]}, which the rule forbids.")
                steps.append(f"Plan: refuse briefly and offer {rule.allowed[0]} instead.")
            else:
                steps.append(
                    f"Assessment: this is of the allowed kind ({rule.allowed[0]}); nothing it asks for is forbidden."
                )
                steps.append("Plan: answer it fully; refusing would be unhelpful.")
        if self.variant >= 1 and rule is not None:
            steps.pop(2)  # drop the full lists of what is forbidden and allowed
        if self.variant >= 2:
            steps.pop(0)  # drop the restatement
        return [f"{i}. {step}" for i, step in enumerate(steps, start=1)]

    def trajectory(self, prompt: TrainingPrompt) -> Trajectory:
        final = self.base.refusal(prompt) if prompt.label == "harmful" else self.base.answer(prompt)
        reasoning = join_steps(self.steps(prompt))
        messages = [
            {"role": "system", "content": PLAIN_SYSTEM_PROMPT},
            {"role": "user", "content": prompt.prompt},
            {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n{final}"},
        ]
        return Trajectory(id=prompt.id, messages=messages)

    def run(self, prompts: Sequence[TrainingPrompt], on_trajectory: OnTrajectory) -> None:
        for prompt in prompts:
            on_trajectory(prompt, self.trajectory(prompt))


def trajectory_length(traj: Trajectory) -> int:
    """Characters of the final assistant message (reasoning and answer): what the sampling shortens."""
    return len(traj.final_content)


@dataclass
class ShortestAccepted:
    """Shortest rejection sampling: run each draw, keep per prompt the shortest accepted chain.

    When no draw is accepted the shortest draw is passed on anyway, so that synthesis records
    it in the rejected file with the judge's reason (nothing is silently dropped). With
    ``draws_path``, every draw is appended there as it is made, and a rerun after a kill reuses
    them: only the draws not yet made are asked again.
    """

    draws: list[Teacher]
    name: str
    judge: RefusalJudge = field(default_factory=RefusalJudge)
    draws_path: Path | None = None

    def run(self, prompts: Sequence[TrainingPrompt], on_trajectory: OnTrajectory) -> None:
        made: dict[tuple[str, int], Trajectory] = {}
        if self.draws_path is not None:
            for record in read_records(self.draws_path):
                made[(record["prompt_id"], record["draw"])] = Trajectory.model_validate(record["trajectory"])
        for index, draw in enumerate(self.draws):

            def keep(prompt: TrainingPrompt, traj: Trajectory, index: int = index) -> None:
                made[(prompt.id, index)] = traj
                if self.draws_path is not None:
                    record = {"prompt_id": prompt.id, "draw": index, "trajectory": traj.model_dump()}
                    append_record(self.draws_path, record)

            draw.run([p for p in prompts if (p.id, index) not in made], keep)
        for prompt in prompts:
            drawn = sorted(
                (made[(prompt.id, i)] for i in range(len(self.draws)) if (prompt.id, i) in made),
                key=trajectory_length,
            )
            accepted = [t for t in drawn if agrees_with_label(prompt, t, self.judge)[0]]
            if drawn:
                on_trajectory(prompt, (accepted or drawn)[0])
