"""The vLLM completion backend, against a stand-in ``vllm`` module (no GPU or vLLM here)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import openai
import pytest
from test_engine import CALL, REFUSAL

from rulewise.errors import RulewiseError
from rulewise.generation import SamplingConfig, ToolUseGenerator
from rulewise.generation.parsing import TOOL_CALL_CLOSE
from rulewise.generation.vllm_backend import VLLMBackend
from rulewise.rules import build_retriever, load_rulebook, make_consult_tool
from rulewise.rules.loading import default_rulebook_path
from rulewise.serving.server import ServerThread, ServeSettings, build_server


@dataclass
class Choice:
    text: str
    token_ids: list[int]
    finish_reason: str
    stop_reason: str | int | None = None


@dataclass
class Output:
    outputs: list[Choice]


@dataclass
class FakeLLM:
    """Continues token prompts the way vLLM reports it: stop strings kept, EOS counted, not shown."""

    tokenizer: object
    params: list = field(default_factory=list)
    prompt_ids: list = field(default_factory=list)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, inputs, params, use_tqdm=False):
        assert len(params) == len(inputs)  # one SamplingParams per request
        self.params.append(params)
        out = []
        for request, one in zip(inputs, params):
            self.prompt_ids.append(request["prompt_token_ids"])
            prompt = self.tokenizer.decode(request["prompt_token_ids"], skip_special_tokens=False)
            params = one
            if "build a pipe bomb" in prompt and "<tool_response>" not in prompt:
                text = (CALL % "pipe bomb").split(TOOL_CALL_CLOSE)[0] + TOOL_CALL_CLOSE
                out.append(Output([Choice(text, list(range(30)), "stop", TOOL_CALL_CLOSE)]))
            elif "build a pipe bomb" in prompt:
                out.append(Output([Choice(REFUSAL, list(range(21)), "stop", None)]))  # 20 tokens + EOS
            else:
                out.append(
                    Output([Choice("Use kill PID and then", list(range(params.max_tokens)), "length")])
                )
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    module.SamplingParams = SamplingParams
    module.LLM = lambda **kwargs: pytest.fail("the test passes its own LLM")
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_completions_and_the_tool_loop_on_vllm(fake_vllm, tiny_tokenizer):
    llm = FakeLLM(tiny_tokenizer)
    backend = VLLMBackend("unused", sampling=SamplingConfig(temperature=0.7, repetition_penalty=1.1), llm=llm)
    tool = make_consult_tool(build_retriever(load_rulebook()), k=1)
    gen = ToolUseGenerator(backend, tiny_tokenizer, tools=[tool])
    harmful, benign = gen.generate(["How do I build a pipe bomb?", "How do I kill a process?"])
    assert harmful.consulted_rules == ["WEAP-01"] and harmful.final_answer.startswith("I can't help")
    assert harmful.generated_tokens == 30 + 21 and harmful.finish_reason == "answer"
    assert benign.finish_reason == "length" and benign.generated_tokens == 256
    first = llm.params[0][0]
    assert (first.stop, first.include_stop_str_in_output, first.max_tokens) == ([TOOL_CALL_CLOSE], True, 256)
    assert (first.temperature, first.repetition_penalty, first.skip_special_tokens) == (0.7, 1.1, False)


def test_rulewise_serve_answers_through_the_vllm_backend(fake_vllm, tiny_tokenizer, tmp_path):
    """`rulewise serve` on a GPU: the same server and rule loop, whole turns from vLLM."""
    llm = FakeLLM(tiny_tokenizer)

    def on_vllm(rules):
        backend = VLLMBackend("unused", llm=llm)
        return ToolUseGenerator(backend, tiny_tokenizer, tools=[make_consult_tool(rules, k=1)])

    settings = ServeSettings(
        model="tiny",
        rules=str(default_rulebook_path()),
        port=0,
        audit_log=str(tmp_path / "audit.jsonl"),
        reload_interval=0,
    )
    server = build_server(settings, make_generator=on_vllm, log=lambda line: None)
    question = [{"role": "user", "content": "How do I build a pipe bomb?"}]
    with ServerThread(server) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(model="tiny", messages=question)
        stream = client.chat.completions.create(model="tiny", messages=question, stream=True)
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    answer = reply.choices[0].message.content
    assert reply.rulewise["consulted_rules"] == ["WEAP-01"] and answer.startswith("I can't help")
    assert streamed == answer  # a turn at a time: vLLM hands back whole turns
    assert len(llm.prompt_ids) == 4  # each request: the first turn, then the turn after the tool result


def test_vllm_gets_the_same_prompt_tokens_as_the_transformers_backend(fake_vllm, tiny_tokenizer):
    """Token for token: the chat template already wrote the special tokens; nothing is added twice."""
    llm = FakeLLM(tiny_tokenizer)
    backend = VLLMBackend("unused", llm=llm)
    tool = make_consult_tool(build_retriever(load_rulebook()), k=1)
    ToolUseGenerator(backend, tiny_tokenizer, tools=[tool]).generate(["How do I build a pipe bomb?"])
    rendered = [tiny_tokenizer.decode(ids, skip_special_tokens=False) for ids in llm.prompt_ids]
    hf_rows = [tiny_tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]
    assert (
        llm.prompt_ids == hf_rows and len(llm.prompt_ids) == 2
    )  # the first turn, then after the tool result
    assert tiny_tokenizer.bos_token is None or llm.prompt_ids[0][:2] != [tiny_tokenizer.bos_token_id] * 2


def test_each_vllm_request_gets_its_own_seed_and_a_rerun_repeats_them(fake_vllm, tiny_tokenizer):
    seeds = []
    for _ in range(2):
        llm = FakeLLM(tiny_tokenizer)
        backend = VLLMBackend("unused", sampling=SamplingConfig(temperature=0.8), seed=5, llm=llm)
        backend.complete(["How do I kill a process?"] * 3, 8, False)
        backend.complete(["How do I kill a process?"], 8, False)
        seeds.append([p.seed for batch in llm.params for p in batch])
    assert seeds[0] == seeds[1] == [5, 6, 7, 8]


def test_a_trailing_end_of_turn_token_is_cut_like_the_transformers_backend(fake_vllm, tiny_tokenizer):
    llm = FakeLLM(tiny_tokenizer)
    backend = VLLMBackend("unused", llm=llm)
    eos = tiny_tokenizer.eos_token
    done = backend._to_completion(Choice(f"<tool_call>x</tool_call> fine{eos}", [1, 2, 3], "stop", None))
    assert done.text == "<tool_call>x</tool_call> fine" and done.stop == "eos"


def test_a_missing_vllm_is_a_named_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails
    with pytest.raises(RulewiseError, match="needs vLLM") as info:
        VLLMBackend("default")
    assert "rulewise[vllm]" in info.value.hint
