"""A finished conversation: what was said, which rules were read, what it cost."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from rulewise.generation.parsing import split_reasoning
from rulewise.generation.tools import ToolResult
from rulewise.rules.tool import TOOL_NAME, rule_ids_in

#: ``tool_calls``: the model called a tool the caller runs itself (a server client's own tool).
FinishReason = Literal["answer", "length", "call_cap", "tool_calls"]


def message_reasoning(message: dict[str, Any]) -> str:
    """The reasoning of one assistant message: its think block, and text written before a tool call."""
    thought, text = split_reasoning(message.get("content") or "")
    return "\n\n".join(part for part in (thought, text if message.get("tool_calls") else "") if part)


class Trajectory(BaseModel):
    """One multi-turn tool-use conversation, as stored in results files and training data.

    ``messages`` use the transformers/TRL chat format: assistant tool calls as
    ``{"type": "function", "function": {"name", "arguments"}}`` dicts and tool results as
    ``{"role": "tool", "name", "content"}`` messages.
    """

    id: str | None = None
    messages: list[dict[str, Any]]
    consulted_rules: list[str] = Field(default_factory=list, description="rule ids returned, in order")
    num_tool_calls: int = 0  # well-formed calls that were executed
    num_malformed_calls: int = 0  # calls that produced a tool error (bad JSON, unknown tool, bad args)
    truncated_tool_call: bool = False  # a call was being written when the token limit hit
    generated_tokens: int = 0
    reasoning_tokens: int = 0  # of generated_tokens, those inside <think> blocks (all turns)
    assistant_turns: int = 0
    finish_reason: FinishReason = "answer"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ended_cleanly(self) -> bool:
        """The model finished its answer itself (no token limit, no call cap)."""
        return self.finish_reason == "answer"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def consulted(self) -> bool:
        """A tool call was executed (the rule-consultation rate counts these)."""
        return self.num_tool_calls > 0

    def add_tool_result(self, result: ToolResult) -> None:
        """Append a tool message and count it: executed (with the rule ids it returned) or failed."""
        self.messages.append({"role": "tool", "name": result.name, "content": result.content})
        if not result.ok:
            self.num_malformed_calls += 1
            return
        self.num_tool_calls += 1
        if result.name == TOOL_NAME:
            self.consulted_rules += [r for r in rule_ids_in(result.content) if r not in self.consulted_rules]

    @property
    def attempted_tool_call(self) -> bool:
        """Any call at all, including malformed and truncated ones (the rollout's *mode*)."""
        return bool(self.num_tool_calls or self.num_malformed_calls or self.truncated_tool_call)

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "user"), "")

    @property
    def final_content(self) -> str:
        """Content of the last assistant message (the answer turn when ``ended_cleanly``)."""
        return next((m.get("content") or "" for m in reversed(self.messages) if m["role"] == "assistant"), "")

    @property
    def reasoning(self) -> str:
        """All reasoning: think blocks, and any text written before a tool call."""
        return "\n\n".join(
            part for part in (message_reasoning(m) for m in self.messages if m["role"] == "assistant") if part
        )

    @property
    def final_answer(self) -> str:
        """The answer text of the last assistant turn, without its reasoning.

        A turn cut off by the token limit still counts: a truncated harmful answer is harmful.
        A conversation stopped by the call cap has no answer.
        """
        last = next((m for m in reversed(self.messages) if m["role"] == "assistant"), None)
        if last is None or last.get("tool_calls") or self.finish_reason == "call_cap":
            return ""
        return split_reasoning(last.get("content") or "")[1]
