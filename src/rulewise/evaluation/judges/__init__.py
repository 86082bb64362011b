"""Judges: the offline refusal judge, the endpoint LLM judge, the maths checker."""

from __future__ import annotations

from rulewise.endpoint import parse_endpoint_spec
from rulewise.errors import RulewiseError
from rulewise.evaluation.judges.base import Judge, Judgement, Verdict
from rulewise.evaluation.judges.llm import OpenAIJudge
from rulewise.evaluation.judges.math_check import math_correct
from rulewise.evaluation.judges.refusal import RefusalJudge, classify_response


def build_judge(spec: str = "refusal") -> Judge:
    """``refusal`` (offline, default) or ``openai:MODEL@URL`` (key from ``OPENAI_API_KEY``)."""
    if spec == "refusal":
        return RefusalJudge()
    endpoint = parse_endpoint_spec(spec, "openai")
    if endpoint is not None:
        return OpenAIJudge(*endpoint)
    raise RulewiseError(
        f"unknown judge '{spec}'", field="judge", hint="use 'refusal' or 'openai:MODEL@http://host:port/v1'"
    )


__all__ = [
    "Judge",
    "Judgement",
    "OpenAIJudge",
    "RefusalJudge",
    "Verdict",
    "build_judge",
    "classify_response",
    "math_correct",
]
