"""A tool-capable chat template for models whose own template knows no tools.

SmolLM2's template only renders ``role`` and ``content``: tool calls and tool results vanish.
We install TRL's copy of the Qwen2.5 ChatML template instead, byte for byte, because TRL
recognises templates by exact string match: with it, ``add_response_schema`` (tool-call parsing
in GRPOTrainer) and ``get_training_chat_template`` (assistant-only loss masks in SFTTrainer) work
unchanged. The file is read from TRL's package directory without importing TRL, which would
add seconds to every CLI start.

Its only quirk: with no system message it inserts Qwen's default one. rulewise always sends a
system message, so that never happens in our pipelines.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Literal

from transformers import PreTrainedTokenizerBase

from rulewise.errors import RulewiseError

ChatTemplateMode = Literal["auto", "keep", "chatml-tools"]
CHATML_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>")


@cache
def chatml_tool_template() -> str:
    """TRL's Qwen2.5 chat template (the ChatML family TRL parses tool calls for)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise RulewiseError("TRL is not installed", hint="pip install 'trl>=1.16,<1.17'")
    path = Path(spec.submodule_search_locations[0]) / "chat_templates" / "qwen2_5.jinja"
    return path.read_text(encoding="utf-8")


def knows_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's template renders tool calls (heuristic: it mentions them)."""
    template = tokenizer.chat_template
    return isinstance(template, str) and "tool_call" in template


def ensure_tool_template(tokenizer: PreTrainedTokenizerBase, mode: ChatTemplateMode = "auto") -> None:
    """Give ``tokenizer`` a template that can render tool calls, in place.

    ``auto`` keeps a template that already handles tools and otherwise installs the ChatML tool
    template; ``keep`` never changes it; ``chatml-tools`` always installs ours.
    """
    if mode == "keep" or (mode == "auto" and knows_tools(tokenizer)):
        return
    vocab = tokenizer.get_vocab()
    missing = [token for token in CHATML_SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise RulewiseError(
            f"the tokenizer has no {', '.join(missing)} token(s), so the ChatML tool template cannot be used",
            hint="give the model a tool-capable chat template of its own, then load it with chat_template='keep'",
        )
    tokenizer.chat_template = chatml_tool_template()
    tokenizer.eos_token = "<|im_end|>"  # generation must stop at the end of an assistant turn
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
