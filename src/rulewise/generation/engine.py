"""The multi-turn tool-use loop used for chat, evaluation and data generation.

Each step renders a batch of conversations with the chat template, completes them together,
and then, per conversation: an answer ends it; a tool call is parsed, executed (or turned into
an error message) and appended as a ``tool`` message, and the conversation waits for its next
turn. Batches are refilled at every step (continuous batching at turn granularity), so
conversations finish — and are reported to ``on_finished`` — one by one, and an interrupted
evaluation loses only the batch in flight.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from rulewise.generation.backends import CompletionBackend
from rulewise.generation.parsing import parse_assistant_turn, split_reasoning
from rulewise.generation.prompts import default_system_prompt
from rulewise.generation.tools import ToolRegistry
from rulewise.generation.trajectory import Trajectory

Conversation = list[dict[str, Any]]


@dataclass
class LoopConfig:
    max_new_tokens: int = 256  # per assistant turn
    max_tool_calls: int = 2  # per conversation, malformed calls included; one more ends it ("call_cap")
    batch_size: int = 8  # conversations completed together in one backend call


class ToolUseGenerator:
    """Runs conversations to completion with optional tools."""

    def __init__(
        self,
        backend: CompletionBackend,
        tokenizer: PreTrainedTokenizerBase,
        tools: Sequence[Callable[..., Any]] = (),
        config: LoopConfig | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.registry = ToolRegistry(tools)
        self.config = config or LoopConfig()
        self.system_prompt = (
            system_prompt if system_prompt is not None else default_system_prompt(bool(tools))
        )
        self._end_markers = tuple(t for t in (tokenizer.eos_token,) if t)

    def start(self, prompt: str | Conversation) -> Conversation:
        """A conversation for ``prompt``: the system prompt (unless given) and the user turn."""
        if isinstance(prompt, str):
            return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]
        messages = copy.deepcopy(prompt)
        if not messages or messages[0].get("role") != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def count_reasoning_tokens(self, text: str) -> int:
        """Tokens of a completion's ``<think>`` block (an unclosed one runs to the end).

        Why: reasoning length is what shortest rejection sampling and IFPO's consultation
        trade against; ``generated_tokens`` alone mixes it with answer length.
        """
        reasoning, _ = split_reasoning(text)
        return len(self.tokenizer(reasoning, add_special_tokens=False)["input_ids"]) if reasoning else 0

    def render(self, messages: Conversation) -> str:
        tools = self.registry.schemas_source if self.registry else None
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=False
        )

    def generate(
        self,
        prompts: Sequence[str | Conversation],
        ids: Sequence[str] | None = None,
        on_finished: Callable[[int, Trajectory], None] | None = None,
    ) -> list[Trajectory]:
        """Complete every prompt; ``on_finished(index, trajectory)`` fires as each one ends."""
        if ids is not None and len(ids) != len(prompts):
            raise ValueError(f"{len(ids)} ids for {len(prompts)} prompts")
        states = [
            Trajectory(id=ids[i] if ids is not None else None, messages=self.start(prompt))
            for i, prompt in enumerate(prompts)
        ]

        # Turn-level continuous batching: every batch is topped up to ``batch_size`` with
        # conversations awaiting their next turn first, then new ones (longest prompts first, so
        # a batch holds similar lengths). Conversations finish, and are reported, one by one.
        def length(i: int) -> int:
            return sum(len(m.get("content") or "") for m in states[i].messages)

        fresh = deque(sorted(range(len(states)), key=length, reverse=True))
        waiting: deque[int] = deque()
        while fresh or waiting:
            batch = []
            while len(batch) < self.config.batch_size and (waiting or fresh):
                batch.append(waiting.popleft() if waiting else fresh.popleft())
            completions = self.backend.complete(
                [self.render(states[i].messages) for i in batch],
                self.config.max_new_tokens,
                stop_at_tool_call=bool(self.registry),
            )
            for index, completion in zip(batch, completions, strict=True):
                traj = states[index]
                traj.generated_tokens += completion.num_tokens
                traj.reasoning_tokens += self.count_reasoning_tokens(completion.text)
                traj.assistant_turns += 1
                if self._step(traj, completion.text, completion.stop):
                    waiting.append(index)
                elif on_finished is not None:
                    on_finished(index, traj)
        return states

    def _step(self, traj: Trajectory, text: str, stop: str) -> bool:
        """Apply one completion to a conversation; True if it needs another round."""
        messages = traj.messages
        if not self.registry:
            messages.append({"role": "assistant", "content": text.strip()})
            traj.finish_reason = "answer" if stop == "eos" else "length"
            return False
        turn = parse_assistant_turn(text, end_markers=self._end_markers)
        if not turn.tool_calls:
            messages.append({"role": "assistant", "content": text.strip()})
            traj.truncated_tool_call = turn.unclosed_call is not None
            traj.finish_reason = "answer" if stop == "eos" else "length"
            return False
        calls_so_far = traj.num_tool_calls + traj.num_malformed_calls
        if calls_so_far + len(turn.tool_calls) > self.config.max_tool_calls:
            messages.append({"role": "assistant", "content": text.strip()})
            traj.finish_reason = "call_cap"
            return False
        results = [self.registry.execute(call) for call in turn.tool_calls]
        if all(result.ok for result in results):
            messages.append(
                {
                    "role": "assistant",
                    "content": turn.content,
                    "tool_calls": [
                        {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                        for call in turn.tool_calls
                    ],
                }
            )
        else:  # keep what the model really wrote, so the transcript shows the malformed call
            messages.append({"role": "assistant", "content": text.strip()})
        for result in results:
            traj.add_tool_result(result)
        return True
