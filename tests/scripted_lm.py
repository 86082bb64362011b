"""A causal LM whose 'predictions' follow a script: real ``generate``, known output.

It lets tests drive the real HF backend (left padding, stop strings, token counting) and the
tool loop with a model that reliably emits tool calls. The next token is chosen from the text
of the conversation so far: ``script(conversation_text) -> assistant reply``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

ASSISTANT_HEADER = "<|im_start|>assistant\n"


class ScriptedLM(LlamaForCausalLM):
    def __init__(self, tokenizer, script: Callable[[str], str]) -> None:
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=8,
            intermediate_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            num_key_value_heads=1,
            use_cache=False,
        )
        super().__init__(config)
        self.generation_config.use_cache = False
        self.tokenizer = tokenizer
        self.script = script
        self.header_ids = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False)

    def _next_token(self, ids: list[int]) -> int:
        h = len(self.header_ids)
        start = max(i + h for i in range(len(ids) - h + 1) if ids[i : i + h] == self.header_ids)
        reply = self.tokenizer.encode(
            self.script(self.tokenizer.decode(ids[:start])), add_special_tokens=False
        )
        reply.append(self.tokenizer.eos_token_id)
        n = len(ids) - start
        return reply[n] if n < len(reply) else self.tokenizer.eos_token_id

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        batch, length = input_ids.shape
        logits = torch.full((batch, length, self.config.vocab_size), -1e4)
        for row in range(batch):
            ids = input_ids[row]
            if attention_mask is not None:
                ids = ids[attention_mask[row].bool()]
            logits[row, -1, self._next_token(ids.tolist())] = 0.0
        return CausalLMOutputWithPast(logits=logits)
