"""The multi-turn tool-use loop used for chat, evaluation and data generation.

Each assistant turn is rendered with the chat template and handed to the backend as a request;
as each turn ends: an answer ends the conversation; a tool call is parsed, executed (or turned
into an error message) and appended as a ``tool`` message, and the conversation queues for its
next turn. Conversations finish — and are reported to ``on_finished`` — one by one, so an
interrupted evaluation loses only the conversations in flight.
"""

from __future__ import annotations

import copy
import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from rulewise.generation.backends import Completion, CompletionBackend, Request, serve_in_turns
from rulewise.generation.parsing import ParsedTurn, parse_assistant_turn, split_reasoning
from rulewise.generation.prompts import default_system_prompt
from rulewise.generation.tools import ToolRegistry
from rulewise.generation.trajectory import Trajectory

Conversation = list[dict[str, Any]]


@dataclass
class LoopConfig:
    max_new_tokens: int = 256  # per assistant turn
    max_tool_calls: int = 2  # per conversation, malformed calls included; one more ends it ("call_cap")
    batch_size: int = 8  # conversations completed together in one backend call


@dataclass
class Job:
    """A conversation to run, and what only this conversation asks for (a server's request)."""

    key: object
    trajectory: Trajectory
    max_new_tokens: int | None = None  # per turn, below the loop's own limit
    client_tools: Sequence[dict[str, Any]] = ()  # JSON schemas of tools the caller executes itself
    cancelled: Callable[[], bool] | None = None  # True once nobody waits for the answer any more
    on_text: Callable[[str], None] | None = None  # each turn's text as it grows (token-level backends)

    @property
    def client_tool_names(self) -> frozenset[str]:
        return frozenset(tool.get("function", tool).get("name", "") for tool in self.client_tools)


def _as_messages(turn: ParsedTurn) -> list[dict[str, Any]]:
    """A turn's parsed calls in the chat format's ``tool_calls`` shape."""
    return [
        {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in turn.tool_calls
    ]


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

    def render(self, messages: Conversation, client_tools: Sequence[dict[str, Any]] = ()) -> str:
        tools = [*self.registry.schemas_source, *client_tools] or None
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

        # New conversations longest prompt first, so similar lengths run together.
        def length(i: int) -> int:
            return sum(len(m.get("content") or "") for m in states[i].messages)

        fresh = deque(sorted(range(len(states)), key=length, reverse=True))

        def next_job() -> Job | None:
            if not fresh:
                return None
            index = fresh.popleft()
            return Job(index, states[index])

        def finished(job: Job) -> None:
            if on_finished is not None:
                on_finished(job.key, job.trajectory)  # type: ignore[arg-type]

        self.drive(next_job, finished)
        return states

    def drive(
        self,
        next_job: Callable[[], Job | None],
        on_finished: Callable[[Job], None] | None = None,
        on_turn: Callable[[Job], None] | None = None,
    ) -> None:
        """Run conversations handed out by ``next_job`` until it has none and all have ended.

        ``next_job`` is asked whenever a batch slot is free, so a source that keeps receiving
        work (a server) has new conversations join the running batch. Conversations awaiting
        their next turn go before new ones. HF models batch continuously at token level and reuse
        each conversation's keys/values for its next turn; other backends batch per turn.
        ``on_turn`` fires after each assistant turn (and its tool results) is appended.
        """
        jobs: dict[object, Job] = {}
        waiting: deque[object] = deque()

        def next_request() -> Request | None:
            if waiting:
                job = jobs[waiting.popleft()]
            else:
                job = next_job()
                if job is None:
                    return None
                jobs[job.key] = job
            return Request(
                key=job.key,
                prompt=self.render(job.trajectory.messages, job.client_tools),
                max_new_tokens=job.max_new_tokens,
                cancelled=job.cancelled,
                on_text=job.on_text,
            )

        def on_done(request: Request, completion: Completion) -> bool:
            job = jobs[request.key]
            traj = job.trajectory
            traj.generated_tokens += completion.num_tokens
            traj.reasoning_tokens += self.count_reasoning_tokens(completion.text)
            traj.assistant_turns += 1
            more = self._step(traj, completion.text, completion.stop, job.client_tool_names)
            if job.cancelled is not None and job.cancelled():
                more = False
            if on_turn is not None:
                on_turn(job)
            if more:
                waiting.append(request.key)
                return True
            del jobs[request.key]
            if on_finished is not None:
                on_finished(job)
            return False

        serve = getattr(self.backend, "serve", None) or functools.partial(serve_in_turns, self.backend)
        serve(
            next_request,
            on_done,
            max_new_tokens=self.config.max_new_tokens,
            stop_at_tool_call=bool(self.registry),
            batch_size=self.config.batch_size,
        )

    def _step(
        self, traj: Trajectory, text: str, stop: str, client_tools: frozenset[str] = frozenset()
    ) -> bool:
        """Apply one completion to a conversation; True if it needs another round."""
        messages = traj.messages
        if not self.registry and not client_tools:
            messages.append({"role": "assistant", "content": text.strip()})
            traj.finish_reason = "answer" if stop == "eos" else "length"
            return False
        turn = parse_assistant_turn(text, end_markers=self._end_markers)
        if not turn.tool_calls:
            messages.append({"role": "assistant", "content": text.strip()})
            traj.truncated_tool_call = turn.unclosed_call is not None
            traj.finish_reason = "answer" if stop == "eos" else "length"
            return False
        if any(call.name in client_tools for call in turn.tool_calls):
            # The caller's own tools run on the caller's side: hand the calls back unexecuted.
            messages.append({"role": "assistant", "content": turn.content, "tool_calls": _as_messages(turn)})
            traj.finish_reason = "tool_calls"
            return False
        calls_so_far = traj.num_tool_calls + traj.num_malformed_calls
        if calls_so_far + len(turn.tool_calls) > self.config.max_tool_calls:
            messages.append({"role": "assistant", "content": text.strip()})
            traj.finish_reason = "call_cap"
            return False
        results = [self.registry.execute(call) for call in turn.tool_calls]
        if all(result.ok for result in results):
            messages.append({"role": "assistant", "content": turn.content, "tool_calls": _as_messages(turn)})
        else:  # keep what the model really wrote, so the transcript shows the malformed call
            messages.append({"role": "assistant", "content": text.strip()})
        for result in results:
            traj.add_tool_result(result)
        return True
