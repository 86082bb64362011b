"""``rulewise serve``: a model behind an OpenAI-compatible API whose rule tool runs server-side,
with an audit trail and a rulebook that can be edited while serving (see docs/serving.md)."""
