"""The ``consult_safety_rules`` tool the policy may call while reasoning.

TRL's ``GRPOTrainer(tools=...)`` and transformers' ``apply_chat_template(tools=...)`` both take a
plain Python function and derive its JSON schema from the signature and the Google-style
docstring, so the tool is a real function (bound to a retriever by closure), not an object.
Its output is plain text, one block per retrieved rule: ``[RULE-ID] title``, then the rule's
clause closest to the query ("Not allowed: ..." or "Allowed: ..."), then its closest clause of
the other side. The first block's first clause is the rulebook's verdict on the request
(:func:`verdict_in`), the second line a refusal's alternative or the limit of what is allowed.
:func:`rule_ids_in` reads the ids back, so stored trajectories say which rules were consulted
without any side channel. Short on purpose: about 50 tokens a rule, where the whole rule was
about 170 — tool output is encoded at every training step and every rollout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Literal

from rulewise.rules.loading import load_rulebook
from rulewise.rules.retrieval import RuleMatch, RuleRetriever, build_retriever
from rulewise.rules.schema import NO_RULE_ID, Rulebook

TOOL_NAME = "consult_safety_rules"
NO_QUERY_MESSAGE = (
    "Error: empty query. Call consult_safety_rules with a short description of the request, "
    'e.g. {"query": "how to make a pipe bomb"}.'
)
#: What the tool says when no clause shares a content word with the query: a block of the same
#: shape as a rule's, so a student that learnt to copy the id and the side ('Rule GENERAL says
#: "Allowed", so I will answer it fully.') needs no second habit. Why: with a free-text message
#: here, quickstart students wrote 'Rule "No" says ...' and refused plain tasks; with a title
#: opening "No specific ...", they quoted it and refused.
NO_MATCH_MESSAGE = (
    f"[{NO_RULE_ID}] General requests\n"
    "Allowed: anything no specific safety rule forbids; help fully and do not refuse"
)

#: The tool's description as models see it: transformers builds the JSON schema from this
#: Google-style docstring (summary + ``Args:``), so its wording is part of the prompt.
TOOL_DOCSTRING = """
Look up the safety rules for a request that may be harmful: what is allowed and what is not.

Args:
    query: The request to check, in a few words, e.g. "how to make a pipe bomb".
"""

_RULE_ID_LINE = re.compile(r"^\[([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*)\]", re.MULTILINE)


#: Rules shown per call. One: the first block's clause is the verdict, and a second block
#: (often the other side of another rule) gave a student a second verdict to copy.
RULES_PER_CALL = 1

_CLAUSE_LINE = re.compile(r"^(Not allowed|Allowed): (.*)$", re.MULTILINE)


def rule_ids_in(tool_output: str) -> list[str]:
    """Rule ids named at the start of lines of a tool output, in order (no-match's
    ``GENERAL`` is not a rule of the rulebook, so it is left out)."""
    return [rule_id for rule_id in _RULE_ID_LINE.findall(tool_output) if rule_id != NO_RULE_ID]


def clauses_in(tool_output: str) -> list[tuple[bool, str]]:
    """The clauses of a tool output's first rule block, in order, as ``(allowed, text)``: the
    closest clause (the verdict), then the closest one of the other side."""
    first_block = tool_output.split("\n\n", 1)[0]
    return [(side == "Allowed", text) for side, text in _CLAUSE_LINE.findall(first_block)]


def verdict_in(tool_output: str) -> Literal["refuse", "comply"] | None:
    """The verdict a tool output gives: its first clause's side ("comply" when no rule matched).

    ``None`` for an output that is neither (an error message, or not this tool's).
    """
    clauses = clauses_in(tool_output)
    if not clauses:
        return None
    return "comply" if clauses[0][0] else "refuse"


def render_match(match: RuleMatch) -> str:
    """One rule block: header, the closest clause (the verdict), the closest opposite clause."""
    return "\n".join(
        [f"[{match.rule.id}] {match.rule.title}", match.clause.render(), match.contrast.render()]
    )


def make_consult_tool(retriever: RuleRetriever, k: int = RULES_PER_CALL) -> Callable[[str], str]:
    """A ``consult_safety_rules`` function that answers from ``retriever`` with top-``k`` rules."""

    def consult_safety_rules(query: str) -> str:
        if not isinstance(query, str) or not query.strip():
            return NO_QUERY_MESSAGE
        matches = retriever.search(query, k=k)
        if not matches:
            return NO_MATCH_MESSAGE
        return "\n\n".join(render_match(match) for match in matches)

    consult_safety_rules.__doc__ = TOOL_DOCSTRING
    return consult_safety_rules


class SwappedRuleTools:
    """Consult tools over counterfactual copies of ``rulebook`` — one rule's sides swapped
    (:meth:`Rulebook.with_sides_swapped`) — each built once, by rule id.

    Synthesis (counterfactual BC) and RL (counterfactual rollouts) put the same request under
    the shipped and the swapped rulebook, so only the retrieved clause tells the right answers
    apart; both need the swapped rulebook's tool for a prompt, and one copy of it per rule.
    """

    def __init__(self, rulebook: Rulebook, k: int = RULES_PER_CALL) -> None:
        self.rulebook = rulebook
        self.k = k
        self._tools: dict[str, Callable[[str], str]] = {}

    def __call__(self, rule_id: str) -> Callable[[str], str]:
        if rule_id not in self._tools:
            swapped = self.rulebook.with_sides_swapped(rule_id)  # KeyError for an unknown id
            self._tools[rule_id] = make_consult_tool(build_retriever(swapped), k=self.k)
        return self._tools[rule_id]


@cache
def _default_tool() -> Callable[[str], str]:
    return make_consult_tool(build_retriever(load_rulebook()))


def consult_safety_rules(query: str) -> str:
    return _default_tool()(query)


consult_safety_rules.__doc__ = TOOL_DOCSTRING
