import json

import pytest

from rulewise.errors import RulewiseError
from rulewise.rules import Rule, Rulebook, load_rulebook

HAZARD_AREAS = {
    "weapons_explosives",
    "cyber_attacks",
    "self_harm",
    "violent_crime",
    "hate_harassment",
    "sexual_content",
    "privacy",
    "fraud_scams",
    "drugs",
    "extremism",
    "misinformation",
    "chemical_biological",
    "child_safety",
    "regulated_advice",
}

GOOD_RULE = """\
  - id: TEST-01
    category: testing
    title: A test rule
    rule: Do not do the bad thing.
    disallowed: [the bad thing]
    allowed: [the good thing]
"""


def write(tmp_path, text, name="book.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_rulebook_covers_every_hazard_area_with_permitted_uses():
    book = load_rulebook()
    assert len(book.rules) >= 15
    assert HAZARD_AREAS <= set(book.categories)
    for rule in book.rules:
        assert rule.allowed and rule.disallowed, rule.id
        assert rule.rule == rule.rule.strip()


def test_load_yaml_and_json_give_the_same_rulebook(tmp_path):
    yaml_path = write(tmp_path, "name: t\nrules:\n" + GOOD_RULE)
    book = load_rulebook(yaml_path)
    json_path = write(tmp_path, json.dumps(book.model_dump()), "book.json")
    assert load_rulebook(json_path) == book
    assert book.get("test-01").title == "A test rule"


@pytest.mark.parametrize(
    ("body", "line", "field", "words"),
    [
        (GOOD_RULE.replace("    allowed: [the good thing]\n", ""), 3, "rules[0].allowed", "Field required"),
        (
            GOOD_RULE.replace("allowed: [the good thing]", "allowed: []"),
            8,
            "rules[0].allowed",
            "at least 1 item",
        ),
        (GOOD_RULE.replace("id: TEST-01", "id: lower-case"), 3, "rules[0].id", "should match pattern"),
        (GOOD_RULE.replace("category: testing", "category: Not Snake"), 4, "rules[0].category", "pattern"),
        (GOOD_RULE.replace("title: A test rule", "title: ''"), 5, "rules[0].title", "at least 1 character"),
        (GOOD_RULE + "    colour: red\n", 9, "rules[0].colour", "Extra inputs are not permitted"),
        (
            GOOD_RULE.replace("allowed: [the good thing]", "allowed: ['  ']"),
            8,
            "rules[0].allowed",
            "non-empty",
        ),
        (
            GOOD_RULE + "    examples:\n      - {request: x, verdict: maybe}\n",
            10,
            "rules[0].examples[0].verdict",
            "'refuse' or 'comply'",
        ),
    ],
)
def test_validation_errors_name_file_line_rule_and_field(tmp_path, body, line, field, words):
    path = write(tmp_path, "name: t\nrules:\n" + body)
    with pytest.raises(RulewiseError) as info:
        load_rulebook(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.field == field
    assert words in err.message
    if "id: lower-case" not in body:
        assert "rule 'TEST-01'" in err.message


def test_duplicate_ids_point_at_the_second_rule(tmp_path):
    path = write(tmp_path, "name: t\nrules:\n" + GOOD_RULE + GOOD_RULE)
    with pytest.raises(RulewiseError, match="duplicate rule id 'TEST-01'") as info:
        load_rulebook(path)
    assert info.value.line == 9
    assert info.value.field == "rules[1].id"


def test_several_problems_are_all_listed_with_their_lines(tmp_path):
    path = write(
        tmp_path,
        "name: t\nrules:\n"
        + GOOD_RULE.replace("    title: A test rule\n", "").replace("[the good thing]", "[]"),
    )
    with pytest.raises(RulewiseError) as info:
        load_rulebook(path)
    text = str(info.value)
    assert "2 problems" in text
    assert "field 'rules[0].title'" in text and "line 7: field 'rules[0].allowed'" in text


@pytest.mark.parametrize(
    ("name", "text", "words", "line"),
    [
        ("bad.yaml", "name: t\nrules: [\n", "invalid YAML", 3),
        ("bad.json", '{"name": "t",\n "rules": [}', "invalid JSON", 2),
        ("empty.yaml", "name: t\nrules: []\n", "at least 1 item", 2),
        ("book.txt", "name: t", "must be a .yaml", None),
    ],
)
def test_unreadable_files_give_located_errors(tmp_path, name, text, words, line):
    with pytest.raises(RulewiseError, match=words) as info:
        load_rulebook(write(tmp_path, text, name))
    assert info.value.line == line


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RulewiseError, match="file not found") as info:
        load_rulebook(tmp_path / "nope.yaml")
    assert info.value.path.endswith("nope.yaml")


def test_programmatic_rulebook_rejects_duplicate_ids():
    rule = Rule(id="A-1", category="c", title="t", rule="r", disallowed=["x"], allowed=["y"])
    with pytest.raises(ValueError, match="duplicate rule id"):
        Rulebook(name="b", rules=[rule, rule])


def test_the_no_match_id_is_reserved():
    """The tool names GENERAL when no rule matches; a rule of that id would be read as "none"."""
    rule = Rule(id="GENERAL", category="c", title="t", rule="r", disallowed=["x"], allowed=["y"])
    with pytest.raises(ValueError, match="'GENERAL' is reserved"):
        Rulebook(name="b", rules=[rule])
