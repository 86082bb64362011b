"""Rulebooks, rule retrieval and the ``consult_safety_rules`` tool."""

from rulewise.rules.loading import default_rulebook_path, load_rulebook
from rulewise.rules.retrieval import BM25RuleRetriever, DenseRuleRetriever, RuleMatch, build_retriever
from rulewise.rules.schema import Clause, Rule, Rulebook, RuleExample
from rulewise.rules.tool import TOOL_NAME, consult_safety_rules, make_consult_tool, rule_ids_in, verdict_in

__all__ = [
    "TOOL_NAME",
    "BM25RuleRetriever",
    "Clause",
    "DenseRuleRetriever",
    "Rule",
    "RuleExample",
    "RuleMatch",
    "Rulebook",
    "build_retriever",
    "consult_safety_rules",
    "default_rulebook_path",
    "load_rulebook",
    "make_consult_tool",
    "rule_ids_in",
    "verdict_in",
]
