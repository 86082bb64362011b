"""Parsing what a model wrote in one assistant turn: text, ``<tool_call>`` blocks, leftovers.

The format is the Qwen/ChatML one TRL parses: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.
We parse it ourselves rather than through ``tokenizer.parse_response`` because the loop needs
to know *how* a call is malformed (so the model gets an error message and the call is counted),
whereas TRL falls back to plain text and the attempt disappears. JSON is read with
``json.JSONDecoder.raw_decode``, so braces or ``</tool_call>`` inside argument strings are safe.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

_decoder = json.JSONDecoder()


@dataclass
class ParsedToolCall:
    """One ``<tool_call>`` block. ``error`` is None exactly when the call is well-formed."""

    raw: str
    name: str | None = None
    arguments: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class ParsedTurn:
    content: str  # text before the first tool call (or the whole text when there is none)
    tool_calls: list[ParsedToolCall] = field(default_factory=list)
    trailing_text: str = ""  # non-blank text after the last closed tool call
    unclosed_call: ParsedToolCall | None = None  # a call cut off before ``</tool_call>``


def _read_call_json(body: str) -> tuple[str | None, dict[str, Any] | None, int, str | None]:
    """Parse the JSON object at the start of ``body``.

    Returns ``(name, arguments, end, error)`` where ``end`` is the offset just after the JSON
    (0 when no JSON could be read).
    """
    start = len(body) - len(body.lstrip())
    try:
        obj, end = _decoder.raw_decode(body, start)
    except json.JSONDecodeError as exc:
        return None, None, 0, f"invalid JSON in tool call: {exc.msg}"
    if not isinstance(obj, dict):
        return None, None, end, "a tool call must be a JSON object with 'name' and 'arguments'"
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None, None, end, "tool call has no 'name'"
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):  # some models JSON-encode the arguments twice
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return name, None, end, "'arguments' is a string that is not a JSON object"
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return name, None, end, "'arguments' must be a JSON object"
    return name, arguments, end, None


def parse_assistant_turn(text: str, *, end_markers: tuple[str, ...] = ("<|im_end|>",)) -> ParsedTurn:
    """Split one generated assistant turn into content, tool calls and leftovers."""
    for marker in end_markers:
        text = text.split(marker, 1)[0]
    first = text.find(TOOL_CALL_OPEN)
    if first < 0:
        return ParsedTurn(content=text.strip())
    turn = ParsedTurn(content=text[:first].strip())
    position = first
    while True:
        body_start = position + len(TOOL_CALL_OPEN)
        body = text[body_start:]
        name, arguments, json_end, error = _read_call_json(body)
        if json_end:
            after_json = body[json_end:]
            close = after_json.find(TOOL_CALL_CLOSE)
            if close < 0:
                close_at = -1
            else:
                if error is None and after_json[:close].strip():
                    error = "unexpected text between the JSON object and </tool_call>"
                close_at = body_start + json_end + close
        else:
            close_at = text.find(TOOL_CALL_CLOSE, body_start)
        if close_at < 0:  # cut off mid-call (length limit)
            turn.unclosed_call = ParsedToolCall(
                raw=text[position:], name=name, arguments=arguments, error=error or "tool call was not closed"
            )
            return turn
        end = close_at + len(TOOL_CALL_CLOSE)
        turn.tool_calls.append(
            ParsedToolCall(raw=text[position:end], name=name, arguments=arguments, error=error)
        )
        next_open = text.find(TOOL_CALL_OPEN, end)
        if next_open < 0 or text[end:next_open].strip():
            turn.trailing_text = text[end:].strip()
            return turn
        position = next_open


_THINK_BLOCK = re.compile(re.escape(THINK_OPEN) + r"(.*?)(?:" + re.escape(THINK_CLOSE) + r"|$)", re.DOTALL)


def split_reasoning(content: str) -> tuple[str, str]:
    """``(reasoning, answer)`` from ``<think>…</think> answer``; no think block → no reasoning."""
    match = _THINK_BLOCK.search(content)
    if not match:
        return "", content.strip()
    reasoning = match.group(1).strip()
    answer = (content[: match.start()] + content[match.end() :]).strip()
    return reasoning, answer


_MARKUP = re.compile("|".join(map(re.escape, (TOOL_CALL_OPEN, TOOL_CALL_CLOSE, THINK_OPEN, THINK_CLOSE))))


def has_markup(answer: str) -> bool:
    """Whether an answer still holds turn markup (a stray ``</think>`` or ``</tool_call>``): markup
    belongs to a turn's structure, never to the text a user reads."""
    return _MARKUP.search(answer) is not None
