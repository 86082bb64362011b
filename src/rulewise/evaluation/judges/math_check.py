"""Checking maths answers with ``math-verify`` (HF's verifier), not hand-written regexes."""

from __future__ import annotations

from math_verify import parse, verify

from rulewise.evaluation.judges.refusal import split_all_reasoning


def math_correct(response: str, reference: str) -> bool:
    """Whether the answer part of ``response`` ends in a value equal to ``reference``.

    math-verify reads LaTeX, ``\\boxed{}`` and plain numbers and, for free text, takes the last
    expression, which is how GSM8K-style answers end ("… so she makes $18."). Only a final
    answer counts: a response cut off inside its reasoning gets no credit for the numbers it
    was still working through.
    """
    answer = split_all_reasoning(response)[1]
    if not answer:
        return False
    gold = parse(reference)
    predicted = parse(answer)
    return bool(gold and predicted and verify(gold, predicted))
