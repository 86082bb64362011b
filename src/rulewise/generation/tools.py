"""Executing parsed tool calls safely: every failure becomes a message for the model."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rulewise.generation.parsing import ParsedToolCall


@dataclass
class ToolResult:
    name: str
    content: str
    ok: bool  # False for malformed calls, unknown tools, bad arguments or a tool that raised


class ToolRegistry:
    """Name → function, with argument checking against each function's signature."""

    def __init__(self, tools: Sequence[Callable[..., Any]]) -> None:
        self.functions = {tool.__name__: tool for tool in tools}
        self._signatures = {name: inspect.signature(fn) for name, fn in self.functions.items()}

    def __bool__(self) -> bool:
        return bool(self.functions)

    @property
    def schemas_source(self) -> list[Callable[..., Any]]:
        """The functions as ``apply_chat_template(tools=...)`` wants them."""
        return list(self.functions.values())

    def _argument_error(self, name: str, arguments: dict[str, Any]) -> str | None:
        signature = self._signatures[name]
        params = signature.parameters
        unknown = sorted(set(arguments) - set(params))
        if unknown:
            return f"unknown argument(s) {', '.join(unknown)}; expected {', '.join(params)}"
        missing = [
            p for p, spec in params.items() if spec.default is inspect.Parameter.empty and p not in arguments
        ]
        if missing:
            return f"missing argument(s) {', '.join(missing)}"
        for param, value in arguments.items():
            if params[param].annotation in (str, "str") and not isinstance(value, str):
                return f"argument '{param}' must be a string"
        return None

    def execute(self, call: ParsedToolCall) -> ToolResult:
        """Run a call, or explain to the model why it could not be run."""
        name = call.name or "unknown"
        if call.error:
            return ToolResult(name, f"Error: {call.error}.", ok=False)
        if name not in self.functions:
            known = ", ".join(self.functions) or "none"
            return ToolResult(name, f"Error: unknown tool '{name}'. Available tools: {known}.", ok=False)
        arguments = call.arguments or {}
        problem = self._argument_error(name, arguments)
        if problem:
            return ToolResult(name, f"Error: {problem}.", ok=False)
        try:
            output = self.functions[name](**arguments)
        except Exception as exc:  # noqa: BLE001 - a tool bug must not kill a whole evaluation run
            return ToolResult(name, f"Error: tool '{name}' failed: {type(exc).__name__}: {exc}.", ok=False)
        return ToolResult(name, str(output), ok=True)
