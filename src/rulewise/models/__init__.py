"""Model and tokenizer loading, and the tool-capable chat template."""

from rulewise.models.chat_template import chatml_tool_template, ensure_tool_template
from rulewise.models.loading import (
    DEFAULT_MODEL,
    LoadedModel,
    cache_dir,
    convert_default,
    default_checkpoint,
    load_model,
    load_tokenizer,
    resolve_model_spec,
)

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "cache_dir",
    "chatml_tool_template",
    "convert_default",
    "default_checkpoint",
    "ensure_tool_template",
    "load_model",
    "load_tokenizer",
    "resolve_model_spec",
]
