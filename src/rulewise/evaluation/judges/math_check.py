"""Checking maths answers with ``math-verify`` (HF's verifier), not hand-written regexes."""

from __future__ import annotations

from math_verify import parse, verify

from rulewise.generation.parsing import split_reasoning


def math_correct(response: str, reference: str) -> bool:
    """Whether the answer part of ``response`` ends in a value equal to ``reference``.

    math-verify reads LaTeX, ``\\boxed{}`` and plain numbers and, for free text, takes the last
    expression, which is how GSM8K-style answers end ("… so she makes $18.").
    """
    answer = split_reasoning(response)[1] or response
    gold = parse(reference)
    predicted = parse(answer)
    return bool(gold and predicted and verify(gold, predicted))
