"""Teachers behind one interface (``Teacher.run``), and the context-distillation wrapper.

* ``scripted`` — :class:`~rulewise.data.scripted_teacher.ScriptedTeacher`, offline and exact.
* ``hf:MODEL`` — a local model offered the tool the ASCL-ZS way (the model decides whether to
  consult), generated with the same batched tool-use loop as evaluation.

Context distillation (the baseline ASCL is compared with) generates with every rule pasted into
the system prompt and no tool, then stores the conversation with the plain system prompt, so
fine-tuning has to distil the rules' effect into the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rulewise.data.prompt_set import TrainingPrompt
from rulewise.data.scripted_teacher import ScriptedTeacher
from rulewise.errors import RulewiseError
from rulewise.generation.engine import LoopConfig, ToolUseGenerator
from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT
from rulewise.generation.trajectory import Trajectory
from rulewise.rules.retrieval import build_retriever
from rulewise.rules.schema import Rulebook
from rulewise.rules.tool import make_consult_tool

OnTrajectory = Callable[[TrainingPrompt, Trajectory], None]


def rules_context(rulebook: Rulebook) -> str:
    """Every rule, rendered as the tool would return it, for pasting into a system prompt."""
    return "\n\n".join(rule.render() for rule in rulebook.rules)


@dataclass
class HFTeacher:
    """A local model as teacher, through the batched tool-use loop."""

    generator: ToolUseGenerator
    name: str

    def run(self, prompts: Sequence[TrainingPrompt], on_trajectory: OnTrajectory) -> None:
        self.generator.generate(
            [p.prompt for p in prompts],
            ids=[p.id for p in prompts],
            on_finished=lambda i, t: on_trajectory(prompts[i], t),
        )


@dataclass
class ContextDistillTeacher:
    """Generates with the rules in context, hands back the conversation without them."""

    inner: ScriptedTeacher | HFTeacher
    rulebook: Rulebook
    plain_system_prompt: str = PLAIN_SYSTEM_PROMPT
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"context-distill:{self.inner.name}"

    def run(self, prompts: Sequence[TrainingPrompt], on_trajectory: OnTrajectory) -> None:
        rules = rules_context(self.rulebook)
        if isinstance(self.inner, ScriptedTeacher):
            for prompt in prompts:
                on_trajectory(
                    prompt, self.inner.context_distilled(prompt, rules, self.plain_system_prompt)[1]
                )
            return

        def strip_rules(prompt: TrainingPrompt, traj: Trajectory) -> None:
            traj.messages[0] = {"role": "system", "content": self.plain_system_prompt}
            on_trajectory(prompt, traj)

        self.inner.run(prompts, strip_rules)


def build_teacher(
    spec: str,
    rulebook: Rulebook,
    *,
    use_tools: bool = True,
    system_prompt: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 384,
    seed: int = 0,
) -> ScriptedTeacher | HFTeacher:
    """``scripted`` or ``hf:MODEL`` (a checkpoint directory, ``default`` or a Hub id)."""
    consult = make_consult_tool(build_retriever(rulebook))
    if spec == "scripted":
        teacher = ScriptedTeacher(rulebook, consult, seed=seed)
        if system_prompt is not None:
            teacher.system_prompt = system_prompt
        return teacher
    if spec.startswith("hf:"):
        from rulewise.generation.backends import HFBackend
        from rulewise.models import load_model

        loaded = load_model(spec.removeprefix("hf:"))
        generator = ToolUseGenerator(
            HFBackend(loaded.model, loaded.tokenizer),
            loaded.tokenizer,
            tools=[consult] if use_tools else [],
            config=LoopConfig(max_new_tokens=max_new_tokens, batch_size=batch_size),
            system_prompt=system_prompt,
        )
        return HFTeacher(generator, name=spec)
    raise RulewiseError(f"unknown teacher '{spec}'", field="teacher", hint="use 'scripted' or 'hf:MODEL'")
