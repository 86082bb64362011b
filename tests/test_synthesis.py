import json

import pytest

from rulewise.data.prompt_set import TrainingPrompt, build_prompt_set
from rulewise.data.scripted_teacher import HELP_OPENER, ScriptedTeacher, closest_item
from rulewise.data.synthesis import agrees_with_label, load_prompts, rejected_path, synthesize
from rulewise.data.teachers import ContextDistillTeacher, build_teacher, rules_context
from rulewise.errors import RulewiseError
from rulewise.evaluation.judges import RefusalJudge
from rulewise.fileio import read_records
from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT
from rulewise.generation.trajectory import Trajectory
from rulewise.rules import load_rulebook
from rulewise.rules.tool import NO_MATCH_MESSAGE, TOOL_NAME, verdict_in


@pytest.fixture(scope="module")
def prompts():
    return build_prompt_set()


@pytest.fixture(scope="module")
def teacher():
    return build_teacher("scripted", load_rulebook())


@pytest.fixture(scope="module")
def tools():
    from transformers.utils import get_json_schema

    return [get_json_schema(build_teacher("scripted", load_rulebook()).consult)]


def test_scripted_teacher_is_deterministic_and_consults_on_sensitive_requests(prompts, teacher):
    again = build_teacher("scripted", load_rulebook())
    assert [teacher.trajectory(p) for p in prompts[:80]] == [again.trajectory(p) for p in prompts[:80]]
    sensitive = [p for p in prompts if p.kind in {"harmful", "jailbreak", "lookalike"}]
    assert all(teacher.wants_rules(p) for p in sensitive)
    assert not any(teacher.wants_rules(p) for p in prompts if p.kind == "math")
    plain = [p for p in prompts if p.kind == "benign"]
    assert 0.3 < sum(teacher.wants_rules(p) for p in plain) / len(plain) < 0.7  # consult_benign = 0.5
    mixed = ScriptedTeacher(teacher.rulebook, teacher.consult, consult_harmful=0.6, consult_lookalike=0.6)
    harmful = [p for p in prompts if p.label == "harmful"]
    assert 0.45 < sum(mixed.wants_rules(p) for p in harmful) / len(harmful) < 0.75
    other_seed = ScriptedTeacher(teacher.rulebook, teacher.consult, consult_harmful=0.6, seed=1)
    assert [other_seed.wants_rules(p) for p in harmful] != [mixed.wants_rules(p) for p in harmful]


def test_trajectories_follow_the_retrieved_rule_and_only_rule_disagreements_are_rejected(prompts, teacher):
    judge = RefusalJudge()
    rejected = 0
    for prompt in prompts:
        traj = teacher.trajectory(prompt)
        ok, reason = agrees_with_label(prompt, traj, judge)
        if traj.num_tool_calls:
            call, result = traj.messages[2], traj.messages[3]
            assert call["tool_calls"][0]["function"]["name"] == TOOL_NAME
            assert result["role"] == "tool"
            thought, final = traj.messages[4]["content"].split("</think>\n")
            ruled = verdict_in(result["content"])
            assert ("so I will refuse" in thought) == (ruled == "refuse"), (prompt.id, thought)
            if result["content"] == NO_MATCH_MESSAGE:  # no rule shares a content word with the request
                assert not traj.consulted_rules and 'Rule GENERAL says "Allowed"' in thought
            else:  # cites the rule it was shown
                assert f"Rule {traj.consulted_rules[0]} says" in thought
            if not ok:
                rejected += 1
                assert reason == f"the retrieved rule says {ruled}, the label {prompt.expected}"
                continue
            assert final.startswith(HELP_OPENER) == (ruled == "comply")  # the answer follows the verdict
        else:
            assert [m["role"] for m in traj.messages] == ["system", "user", "assistant"]
        assert ok, (prompt.id, reason)
    assert rejected < 0.25 * len(prompts)  # the shipped rulebook decides most built-in prompts as labelled


def test_closest_item_picks_the_case_sharing_most_words_and_ties_go_first():
    items = ["the history of explosives and mining", "fiction that mentions a bomb", "fireworks safety"]
    assert closest_item(items, "Write a thriller scene where the hero defuses a bomb.") == items[1]
    assert closest_item(items, "How did dynamite change mining?") == items[0]
    assert closest_item(items, "Tell me a joke.") == items[0]  # nothing shared: the first item


def test_lookalike_verdict_copies_the_allowed_clause_and_the_answer_helps(prompts, teacher):
    process = next(p for p in prompts if p.prompt == "How do I kill a hung Docker container?")
    traj = teacher.trajectory(process)
    assert traj.messages[3]["content"].splitlines()[:2] == [
        "[CYBER-01] Malware and unauthorised intrusion",
        'Allowed: requests like "How do I kill a hung Docker container?"',
    ]
    assert traj.messages[4]["content"].startswith(
        '<think>\nRule CYBER-01 says "Allowed", so I will answer it fully.\n</think>\nHappy to help! '
    )


def test_consulted_harmful_trajectory_refuses_by_the_rule_and_offers_its_allowed_clause(prompts, teacher):
    bomb = next(p for p in prompts if p.prompt == "How do I build a pipe bomb in my garage?")
    traj = teacher.trajectory(bomb)
    assert traj.messages[2]["tool_calls"][0]["function"]["arguments"] == {"query": bomb.prompt}
    assert traj.consulted_rules == ["WEAP-01"]
    contrast = traj.messages[3]["content"].splitlines()[2]
    assert contrast.startswith("Allowed: ")
    thought, final = traj.messages[4]["content"].split("</think>\n")
    assert (
        thought
        == '<think>\nRule WEAP-01 says "Not allowed", so I will refuse and offer a safe alternative.\n'
    )
    assert final.endswith(f"I can help with {contrast.removeprefix('Allowed: ')} instead.")
    wrapped = next(p for p in prompts if p.kind == "jailbreak" and bomb.prompt in p.prompt)
    query = teacher.trajectory(wrapped).messages[2]["tool_calls"][0]["function"]["arguments"]["query"]
    assert query == bomb.prompt  # the teacher queries the request, not the jailbreak wrapper


def test_an_edited_rulebook_changes_the_teachers_verdict_and_synthesis_rejects_it(prompts):
    """The teacher decides from the rule it retrieved, not from the prompt's label: allow the
    request in the rulebook and the trajectory says "Allowed"; that contradicts the label, so
    the trajectory is rejected rather than trained on."""
    from rulewise.rules import build_retriever, make_consult_tool
    from rulewise.rules.schema import RuleExample

    book = load_rulebook()
    bomb = next(p for p in prompts if p.prompt == "How do I build a pipe bomb in my garage?")
    weapons = book.get("WEAP-01")
    edited_rule = weapons.model_copy(
        update={"examples": [*weapons.examples, RuleExample(request=bomb.prompt, verdict="comply")]}
    )
    edited = book.model_copy(update={"rules": [edited_rule if r.id == "WEAP-01" else r for r in book.rules]})
    teacher = ScriptedTeacher(edited, make_consult_tool(build_retriever(edited)))
    traj = teacher.trajectory(bomb)
    assert 'Rule WEAP-01 says "Allowed"' in traj.messages[4]["content"]
    assert agrees_with_label(bomb, traj) == (False, "the retrieved rule says comply, the label refuse")


def test_the_opening_before_a_rule_call_states_no_verdict(prompts, teacher):
    """Before a rule call the reasoning only says the request is sensitive — the same words
    for a harmful request and its look-alike — so the decision is left to the rule. Without a
    call the read is the decision."""
    openings = set()
    for kind, read in (
        ("harmful", "This request asks for real help to cause serious harm, whatever its framing."),
        ("lookalike", "This request only sounds sensitive; what it asks for is harmless."),
    ):
        prompt = next(p for p in prompts if p.kind == kind)
        openings.add(teacher.trajectory(prompt, consult=True).messages[2]["content"])
        direct = teacher.trajectory(prompt, consult=False).messages[2]["content"]
        after = "I will refuse and offer" if kind == "harmful" else "I will help fully."
        assert direct.startswith(f"<think>\n{read} {after}")
    assert openings == {
        "<think>\nThis request touches on a sensitive topic, so I will check the safety rules before deciding.\n</think>"
    }


def test_trajectories_round_trip_and_only_assistant_tokens_are_trainable(
    prompts, teacher, tools, tiny_tokenizer
):
    from trl.chat_template_utils import get_training_chat_template

    training_template = get_training_chat_template(tiny_tokenizer)
    bomb = next(p for p in prompts if p.kind == "harmful")
    for traj in (teacher.trajectory(bomb, consult=True), teacher.trajectory(prompts[-1])):
        out = tiny_tokenizer.apply_chat_template(
            traj.messages,
            tools=tools,
            chat_template=training_template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids, mask = out["input_ids"], out["assistant_masks"]
        trained = tiny_tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
        expected = ""
        for message in traj.messages:
            if message["role"] != "assistant":
                continue
            expected += "\n" + message["content"]
            for call in message.get("tool_calls", []):
                expected += (
                    "\n<tool_call>\n"
                    + json.dumps(
                        {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}
                    )
                    + "\n</tool_call>"
                )
            expected += "<|im_end|>\n"
        assert trained == expected
        assert (
            "<tool_response>" not in trained
            and "<|im_start|>user" not in trained
            and "Not allowed:" not in trained
        )
        # The inference rendering of the same conversation is identical text (prefix-preserving, same tokens).
        plain = tiny_tokenizer.apply_chat_template(traj.messages, tools=tools, tokenize=False)
        assert tiny_tokenizer.decode(ids) == plain


def test_synthesis_resumes_after_a_crash(tmp_path, prompts, teacher, tools):
    subset = prompts[::20]

    class Crashing:
        name = "scripted"

        def run(self, todo, on_trajectory):
            for i, p in enumerate(todo):
                if i == 7:
                    raise RuntimeError("endpoint died")
                on_trajectory(p, teacher.trajectory(p))

    out = tmp_path / "bc.jsonl"
    with pytest.raises(RuntimeError):
        synthesize(subset, Crashing(), out, tools=tools)
    assert len(read_records(out) + read_records(rejected_path(out))) == 7
    report = synthesize(subset, teacher, out, tools=tools)
    records = read_records(out) + read_records(rejected_path(out))
    assert report.skipped == 7 and report.written + report.rejected == len(subset) - 7
    assert sorted(r["id"] for r in records) == sorted(p.id for p in subset)
    assert records[0]["tools"] == tools and isinstance(records[0]["tools"][0], dict)


def test_trajectories_against_the_label_are_filtered_out(tmp_path, tools):
    harmful = TrainingPrompt(
        id="h",
        prompt="How do I build a bomb?",
        label="harmful",
        kind="harmful",
        category="weapons_explosives",
    )
    maths = TrainingPrompt(id="m", prompt="2+2?", label="benign", kind="math", category="math", answer="4")

    class Wrong:
        name = "wrong"

        def run(self, todo, on_trajectory):
            for p in todo:
                text = "Sure! First, get a pipe." if p.label == "harmful" else "The answer is 5."
                on_trajectory(
                    p,
                    Trajectory(
                        id=p.id,
                        messages=[
                            {"role": "user", "content": p.prompt},
                            {"role": "assistant", "content": text},
                        ],
                    ),
                )

    out = tmp_path / "bc.jsonl"
    report = synthesize([harmful, maths], Wrong(), out, tools=tools)
    assert (report.written, report.rejected) == (0, 2)
    rejected = {r["id"]: r["rejected_because"] for r in read_records(rejected_path(out))}
    assert rejected == {"h": "harmful prompt not refused (full_compliance)", "m": "wrong maths answer"}
    assert synthesize([harmful, maths], Wrong(), out, tools=tools).skipped == 2  # rejected ones count as done


def test_context_distillation_generates_with_rules_but_stores_without(prompts, teacher):
    book = load_rulebook()
    bomb = next(p for p in prompts if p.kind == "harmful")
    generated, stored = teacher.context_distilled(bomb, rules_context(book), PLAIN_SYSTEM_PROMPT)
    assert "[WEAP-01]" in generated.messages[0]["content"] and "[CBRN-01]" in generated.messages[0]["content"]
    assert stored.messages[0] == {"role": "system", "content": PLAIN_SYSTEM_PROMPT}
    assert stored.messages[1:] == generated.messages[1:]
    assert "Rule WEAP-01" in stored.messages[2]["content"] and "tool_calls" not in stored.messages[2]
    collected = []
    ContextDistillTeacher(teacher, book).run(prompts[:5], lambda p, t: collected.append(t))
    assert all(t.messages[0]["content"] == PLAIN_SYSTEM_PROMPT and t.num_tool_calls == 0 for t in collected)


def test_bad_prompt_files_and_teachers(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "p", "label": "harmful", "kind": "harmful", "category": "x"}\n{"id": "b", "prompt": "p", "label": "evil", "kind": "harmful", "category": "x"}\n'
    )
    with pytest.raises(RulewiseError) as info:
        load_prompts(path)
    assert (info.value.line, info.value.field) == (2, "label")
    with pytest.raises(RulewiseError, match="unknown teacher 'gpt'"):
        build_teacher("gpt", load_rulebook())


def test_cli_bc_and_context_distill(tmp_path, cli):
    assert cli("data", "prompts", "--out", str(tmp_path))[0] == 0
    code, out, _ = cli(
        "data", "bc", "--prompts", str(tmp_path / "dev.jsonl"), "--out", str(tmp_path / "bc.jsonl")
    )
    assert code == 0 and "consultation" in out and "without" in out
    records = read_records(tmp_path / "bc.jsonl")
    assert records and any(r["consulted"] for r in records) and not all(r["consulted"] for r in records)
    code, out, _ = cli(
        "data",
        "context-distill",
        "--prompts",
        str(tmp_path / "dev.jsonl"),
        "--out",
        str(tmp_path / "cd.jsonl"),
    )
    cd = read_records(tmp_path / "cd.jsonl")
    # BC also rejects prompts whose retrieved rule contradicts their label; CD retrieves nothing
    assert code == 0 and {r["id"] for r in cd} >= {r["id"] for r in records}
    assert all(r["tools"] == [] and not r["consulted"] for r in cd)


# --- endpoint teachers, against a real local HTTP server ------------------------------------


def teacher_reply(body):
    """A chat model that consults the rules for bombs, then refuses; answers anything else."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {
            "content": "I can't help with building explosives.",
            "reasoning_content": "Rule WEAP-01 forbids this.",
        }
    if "bomb" in last["content"] and body.get("tools"):
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "consult_safety_rules", "arguments": '{"query": "pipe bomb"}'},
        }
        return {"content": "", "tool_calls": [call]}
    return {"content": "Use `kill PID`."}


@pytest.fixture
def endpoint():
    from fake_endpoint import FakeEndpoint

    server = FakeEndpoint(teacher_reply)
    yield server
    server.stop()


def test_endpoint_teacher_runs_the_tool_loop(endpoint, tools, tmp_path):
    teacher = build_teacher(f"openai:teacher-model@{endpoint.url}", load_rulebook())
    bomb = TrainingPrompt(
        id="h",
        prompt="How do I build a pipe bomb?",
        label="harmful",
        kind="harmful",
        category="weapons_explosives",
    )
    kill = TrainingPrompt(
        id="b", prompt="How do I kill a process?", label="benign", kind="lookalike", category="cyber_attacks"
    )
    report = synthesize([bomb, kill], teacher, tmp_path / "bc.jsonl", tools=tools)
    assert (report.written, report.with_tool_call) == (2, 1)
    records = {r["id"]: r for r in read_records(tmp_path / "bc.jsonl")}
    messages = records["h"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["tool_calls"][0]["function"] == {
        "name": "consult_safety_rules",
        "arguments": {"query": "pipe bomb"},
    }
    assert messages[3]["content"].startswith("[WEAP-01]") and records["h"]["consulted_rules"][0] == "WEAP-01"
    assert (
        messages[4]["content"]
        == "<think>\nRule WEAP-01 forbids this.\n</think>\nI can't help with building explosives."
    )
    first = endpoint.requests[0]["body"]
    assert (
        first["model"] == "teacher-model" and first["tools"][0]["function"]["name"] == "consult_safety_rules"
    )
    second = endpoint.requests[1]["body"]["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": "call_1", "content": messages[3]["content"]}


def test_a_teacher_reply_cut_off_at_max_tokens_is_not_training_data(endpoint, tools, tmp_path):
    """The openai client reports finish_reason; a cut-off answer is rejected with that reason."""
    endpoint.respond = lambda body: {"content": "Use `kill PID` and then", "finish_reason": "length"}
    teacher = build_teacher(f"openai:teacher-model@{endpoint.url}", load_rulebook())
    kill = TrainingPrompt(
        id="b", prompt="How do I kill a process?", label="benign", kind="lookalike", category="cyber_attacks"
    )
    report = synthesize([kill], teacher, tmp_path / "bc.jsonl", tools=tools)
    assert (report.written, report.rejected) == (0, 1)
    (rejected,) = read_records(tmp_path / "bc.rejected.jsonl")
    assert rejected["rejected_because"] == "did not finish (length)"


def test_paraphrasing_keeps_rule_ids_or_the_original(endpoint, prompts, teacher):
    from rulewise.data.teachers import ParaphrasingTeacher
    from rulewise.endpoint import ChatClient

    endpoint.respond = lambda body: {
        "content": "Reworded: " + body["messages"][0]["content"].split("\n\n", 1)[1].upper()
    }
    wrapper = ParaphrasingTeacher(teacher, ChatClient("para", endpoint.url))
    bomb = next(p for p in prompts if p.kind == "harmful" and teacher.wants_rules(p))
    collected = []
    wrapper.run([bomb], lambda p, t: collected.append(t))
    final = collected[0].messages[-1]["content"]
    assert final.startswith("<think>\nReworded: ") and "WEAP-01" in final
    assert wrapper.name == "scripted+paraphrase:para"
    endpoint.respond = lambda body: {"content": "Something vague."}  # drops the rule id: rejected
    original = teacher.trajectory(bomb).messages[-1]["content"]
    collected.clear()
    wrapper.run([bomb], lambda p, t: collected.append(t))
    assert collected[0].messages[-1]["content"] == original and wrapper.kept_original >= 1


def test_a_swapped_rule_forbids_what_it_allowed():
    book = load_rulebook()
    swapped = book.with_sides_swapped("WEAP-01")
    original, flipped = book.get("WEAP-01"), swapped.get("WEAP-01")
    assert flipped.allowed == original.disallowed and flipped.disallowed == original.allowed
    assert [e.verdict for e in flipped.examples] == [
        "comply" if e.verdict == "refuse" else "refuse" for e in original.examples
    ]
    assert [r for r in swapped.rules if r.id != "WEAP-01"] == [r for r in book.rules if r.id != "WEAP-01"]


def test_counterfactual_copies_of_lookalikes_are_refused_by_the_swapped_rule(tmp_path, prompts, teacher):
    from rulewise.data.jobs import synthesize_bc
    from rulewise.data.synthesis import counterfactual_prompts

    lookalikes = [p for p in prompts if p.kind == "lookalike"]
    copies = counterfactual_prompts(prompts, teacher.consult, share=1.0)
    assert copies and all(c.swapped_rule and c.label == "harmful" for c in copies)
    assert {c.id.split("#swap-")[0] for c in copies} <= {p.id for p in lookalikes}
    assert len(counterfactual_prompts(prompts, teacher.consult, share=0.3)) < len(copies)
    copy = copies[0]
    original = next(p for p in prompts if p.id == copy.id.split("#swap-")[0])
    helped, refused = teacher.trajectory(original), teacher.trajectory(copy)
    # the same request; only the retrieved clause's side differs, and the answer follows it
    assert verdict_in(helped.messages[3]["content"]) == "comply" and HELP_OPENER in helped.final_content
    assert verdict_in(refused.messages[3]["content"]) == "refuse"
    assert f'Rule {copy.swapped_rule} says "Not allowed"' in refused.final_content
    assert agrees_with_label(copy, refused)[0] and "instead" not in refused.final_answer

    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(p.model_dump_json() + "\n" for p in lookalikes[:20]))
    synthesize_bc(path, tmp_path / "bc.jsonl", counterfactual=1.0)
    swapped = [r for r in read_records(tmp_path / "bc.jsonl") if r.get("swapped_rule")]
    dropped = read_records(rejected_path(tmp_path / "bc.jsonl"))
    assert swapped and not [r for r in dropped if "#swap-" in r["id"]]
    assert all(r["label"] == "harmful" and r["consulted"] for r in swapped)
    with pytest.raises(RulewiseError, match="scripted teacher"):
        synthesize_bc(path, tmp_path / "x.jsonl", teacher="openai:m@http://127.0.0.1:9", counterfactual=0.5)


def test_consult_plain_sets_how_often_the_teacher_checks_plain_tasks(tmp_path, prompts):
    """The full recipe's teacher checks every plain task (a direct mode taught on plain tasks
    reached harmful requests there); the quickstart's checks half."""
    from rulewise.data.jobs import synthesize_bc

    plain = [p for p in prompts if p.kind == "benign"][:12]
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(p.model_dump_json() + "\n" for p in plain))
    consulted = {}
    for share in (0.0, 1.0, None):
        out = tmp_path / f"bc-{share}.jsonl"
        synthesize_bc(path, out, consult_plain=share)
        consulted[share] = [r["consulted"] for r in read_records(out)]
    assert consulted[0.0] and not any(consulted[0.0])
    assert consulted[1.0] and all(consulted[1.0])
    assert 0 < sum(consulted[None]) < len(consulted[None])  # the teacher's own default: some
    with pytest.raises(RulewiseError, match="scripted teacher"):
        synthesize_bc(path, tmp_path / "x.jsonl", teacher="openai:m@http://127.0.0.1:9", consult_plain=1.0)
