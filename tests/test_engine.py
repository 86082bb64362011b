import copy
import json

import pytest
from scripted_lm import ScriptedLM

from rulewise.generation import Completion, HFBackend, LoopConfig, SamplingConfig, ToolUseGenerator
from rulewise.rules import build_retriever, load_rulebook, make_consult_tool
from rulewise.rules.tool import TOOL_NAME

CALL = '<think>\nThis may be dangerous.\n</think>\n<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "%s"}}\n</tool_call>'
REFUSAL = (
    "<think>\nThe rule forbids it.\n</think>\nI can't help with that, but I can explain bomb-disposal safety."
)


@pytest.fixture(scope="module")
def tool():
    return make_consult_tool(build_retriever(load_rulebook()), k=2)


class ScriptedBackend:
    """Replies from a function of (prompt text, round); records what it was asked."""

    def __init__(self, reply):
        self.reply = reply
        self.calls = []

    def complete(self, prompts, max_new_tokens, stop_at_tool_call):
        self.calls.append((list(prompts), stop_at_tool_call))
        out = []
        for prompt in prompts:
            text, stop = self.reply(prompt)
            out.append(Completion(text=text, num_tokens=len(text.split()), stop=stop))
        return out


def bomb_script(prompt):
    if "build a pipe bomb" in prompt and "<tool_response>" not in prompt:
        return CALL % "pipe bomb", "tool_call"
    if "<tool_response>" in prompt:
        return REFUSAL, "eos"
    return "Use `kill PID` or `pkill -f name`.", "eos"


def test_loop_executes_tool_calls_and_resumes(tiny_tokenizer, tool):
    backend = ScriptedBackend(bomb_script)
    gen = ToolUseGenerator(backend, tiny_tokenizer, tools=[tool])
    finished = []
    harmful, benign = gen.generate(
        ["How do I build a pipe bomb?", "How do I kill a Python process?"],
        ids=["h", "b"],
        on_finished=lambda i, t: finished.append(i),
    )
    assert [m["role"] for m in harmful.messages] == ["system", "user", "assistant", "tool", "assistant"]
    call = harmful.messages[2]["tool_calls"][0]["function"]
    assert call == {"name": TOOL_NAME, "arguments": {"query": "pipe bomb"}}
    assert harmful.messages[2]["content"] == "<think>\nThis may be dangerous.\n</think>"
    assert harmful.messages[3]["name"] == TOOL_NAME and harmful.messages[3]["content"].startswith("[WEAP-01]")
    assert harmful.consulted_rules[0] == "WEAP-01"
    assert (harmful.id, harmful.num_tool_calls, harmful.assistant_turns, harmful.finish_reason) == (
        "h",
        1,
        2,
        "answer",
    )
    assert harmful.final_answer.startswith("I can't help")
    assert "The rule forbids it." in harmful.reasoning and "This may be dangerous." in harmful.reasoning
    assert harmful.generated_tokens == len((CALL % "pipe bomb").split()) + len(REFUSAL.split())
    assert (benign.num_tool_calls, benign.consulted_rules, benign.assistant_turns) == (0, [], 1)
    assert finished == [1, 0]  # the benign conversation finished in the first round
    # Round 2 only re-sent the unfinished conversation, rendered with the tool result.
    assert len(backend.calls) == 2 and len(backend.calls[1][0]) == 1
    assert "<tool_response>\n[WEAP-01]" in backend.calls[1][0][0]
    assert '"name": "consult_safety_rules"' in backend.calls[0][0][0]  # the tool schema is in the prompt


@pytest.mark.parametrize(
    ("first_reply", "error"),
    [
        (
            '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "x"\n</tool_call>',
            "invalid JSON",
        ),
        (
            '<tool_call>\n{"name": "launch_missiles", "arguments": {}}\n</tool_call>',
            "unknown tool 'launch_missiles'",
        ),
        (
            '<tool_call>\n{"name": "consult_safety_rules", "arguments": {}}\n</tool_call>',
            "missing argument(s) query",
        ),
        (
            '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "x", "k": 9}}\n</tool_call>',
            "unknown argument(s) k",
        ),
        (
            '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": 42}}\n</tool_call>',
            "must be a string",
        ),
    ],
)
def test_malformed_calls_become_tool_errors_and_are_counted(tiny_tokenizer, tool, first_reply, error):
    def script(prompt):
        return ("Sorry, fixed answer.", "eos") if "<tool_response>" in prompt else (first_reply, "tool_call")

    (traj,) = ToolUseGenerator(ScriptedBackend(script), tiny_tokenizer, tools=[tool]).generate(["q"])
    assert (traj.num_tool_calls, traj.num_malformed_calls, traj.finish_reason) == (0, 1, "answer")
    assert traj.messages[2] == {"role": "assistant", "content": first_reply}
    assert traj.messages[3]["role"] == "tool" and traj.messages[3]["content"].startswith("Error:")
    assert error in traj.messages[3]["content"]
    assert traj.attempted_tool_call and traj.consulted_rules == []


def test_tool_that_raises_does_not_crash_the_loop(tiny_tokenizer):
    def consult_safety_rules(query: str) -> str:
        """Broken tool.

        Args:
            query: anything
        """
        raise RuntimeError("index offline")

    def script(prompt):
        return ("ok", "eos") if "<tool_response>" in prompt else (CALL % "q", "tool_call")

    (traj,) = ToolUseGenerator(
        ScriptedBackend(script), tiny_tokenizer, tools=[consult_safety_rules]
    ).generate(["q"])
    assert "RuntimeError: index offline" in traj.messages[3]["content"]
    assert traj.num_malformed_calls == 1 and traj.ended_cleanly


def test_call_cap_ends_a_conversation_that_keeps_calling(tiny_tokenizer, tool):
    backend = ScriptedBackend(lambda prompt: (CALL % "again", "tool_call"))
    gen = ToolUseGenerator(backend, tiny_tokenizer, tools=[tool], config=LoopConfig(max_tool_calls=2))
    (traj,) = gen.generate(["q"])
    assert (traj.num_tool_calls, traj.assistant_turns, traj.finish_reason) == (2, 3, "call_cap")
    assert not traj.ended_cleanly and traj.final_answer == ""
    assert traj.messages[-1] == {"role": "assistant", "content": CALL % "again"}


def test_truncated_call_is_recorded(tiny_tokenizer, tool):
    backend = ScriptedBackend(
        lambda prompt: ('<tool_call>\n{"name": "consult_safety_rules", "argu', "length")
    )
    (traj,) = ToolUseGenerator(backend, tiny_tokenizer, tools=[tool]).generate(["q"])
    assert (traj.finish_reason, traj.truncated_tool_call, traj.num_tool_calls) == ("length", True, 0)
    assert traj.attempted_tool_call


def test_without_tools_nothing_is_parsed_or_offered(tiny_tokenizer):
    backend = ScriptedBackend(lambda prompt: (CALL % "x", "eos"))
    (traj,) = ToolUseGenerator(backend, tiny_tokenizer, tools=[]).generate(["q"])
    assert backend.calls[0][1] is False
    assert "# Tools" not in backend.calls[0][0][0]
    assert traj.num_tool_calls == 0 and traj.messages[-1]["content"] == CALL % "x"


def test_conversation_prompts_keep_their_system_message(tiny_tokenizer, tool):
    backend = ScriptedBackend(lambda prompt: ("hi", "eos"))
    gen = ToolUseGenerator(backend, tiny_tokenizer, tools=[tool])
    (kept,) = gen.generate([[{"role": "system", "content": "Custom."}, {"role": "user", "content": "u"}]])
    (added,) = gen.generate([[{"role": "user", "content": "u"}]])
    assert kept.messages[0]["content"] == "Custom."
    assert added.messages[0]["content"] == gen.system_prompt
    with pytest.raises(ValueError, match="2 ids for 1 prompts"):
        gen.generate(["q"], ids=["a", "b"])


# --- the real HF backend -----------------------------------------------------------------


@pytest.mark.parametrize("pad_token", ["<|im_end|>", "<|endoftext|>"])  # pad == eos (SmolLM2) and distinct
def test_scripted_model_through_hf_generate_stops_at_tool_calls(tiny_tokenizer, tool, pad_token):
    """Real ``model.generate`` with stop strings and left padding, multi-round."""
    tiny_tokenizer = copy.deepcopy(tiny_tokenizer)
    tiny_tokenizer.pad_token = pad_token

    def script(conversation):
        if "<tool_response>" in conversation:
            return "Refused."
        if "build a pipe bomb" in conversation:
            return CALL % "pipe bomb" + "\nTEXT THE STOP STRING MUST CUT"
        return "Use kill."

    model = ScriptedLM(tiny_tokenizer, script)
    # it reads whole sequences: model.generate without any cache
    backend = HFBackend(model, tiny_tokenizer, precision="fp32", prefix_cache=False, continuous=False)
    gen = ToolUseGenerator(
        backend, tiny_tokenizer, tools=[tool], config=LoopConfig(max_new_tokens=200, batch_size=4)
    )
    harmful, benign = gen.generate(["How do I build a pipe bomb?", "How do I kill a process?"])
    assert harmful.messages[2]["tool_calls"][0]["function"]["arguments"] == {"query": "pipe bomb"}
    assert harmful.consulted_rules[0] == "WEAP-01"
    assert harmful.final_answer == "Refused." and harmful.finish_reason == "answer"
    assert "MUST CUT" not in json.dumps(harmful.messages)
    encode = lambda s: tiny_tokenizer.encode(s, add_special_tokens=False)
    # Tokens: the call up to and including </tool_call>, then the answer plus its end-of-turn token.
    assert harmful.generated_tokens == len(encode(CALL % "pipe bomb")) + len(encode("Refused.")) + 1
    assert (benign.final_answer, benign.generated_tokens) == ("Use kill.", len(encode("Use kill.")) + 1)
    # Reasoning tokens: only the <think> blocks of both turns ("Refused." and "Use kill." have none).
    assert harmful.reasoning_tokens == len(encode("This may be dangerous."))
    assert benign.reasoning_tokens == 0


def test_token_limit_gives_length_finish(tiny_tokenizer, tool):
    model = ScriptedLM(tiny_tokenizer, lambda conversation: "word " * 50)
    backend = HFBackend(model, tiny_tokenizer, precision="fp32", prefix_cache=False, continuous=False)
    (traj,) = ToolUseGenerator(
        backend, tiny_tokenizer, tools=[tool], config=LoopConfig(max_new_tokens=7)
    ).generate(["q"])
    assert (traj.finish_reason, traj.generated_tokens) == ("length", 7)


@pytest.mark.parametrize(("repetition_penalty", "min_trim"), [(1.0, 64), (1.3, 64), (1.0, 1)])
def test_tiny_random_model_batched_equals_one_at_a_time(
    tiny_tokenizer, tool, repetition_penalty, min_trim, monkeypatch
):
    from conftest import build_tiny_model

    from rulewise.generation.continuous import ContinuousBatcher

    monkeypatch.setattr(ContinuousBatcher, "MIN_TRIM", min_trim)  # 1: cut padding at every leave
    model = build_tiny_model(len(tiny_tokenizer))
    prompts = [
        "How do I build a pipe bomb?",
        "hi",
        "What household chemicals must never be mixed together at home?",
    ]

    def run(batch_size, prefix_cache=True, continuous=True):
        sampling = SamplingConfig(repetition_penalty=repetition_penalty)
        backend = HFBackend(
            model,
            tiny_tokenizer,
            sampling=sampling,
            precision="fp32",
            prefix_cache=prefix_cache,
            continuous=continuous,
        )
        loop = LoopConfig(max_new_tokens=12, batch_size=batch_size)
        return ToolUseGenerator(backend, tiny_tokenizer, tools=[tool], config=loop).generate(prompts)

    batched, single, two = run(8), run(1), run(2)
    turn_batched, plain = run(8, continuous=False), run(1, prefix_cache=False, continuous=False)
    # Continuous batching, key/value reuse, shared-prefix caching and padding (pad == eos in this
    # tokenizer) change nothing: every run equals model.generate on one prompt without any cache.
    expected = [t.messages for t in plain]
    for run_ in (batched, single, two, turn_batched):
        assert [t.messages for t in run_] == expected
    for traj in batched:
        assert traj.messages[-1]["role"] == "assistant"
        assert 1 <= traj.generated_tokens <= 12 * traj.assistant_turns
        assert traj.finish_reason in {"answer", "length", "call_cap"}
    assert not model.training


def test_sampling_is_reproducible_with_a_seed(tiny_tokenizer):
    import torch
    from conftest import build_tiny_model

    model = build_tiny_model(len(tiny_tokenizer))
    backend = HFBackend(model, tiny_tokenizer, sampling=SamplingConfig(temperature=1.0), precision="fp32")
    gen = ToolUseGenerator(backend, tiny_tokenizer, config=LoopConfig(max_new_tokens=10))
    torch.manual_seed(1)
    first = gen.generate(["hello"])[0].messages
    torch.manual_seed(1)
    assert gen.generate(["hello"])[0].messages == first


def test_continuous_batching_tops_up_batches_and_reports_each_finish(tiny_tokenizer, tool):
    def script(prompt):
        user = prompt.rsplit("<|im_start|>user\n", 1)[-1]
        if "<tool_response>" in user:
            return "Refused.", "eos"
        return (CALL % "q", "tool_call") if "bomb" in user else ("Fine.", "eos")

    backend = ScriptedBackend(script)
    gen = ToolUseGenerator(backend, tiny_tokenizer, tools=[tool], config=LoopConfig(batch_size=2))
    prompts = ["bomb one", "hello a", "hello b", "bomb two", "hello c"]
    finished = []
    trajectories = gen.generate(prompts, on_finished=lambda i, t: finished.append(i))
    sizes = [len(batch) for batch, _ in backend.calls]
    assert max(sizes) == 2 and sum(sizes) == len(prompts) + 2  # two conversations needed a second turn
    assert sorted(finished) == list(range(5)) and len(finished) == 5
    # a conversation waiting for its next turn goes into the very next batch
    second_turns = [
        i for i, (batch, _) in enumerate(backend.calls) if any("<tool_response>" in p for p in batch)
    ]
    first_calls = [
        i
        for i, (batch, _) in enumerate(backend.calls)
        if any(p.rstrip().endswith("bomb one<|im_end|>\n<|im_start|>assistant") for p in batch)
    ]
    assert second_turns[0] == first_calls[0] + 1
    assert [t.final_answer for t in trajectories] == ["Refused.", "Fine.", "Fine.", "Refused.", "Fine."]


def test_a_tool_turn_reuses_the_conversation_cache_and_equals_reencoding(tiny_tokenizer, tool):
    from conftest import build_tiny_model

    from rulewise.generation.continuous import Request

    model = build_tiny_model(len(tiny_tokenizer), seed=3)
    gen = ToolUseGenerator(HFBackend(model, tiny_tokenizer), tiny_tokenizer, tools=[tool])
    messages = gen.start("How do I build a pipe bomb?")

    def serve(backend, request, continues):
        done = []
        queue = [request]
        backend.serve(
            lambda: queue.pop() if queue else None,
            lambda r, c: done.append(c) or continues,
            max_new_tokens=10,
            stop_at_tool_call=False,
            batch_size=4,
        )
        return done[0]

    cached = HFBackend(model, tiny_tokenizer, precision="fp32")
    first = serve(cached, Request(key="c", prompt=gen.render(messages)), continues=True)
    messages += [
        {"role": "assistant", "content": first.text},
        {"role": "tool", "name": "consult_safety_rules", "content": "WEAP-01: no weapons."},
    ]
    second_prompt = gen.render(messages)
    second = serve(cached, Request(key="c", prompt=second_prompt), continues=False)
    fresh = serve(
        HFBackend(model, tiny_tokenizer, precision="fp32"), Request(key="x", prompt=second_prompt), False
    )

    assert (second.text, second.num_tokens, second.stop) == (fresh.text, fresh.num_tokens, fresh.stop)
    encode = lambda s: tiny_tokenizer(s, add_special_tokens=False)["input_ids"]
    first_turn = len(encode(gen.render(messages[:2]))) + first.num_tokens - 1  # last token never fed
    stats = cached.batcher.stats
    assert stats.reused_tokens >= first_turn - 2  # only the end-of-turn seam and the tool result are new
    assert stats.prompt_tokens == len(encode(gen.render(messages[:2]))) + len(encode(second_prompt))
    assert not cached.batcher._kept  # the conversation ended: its cache is released


def test_a_finished_conversation_sent_again_with_more_turns_equals_reencoding(tiny_tokenizer, tool):
    """A server client that ran its own tool comes back with the whole history as a new request:
    the remembered prompt must not have grown with the first request's generated tokens."""
    from conftest import build_tiny_model

    model = build_tiny_model(len(tiny_tokenizer), seed=3)
    gen = ToolUseGenerator(HFBackend(model, tiny_tokenizer), tiny_tokenizer, tools=[tool])
    messages = gen.start("What is the weather in Paris?")
    cached, fresh = (HFBackend(model, tiny_tokenizer, precision="fp32") for _ in range(2))
    (first,) = cached.complete([gen.render(messages)], 12, False)
    messages += [
        {"role": "assistant", "content": first.text},
        {"role": "tool", "name": "get_weather", "content": "sunny"},
    ]
    again = cached.complete([gen.render(messages)], 12, False)
    assert again == fresh.complete([gen.render(messages)], 12, False)
    assert cached.batcher.stats.reused_tokens > 0


def test_continuous_rows_end_at_end_of_turn_tool_call_or_limit(tiny_tokenizer):
    from rulewise.generation.continuous import stop_checker

    encode = lambda s: tiny_tokenizer(s, add_special_tokens=False)["input_ids"]
    call = encode(CALL % "pipe bomb")
    eos = tiny_tokenizer.eos_token_id
    with_tools, without = stop_checker(tiny_tokenizer, 100, True), stop_checker(tiny_tokenizer, 100, False)
    assert with_tools(call) and not without(call)
    assert not any(with_tools(call[:n]) for n in range(1, len(call)))  # not one token early
    assert with_tools(encode("Fine.") + [eos]) and without(encode("Fine.") + [eos])
    assert stop_checker(tiny_tokenizer, 3, False)(encode("one two three four")[:3])
    from conftest import build_tiny_model

    backend = HFBackend(build_tiny_model(len(tiny_tokenizer)), tiny_tokenizer)
    completion = backend._to_completion(call, stop_at_tool_call=True)
    assert (completion.stop, completion.num_tokens, completion.text) == (
        "tool_call",
        len(call),
        CALL % "pipe bomb",
    )


def test_incremental_text_matches_a_full_decode_at_every_token(tiny_tokenizer):
    """Streaming decodes a few tokens per step, never a character split across byte tokens."""
    from rulewise.generation.backends import IncrementalText

    text = "<think>\nHé 🙂 check the rules.\n</think>\nI can't help with that, ça va? 日本"
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    full = tiny_tokenizer.decode(ids, skip_special_tokens=False)
    assert full == text and len(ids) > 30
    stream, widest = IncrementalText(tiny_tokenizer), 0
    for end in range(1, len(ids) + 1):
        shown = stream.update(ids[:end])
        widest = max(widest, end - stream._prefix)
        assert "\ufffd" not in shown and full.startswith(shown)
    assert shown == full
    assert widest <= 8  # the window decoded per token stays small, whatever the turn's length


def test_slot_layer_rows_join_and_leave_in_place():
    """Rows written into free slots, right-aligned; leaving rows compacted; padding cut; room grown."""
    import torch

    from rulewise.generation.continuous import SlotLayer

    def row(length, fill):
        return torch.full((1, 2, length, 3), float(fill))

    layer = SlotLayer(row(4, 1), row(4, -1), slots=3)
    buffer_before = layer._keys
    layer.add(row(2, 2), row(2, -2))  # shorter: zeros on its left
    layer.add(row(6, 3), row(6, -3))  # longer than the batch: the others shift right
    assert layer.keys.shape == (3, 2, 6, 3) and layer._keys is buffer_before
    assert layer.keys[:, 0, :, 0].tolist() == [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 2, 2], [3] * 6]
    assert layer.values[1, 0, :, 0].tolist() == [0, 0, 0, 0, -2, -2]
    with pytest.raises(RuntimeError, match="no free slot"):
        layer.add(row(1, 9), row(1, -9))
    layer.update(torch.full((3, 2, 1, 3), 7.0), torch.full((3, 2, 1, 3), -7.0))
    layer.keep([1, 2], first=2)  # row 0 leaves; two columns of padding in every remaining row go
    assert layer.keys[:, 0, :, 0].tolist() == [[0, 0, 2, 2, 7], [3, 3, 3, 3, 7]]
    assert layer.values[0, 1, :, 2].tolist() == [0, 0, -2, -2, -7]
    room = layer._keys.shape[2]
    layer.update(torch.zeros(2, 2, room, 3), torch.zeros(2, 2, room, 3))  # past the room: it grows
    assert layer.keys.shape == (2, 2, 5 + room, 3) and layer.keys[1, 0, :5, 0].tolist() == [3, 3, 3, 3, 7]
