"""The OpenAI chat-completions wire format: requests in, responses and stream chunks out.

Only what the server needs is modelled; unknown request fields are accepted (OpenAI clients
send many) and ignored, except sampling ones, which the response names in the
``x-rulewise-ignored`` header (the server samples with its own settings). Every problem with
a request becomes an :class:`APIError` with OpenAI's error body, never a traceback.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rulewise.evaluation.judges.refusal import classify_response
from rulewise.evaluation.verdicts import outcome
from rulewise.generation.parsing import THINK_CLOSE, THINK_OPEN, TOOL_CALL_OPEN, split_reasoning
from rulewise.generation.trajectory import Trajectory
from rulewise.rules.schema import Rulebook
from rulewise.rules.tool import TOOL_NAME, verdict_in

#: Request fields that change sampling per request; the server's own settings apply instead.
SAMPLING_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "n")


@dataclass
class APIError(Exception):
    """An error response: HTTP status and OpenAI's ``{"error": {...}}`` body."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Function(BaseModel):
    name: str
    arguments: str = "{}"


class _ToolCall(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: _Function


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def ignored_fields(self) -> list[str]:
        return [name for name in SAMPLING_FIELDS if (self.model_extra or {}).get(name) is not None]


def parse_request(body: bytes) -> ChatRequest:
    """The request, or an :class:`APIError` naming the field that is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise APIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
    limit = request.token_limit
    if limit is not None and limit <= 0:
        raise APIError(400, "max_tokens must be at least 1", param="max_tokens")
    return request


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise APIError(400, "only text content parts are supported", param=f"messages.{index}.content")
        parts.append(part["text"])
    return "".join(parts)


def to_conversation(request: ChatRequest) -> list[dict[str, Any]]:
    """The messages in the chat-template format the tool loop uses (tool-call arguments as
    objects, tool results named after the call they answer)."""
    names: dict[str, str] = {}
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        role = "system" if message.role == "developer" else message.role
        converted: dict[str, Any] = {"role": role, "content": _text(message, index)}
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError:
                    raise APIError(
                        400,
                        "tool call arguments must be a JSON object encoded as a string",
                        param=f"messages.{index}.tool_calls",
                    ) from None
                if call.id:
                    names[call.id] = call.function.name
                calls.append(
                    {"type": "function", "function": {"name": call.function.name, "arguments": arguments}}
                )
            converted["tool_calls"] = calls
        if role == "tool":
            converted["name"] = message.name or names.get(message.tool_call_id or "", "tool")
        messages.append(converted)
    if messages[-1]["role"] not in ("user", "tool"):
        raise APIError(400, "the last message must be from the user or a tool", param="messages")
    return messages


# -- responses ----------------------------------------------------------------------------------


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def finish_reason(traj: Trajectory) -> str:
    return {"answer": "stop", "length": "length", "call_cap": "length", "tool_calls": "tool_calls"}[
        traj.finish_reason
    ]


def client_tool_calls(traj: Trajectory) -> list[dict[str, Any]]:
    """The calls handed back to the client, in OpenAI's shape (arguments as a JSON string)."""
    if traj.finish_reason != "tool_calls":
        return []
    last = traj.messages[-1]
    return [
        {
            "id": "call_" + uuid.uuid4().hex[:24],
            "type": "function",
            "function": {
                "name": call["function"]["name"],
                "arguments": json.dumps(call["function"]["arguments"]),
            },
        }
        for call in last.get("tool_calls") or []
    ]


def answer_and_reasoning(traj: Trajectory) -> tuple[str, str]:
    """The final answer, and all reasoning (every turn's think block and text before a call)."""
    if traj.finish_reason == "tool_calls":
        return traj.messages[-1].get("content") or "", traj.reasoning
    return traj.final_answer, traj.reasoning


def cited_rules(traj: Trajectory, rulebook: Rulebook) -> list[str]:
    """Rule ids the assistant itself wrote (reasoning or answer), in rulebook order."""
    text = "\n".join(m.get("content") or "" for m in traj.messages if m["role"] == "assistant")
    return [rule.id for rule in rulebook.rules if re.search(rf"\b{re.escape(rule.id)}\b", text)]


def rule_verdict(traj: Trajectory) -> str | None:
    """The first rule result's verdict (refuse / comply), None when no rule was read."""
    for message in traj.messages:
        if message["role"] == "tool" and message.get("name") == TOOL_NAME:
            found = verdict_in(message.get("content") or "")
            if found is not None:
                return found
    return None


def answer_verdict(traj: Trajectory) -> str:
    """What the reply did: refuse / comply / partial (offline content judge), or tool_calls."""
    if traj.finish_reason == "tool_calls":
        return "tool_calls"
    return outcome(classify_response(traj.final_answer, harmful=False)[0])


def usage(prompt_tokens: int, traj: Trajectory) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": traj.generated_tokens,
        "total_tokens": prompt_tokens + traj.generated_tokens,
    }


def completion_body(
    *,
    request_id: str,
    model: str,
    traj: Trajectory,
    prompt_tokens: int,
    extension: dict[str, Any],
    show_reasoning: bool,
) -> dict[str, Any]:
    answer, reasoning = answer_and_reasoning(traj)
    message: dict[str, Any] = {"role": "assistant", "content": answer}
    if show_reasoning:
        message["reasoning_content"] = reasoning
    calls = client_tool_calls(traj)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(traj)}],
        "usage": usage(prompt_tokens, traj),
        "rulewise": extension,
    }


def chunk(request_id: str, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    """One server-sent event of a streamed completion."""
    body = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


#: Markers whose first characters must wait for the next token before anything is streamed.
_STREAM_MARKERS = (THINK_OPEN, THINK_CLOSE, TOOL_CALL_OPEN)


class TurnStream:
    """Per-token deltas of one assistant turn whose text grows token by token.

    Text inside ``<think>`` is reasoning and text after it the answer, as
    :func:`split_reasoning` reads the finished turn; nothing from ``<tool_call>`` on is sent (the
    server runs the call, or hands it back whole at the end). A tail that may be the start of a
    marker, and whitespace at either end of a part, wait for the next token, so the deltas join
    to the prefix of the reasoning and the answer that the non-streaming reply gives.
    """

    def __init__(self) -> None:
        self.sent = {"reasoning_content": "", "content": ""}  # each part as streamed so far

    def update(self, text: str) -> dict[str, str]:
        """The new deltas (``reasoning_content`` and/or ``content``) once the turn reads ``text``."""
        call = text.find(TOOL_CALL_OPEN)
        if call >= 0:
            text = text[:call]
        else:
            start = text.rfind("<")
            if start >= 0 and any(m.startswith(text[start:]) and m != text[start:] for m in _STREAM_MARKERS):
                text = text[:start]
        deltas = {}
        for key, part in zip(self.sent, split_reasoning(text), strict=True):
            delta = remainder(part, self.sent[key])
            if delta:
                deltas[key], self.sent[key] = delta, part
        return deltas


def remainder(full: str, sent: str) -> str:
    """What of ``full`` a stream that sent ``sent`` still owes (nothing if they disagree)."""
    return full[len(sent) :] if full.startswith(sent) else ""
