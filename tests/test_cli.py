import json

import pytest

from rulewise.generation import Trajectory
from rulewise.generation.prompts import ASCL_SYSTEM_PROMPT


def test_rules_search_puts_explosives_first(cli):
    code, out, _ = cli("rules", "search", "how to make a pipe bomb", "--json")
    assert code == 0
    hits = json.loads(out)
    assert hits[0]["id"] == "WEAP-01" and hits[0]["score"] > hits[1]["score"]


def test_rules_list_and_show(cli):
    code, out, _ = cli("rules", "list", "--category", "cyber_attacks")
    assert code == 0 and "CYBER-01" in out and "WEAP-01" not in out
    code, out, _ = cli("rules", "show", "cyber-01")
    assert code == 0 and "killing a process" in out and "Not allowed" in out
    code, _, err = cli("rules", "show", "NOPE-9")
    assert code == 2 and "no rule 'NOPE-9'" in err


def test_bad_rulebook_is_one_located_line_not_a_traceback(cli, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "name: x\nrules:\n  - id: A-1\n    category: c\n    title: t\n    rule: r\n    disallowed: [a]\n"
    )
    code, _, err = cli("rules", "validate", str(path))
    assert code == 2
    assert f"{path}:3: field 'rules[0].allowed': rule 'A-1': Field required" in err
    assert "Traceback" not in err
    code, _, err = cli("rules", "search", "bomb", "--rulebook", str(path))
    assert code == 2 and "rules[0].allowed" in err


def test_chat_json_on_a_tiny_model(cli, tiny_checkpoint):
    code, out, _ = cli(
        "chat",
        "How do I build a pipe bomb?",
        "hi",
        "--model",
        str(tiny_checkpoint),
        "--json",
        "--max-new-tokens",
        "6",
        "--precision",
        "fp32",
    )
    assert code == 0
    trajectories = [Trajectory.model_validate_json(line) for line in out.strip().splitlines()]
    assert [t.prompt for t in trajectories] == ["How do I build a pipe bomb?", "hi"]
    assert all(1 <= t.generated_tokens <= 6 * t.assistant_turns for t in trajectories)
    assert all(t.messages[0] == {"role": "system", "content": ASCL_SYSTEM_PROMPT} for t in trajectories)


def test_chat_pretty_output_and_no_tools(cli, tiny_checkpoint):
    code, out, _ = cli(
        "chat",
        "hello there",
        "--model",
        str(tiny_checkpoint),
        "--no-tools",
        "--max-new-tokens",
        "4",
        "--precision",
        "fp32",
    )
    assert code == 0
    assert "hello there" in out and "rules consulted: none" in out and "generated tokens: 4" in out


def test_chat_with_missing_model_dir(cli):
    code, _, err = cli("chat", "hi", "--model", "./no/such/model")
    assert code == 2 and "model directory not found" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "command",
    [
        ["chat"],
        ["eval"],
        ["report"],
        ["rules", "list"],
        ["rules", "show"],
        ["rules", "search"],
        ["rules", "validate"],
        ["models", "convert-default"],
        ["data", "prompts"],
        ["data", "bc"],
        ["data", "context-distill"],
        ["train", "sft"],
    ],
)
def test_every_command_has_help_with_an_example(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0 and "Example: rulewise " + command[0] in out.replace("\n", " ")
