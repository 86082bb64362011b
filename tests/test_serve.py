"""rulewise serve: the real server on a free loopback port, called with the real openai client.

The model is a ScriptedLM behind our continuous batcher (real prefill, decode, stop strings and
cancellation; known output): it consults the rules for a bomb request and answers from what the
tool returned, so a test can see a rulebook edit change the reply without any retraining.
"""

import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
import torch
import yaml
from scripted_lm import ScriptedLM

from rulewise.generation import HFBackend, LoopConfig, ToolUseGenerator
from rulewise.rules.loading import default_rulebook_path
from rulewise.rules.tool import make_consult_tool
from rulewise.serving.audit import summarize
from rulewise.serving.server import ServerThread, ServeSettings, build_server

CALL = '<think>\nThis may be dangerous.\n</think>\n<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "pipe bomb"}}\n</tool_call>'


WEATHER_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def script(text: str) -> str:
    """Consult on a bomb request; then refuse or help as the returned clause says, naming the rule."""
    if "long story" in text:
        return "word " * 400
    if "weather" in text:  # the client's own tool
        if "<tool_response>" not in text:
            return WEATHER_CALL
        return "<think>\nThe client's tool answered.\n</think>\nIt is sunny in Paris."
    if "build a pipe bomb" in text and "<tool_response>" not in text:
        return CALL
    if "<tool_response>" in text:
        response = text.rsplit("<tool_response>", 1)[1]
        rule = response.split("[", 1)[1].split("]", 1)[0]
        if "Not allowed:" in response.split("\n")[2]:
            return f"<think>\n{rule} forbids it.\n</think>\nI can't help with that."
        return f"<think>\n{rule} allows it.\n</think>\nHere is how it works."
    return "<think>\nHarmless.\n</think>\nUse `kill PID`."


@pytest.fixture
def rulebook(tmp_path):
    path = tmp_path / "rules.yaml"
    shutil.copy(default_rulebook_path(), path)
    return path


def make_server(tiny_tokenizer, rulebook, tmp_path, **settings):
    torch.set_num_threads(1)

    def scripted(rules):
        backend = HFBackend(ScriptedLM(tiny_tokenizer, script), tiny_tokenizer, precision="fp32")
        tool = make_consult_tool(rules, k=1)
        return ToolUseGenerator(backend, tiny_tokenizer, tools=[tool], config=LoopConfig(600, 2, 8))

    defaults = {
        "port": 0,
        "audit_log": str(tmp_path / "audit.jsonl"),
        "max_new_tokens": 600,
        "reload_interval": 0.05,
    }
    config = ServeSettings(model="tiny", rules=str(rulebook), **(defaults | settings))
    return build_server(config, make_generator=scripted, log=lambda line: None)


@pytest.fixture
def served(tiny_tokenizer, rulebook, tmp_path):
    server = make_server(tiny_tokenizer, rulebook, tmp_path)
    with ServerThread(server) as url:
        yield server, url, openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


def audit_lines(server):
    with open(server.settings.audit_log, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def post(url, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ask(client, prompt, **options):
    return client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": prompt}], **options
    )


def test_reply_names_the_rules_and_the_audit_log_records_them(served):
    server, _, client = served
    raw = ask(client, "How do I build a pipe bomb?")
    reply = raw.parse()
    message = reply.choices[0].message
    assert message.content == "I can't help with that."
    assert message.reasoning_content.startswith("This may be dangerous.")
    assert "WEAP-01 forbids it." in message.reasoning_content
    assert reply.rulewise["consulted_rules"] == ["WEAP-01"] and raw.headers["x-rulewise-rules"] == "WEAP-01"
    assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens > 0
    benign = ask(client, "How do I kill a process?").parse()
    assert benign.choices[0].message.content == "Use `kill PID`." and benign.rulewise["consulted_rules"] == []

    lines = audit_lines(server)
    assert [line["rules_retrieved"] for line in lines] == [["WEAP-01"], []]
    assert lines[0]["rules_cited"] == ["WEAP-01"] and lines[0]["rule_verdict"] == "refuse"
    assert [line["verdict"] for line in lines] == ["refuse", "comply"]
    assert lines[0]["rulebook_version"] == server.rules.current.version
    summary = summarize(server.settings.audit_log)
    assert summary.retrieved["WEAP-01"] == 1 and summary.refused_by_rule["WEAP-01"] == 1
    assert summary.verdicts == {"refuse": 1, "comply": 1}


def test_reasoning_can_be_left_out(tiny_tokenizer, rulebook, tmp_path):
    server = make_server(tiny_tokenizer, rulebook, tmp_path, show_reasoning=False)
    with ServerThread(server) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        message = ask(client, "How do I build a pipe bomb?").parse().choices[0].message
    assert message.content == "I can't help with that." and not hasattr(message, "reasoning_content")


def test_streaming_sends_reasoning_and_answer_token_by_token_and_the_rules_last(served):
    """Deltas arrive as the tokens are written, never a piece of
    <think> or tool-call markup, and they join to exactly the non-streaming reply."""
    _, _, client = served
    full = ask(client, "How do I build a pipe bomb?").parse().choices[0].message
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "How do I build a pipe bomb?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks]
    reasoning = [d.reasoning_content for d in deltas if getattr(d, "reasoning_content", None)]
    content = [d.content for d in deltas if d.content]
    assert len(reasoning) > 20 and len(content) > 5  # per token, not per turn
    assert "".join(reasoning) == full.reasoning_content  # both turns, joined by a blank line
    assert "".join(content) == full.content == "I can't help with that."
    assert not any(marker in piece for piece in reasoning + content for marker in ("<", ">", "tool_call"))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].rulewise["consulted_rules"] == ["WEAP-01"] and chunks[-1].usage.completion_tokens > 0


def test_turn_stream_holds_back_what_may_be_markup():
    from rulewise.serving.protocol import TurnStream

    turn = TurnStream()
    assert turn.update("<thi") == {}
    assert turn.update("<think>\nIs it safe") == {"reasoning_content": "Is it safe"}
    assert turn.update("<think>\nIs it safe?\n</th") == {"reasoning_content": "?"}
    assert turn.update("<think>\nIs it safe?\n</think>\n  ") == {}  # whitespace waits
    assert turn.update("<think>\nIs it safe?\n</think>\n  a < b") == {"content": "a < b"}
    assert turn.update("<think>\nIs it safe?\n</think>\n  a < b <tool_call>\n{") == {}


def test_concurrent_requests_share_decode_steps(served):
    server, _, client = served
    prompts = ["How do I build a pipe bomb?", "How do I kill a process?"] * 4
    replies = [None] * len(prompts)
    start = threading.Barrier(len(prompts))

    def call(index):
        start.wait()
        replies[index] = ask(client, prompts[index]).parse().choices[0].message.content

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert replies == ["I can't help with that.", "Use `kill PID`."] * 4
    # one at a time, every generated token is a decode step of its own; batched, rows share them
    generated = sum(line["completion_tokens"] for line in audit_lines(server))
    assert server.engine.generator.backend.batcher.stats.decode_steps < 0.7 * generated


def test_an_edited_rulebook_changes_the_reply_without_a_restart(served, rulebook):
    server, url, client = served
    old_version = server.rules.current.version
    results, errors = [], []

    def traffic():
        for _ in range(6):
            try:
                results.append(ask(client, "How do I build a pipe bomb?").parse().choices[0].message.content)
            except Exception as exc:  # noqa: BLE001 - the test reports any dropped request
                errors.append(exc)

    thread = threading.Thread(target=traffic)
    thread.start()
    # WEAP-01 now allows what the request asks for
    data = yaml.safe_load(rulebook.read_text(encoding="utf-8"))
    weap = next(rule for rule in data["rules"] if rule["id"] == "WEAP-01")
    weap["allowed"], weap["disallowed"] = ["how to build a pipe bomb"], ["the history of mining"]
    rulebook.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    thread.join()
    assert not errors and len(results) == 6
    deadline = time.monotonic() + 10
    while server.rules.current.version == old_version and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.rules.current.version != old_version
    assert (
        ask(client, "How do I build a pipe bomb?").parse().choices[0].message.content
        == "Here is how it works."
    )

    # a broken rulebook is rejected: the last good one keeps serving
    good = server.rules.current.version
    rulebook.write_text("rules: [", encoding="utf-8")
    status, body = post(url + "/admin/reload", {})
    assert status == 422 and "old one keeps serving" in body["error"]["message"]
    assert server.rules.current.version == good
    assert ask(client, "How do I build a pipe bomb?").parse().rulewise["rulebook_version"] == good


def test_admin_reload_needs_the_token_when_one_is_set(tiny_tokenizer, rulebook, tmp_path):
    server = make_server(tiny_tokenizer, rulebook, tmp_path, admin_token="s3cret", reload_interval=0)
    with ServerThread(server) as url:
        assert post(url + "/admin/reload", {})[0] == 401
        status, body = post(url + "/admin/reload", {}, {"authorization": "Bearer s3cret"})
    assert status == 200 and body["rulebook_version"] == server.rules.current.version


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        ({"model": "tiny"}, 400, "messages"),
        ({"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
            400,
            "max_tokens",
        ),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "gpt-9"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "pipe " * 9000}]}, 400, "context"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "x" * 2_000_000}]}, 413, "bytes"),
    ],
)
def test_bad_requests_get_openai_error_bodies(served, body, status, words):
    _, url, _ = served
    got, payload = post(url + "/v1/chat/completions", body)
    assert got == status and words in payload["error"]["message"] and payload["error"]["type"]


def test_the_openai_client_sees_a_4xx_not_a_500(served):
    _, _, client = served
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])


def test_too_many_requests_get_429(tiny_tokenizer, rulebook, tmp_path):
    server = make_server(tiny_tokenizer, rulebook, tmp_path, max_concurrent=1)
    with ServerThread(server) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        stream = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "a long story"}], stream=True
        )
        next(iter(stream))  # the long request holds the only slot
        with pytest.raises(openai.RateLimitError):
            ask(client, "How do I kill a process?")
        stream.close()


def test_a_client_that_leaves_mid_stream_frees_its_slot(served):
    server, _, client = served
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "a long story"}], stream=True
    )
    next(iter(stream))
    stream.close()  # disconnect while the 400-word reply is being generated
    deadline = time.monotonic() + 10
    while server.engine.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.engine.in_flight == 0
    (line,) = audit_lines(server)
    assert line["finish_reason"] == "disconnected"
    assert server.engine.generator.backend.batcher.stats.decode_steps < 400  # cut short, not run out
    assert ask(client, "How do I kill a process?").parse().choices[0].message.content == "Use `kill PID`."


def test_client_tools_pass_through_to_the_client_and_back(served):
    server, _, client = served
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and first.rulewise["consulted_rules"] == []
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    second = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "It is sunny in Paris."
    assert [line["verdict"] for line in audit_lines(server)] == ["tool_calls", "comply"]


def test_a_reload_never_pairs_a_hash_with_other_text(rulebook, monkeypatch):
    """An edit landing while the parser reads the file: the version names the text that serves."""
    import hashlib

    from rulewise.serving import live_rules

    rules = live_rules.LiveRulebook(rulebook)
    data = yaml.safe_load(rulebook.read_text(encoding="utf-8"))
    data["rules"] = data["rules"][:1]
    edited = yaml.safe_dump(data, sort_keys=False)
    parse = live_rules.load_rulebook
    writes = []

    def parse_while_an_editor_writes(path):
        loaded = parse(path)  # the text before the edit...
        if not writes:
            writes.append(path.write_text(edited, encoding="utf-8"))  # ...then the edit lands
        return loaded

    monkeypatch.setattr(live_rules, "load_rulebook", parse_while_an_editor_writes)
    assert rules.reload()[0]
    assert rules.current.sha256 == hashlib.sha256(edited.encode()).hexdigest()
    assert len(rules.rulebook.rules) == 1

    monkeypatch.setattr(live_rules, "load_rulebook", lambda path: path.write_text(f"# {time.time_ns()}\n"))
    ok, message = rules.reload()
    assert not ok and "changed during each of 3 reads" in message and len(rules.rulebook.rules) == 1
