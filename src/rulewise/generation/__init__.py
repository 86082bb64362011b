"""Multi-turn tool-use generation: parsing, tool execution, batched backends, the loop."""

from rulewise.generation.backends import Completion, CompletionBackend, HFBackend, SamplingConfig
from rulewise.generation.engine import LoopConfig, ToolUseGenerator
from rulewise.generation.factory import build_generator
from rulewise.generation.parsing import ParsedToolCall, ParsedTurn, parse_assistant_turn, split_reasoning
from rulewise.generation.tools import ToolRegistry, ToolResult
from rulewise.generation.trajectory import Trajectory

__all__ = [
    "Completion",
    "CompletionBackend",
    "HFBackend",
    "LoopConfig",
    "ParsedToolCall",
    "ParsedTurn",
    "SamplingConfig",
    "ToolRegistry",
    "ToolResult",
    "ToolUseGenerator",
    "Trajectory",
    "build_generator",
    "parse_assistant_turn",
    "split_reasoning",
]
