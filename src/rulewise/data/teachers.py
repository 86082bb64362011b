"""Teachers behind one interface (``Teacher.run``), and the context-distillation wrapper.

* ``scripted`` — :class:`~rulewise.data.scripted_teacher.ScriptedTeacher`, offline and exact.
* ``hf:MODEL`` — a local model offered the tool the ASCL-ZS way (the model decides whether to
  consult), generated with the same batched tool-use loop as evaluation.
* ``openai:MODEL@URL`` — any OpenAI-compatible chat endpoint (a vLLM server, a hosted API),
  offered the tool through the API's native ``tools`` parameter, the ASCL-ZS way.

:class:`ParaphrasingTeacher` optionally rewrites a teacher's reasoning with a second
(endpoint) model, to diversify it without changing its facts, rule ids or conclusion.

Context distillation (the baseline ASCL is compared with) generates with every rule pasted into
the system prompt and no tool, then stores the conversation with the plain system prompt, so
fine-tuning has to distil the rules' effect into the weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rulewise.data.prompt_set import TrainingPrompt
from rulewise.data.scripted_teacher import ScriptedTeacher
from rulewise.endpoint import ChatClient, parse_endpoint_spec
from rulewise.errors import RulewiseError
from rulewise.generation.engine import LoopConfig, ToolUseGenerator
from rulewise.generation.parsing import ParsedToolCall
from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT
from rulewise.generation.tools import ToolRegistry
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
class EndpointTeacher:
    """An OpenAI-compatible chat model, offered the tools natively; one conversation at a time."""

    client: ChatClient
    tools: list[Callable[..., str]]
    system_prompt: str
    name: str
    max_tool_calls: int = 2
    temperature: float = 0.7
    max_tokens: int = 1024

    def trajectory(self, prompt: TrainingPrompt) -> Trajectory:
        from transformers.utils import get_json_schema

        registry = ToolRegistry(self.tools)
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.tools:
            params["tools"] = [get_json_schema(tool) for tool in self.tools]
        api: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": prompt.prompt},
        ]
        traj = Trajectory(id=prompt.id, messages=[dict(m) for m in api])
        while True:
            reply = self.client.chat(api, **params)
            reasoning = reply.get("reasoning_content") or reply.get("reasoning")
            text = (f"<think>\n{reasoning.strip()}\n</think>\n" if reasoning else "") + (
                reply.get("content") or ""
            )
            calls = reply.get("tool_calls") or []
            traj.assistant_turns += 1
            if reply.get("finish_reason") == "length":  # cut off at max_tokens: not training data
                traj.messages.append({"role": "assistant", "content": text.strip()})
                traj.finish_reason = "length"
                return traj
            if not calls or traj.num_tool_calls + traj.num_malformed_calls + len(calls) > self.max_tool_calls:
                traj.messages.append({"role": "assistant", "content": text.strip()})
                traj.finish_reason = "answer" if not calls else "call_cap"
                return traj
            parsed = [_parse_api_call(call) for call in calls]
            traj.messages.append(
                {
                    "role": "assistant",
                    "content": text.strip(),
                    "tool_calls": [
                        {"type": "function", "function": {"name": c.name, "arguments": c.arguments or {}}}
                        for c in parsed
                    ],
                }
            )
            api.append({"role": "assistant", "content": reply.get("content") or "", "tool_calls": calls})
            for call, api_call in zip(parsed, calls, strict=True):
                result = registry.execute(call)
                api.append(
                    {"role": "tool", "tool_call_id": api_call.get("id", ""), "content": result.content}
                )
                traj.add_tool_result(result)

    def run(self, prompts: Sequence[TrainingPrompt], on_trajectory: OnTrajectory) -> None:
        for prompt in prompts:
            on_trajectory(prompt, self.trajectory(prompt))


def _parse_api_call(call: dict[str, Any]) -> ParsedToolCall:
    """An OpenAI ``tool_calls`` entry (arguments as a JSON string) as a parsed call."""
    function = call.get("function") or {}
    raw = json.dumps(call)
    name = function.get("name")
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return ParsedToolCall(raw=raw, name=name, error="invalid JSON in tool call arguments")
    if not isinstance(arguments, dict):
        return ParsedToolCall(raw=raw, name=name, error="'arguments' must be a JSON object")
    return ParsedToolCall(
        raw=raw, name=name, arguments=arguments, error=None if name else "tool call has no 'name'"
    )


_THINK = re.compile(r"<think>\n?(.*?)\n?</think>", re.DOTALL)

PARAPHRASE_PROMPT = (
    "Rewrite the following reasoning in different words and sentence structure. Keep every fact, "
    "every rule id (such as WEAP-01) and the conclusion exactly. Reply with the rewritten reasoning only.\n\n{reasoning}"
)


@dataclass
class ParaphrasingTeacher:
    """Wraps a teacher and paraphrases the reasoning of every assistant turn with another model.

    A paraphrase that drops a rule id the original cited is discarded (the original is kept),
    so diversity never costs grounding.
    """

    inner: Any
    client: ChatClient
    name: str = field(init=False)
    kept_original: int = 0

    def __post_init__(self) -> None:
        self.name = f"{self.inner.name}+paraphrase:{self.client.model}"

    def _paraphrase(self, reasoning: str) -> str:
        reply = self.client.chat(
            [{"role": "user", "content": PARAPHRASE_PROMPT.format(reasoning=reasoning)}], temperature=0.9
        )
        rewritten = (reply.get("content") or "").strip() if reply.get("finish_reason") != "length" else ""
        ids = set(re.findall(r"\b[A-Z]+-\d+\b", reasoning))
        if not rewritten or not ids <= set(re.findall(r"\b[A-Z]+-\d+\b", rewritten)):
            self.kept_original += 1
            return reasoning
        return rewritten

    def run(self, prompts: Sequence[TrainingPrompt], on_trajectory: OnTrajectory) -> None:
        def rewrite(prompt: TrainingPrompt, traj: Trajectory) -> None:
            for message in traj.messages:
                if message["role"] == "assistant" and message.get("content"):
                    message["content"] = _THINK.sub(
                        lambda m: f"<think>\n{self._paraphrase(m.group(1))}\n</think>", message["content"]
                    )
            on_trajectory(prompt, traj)

        self.inner.run(prompts, rewrite)


@dataclass
class ContextDistillTeacher:
    """Generates with the rules in context, hands back the conversation without them."""

    inner: ScriptedTeacher | HFTeacher | EndpointTeacher
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
    consult: Callable[[str], str] | None = None,
) -> ScriptedTeacher | HFTeacher | EndpointTeacher:
    """``scripted``, ``hf:MODEL`` (a checkpoint directory, ``default`` or a Hub id) or ``openai:MODEL@URL``.

    ``consult`` is the rule tool the teacher calls; by default one over ``rulebook``. A caller
    that already built one (for the tool schema its data records) passes it, so the teacher
    calls the very tool the student is shown."""
    if consult is None:
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
    endpoint = parse_endpoint_spec(spec, "openai")
    if endpoint is not None:
        from rulewise.generation.prompts import default_system_prompt

        return EndpointTeacher(
            ChatClient(*endpoint),
            tools=[consult] if use_tools else [],
            system_prompt=system_prompt if system_prompt is not None else default_system_prompt(use_tools),
            name=spec,
        )
    raise RulewiseError(
        f"unknown teacher '{spec}'",
        field="teacher",
        hint="use 'scripted', 'hf:MODEL' or 'openai:MODEL@http://host:port/v1'",
    )
