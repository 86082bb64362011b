"""A causal LM whose 'predictions' follow a script: real ``generate``, known output.

It lets tests drive the real HF backend (left padding, stop strings, token counting) and the
tool loop with a model that reliably emits tool calls. The next token is chosen from the text
of the conversation so far: ``script(conversation_text) -> assistant reply``, or
``script(conversation_text, row)`` to let rows of one batch (members of a GRPO group) differ.

With ``learnable=True`` the tiny Llama's own logits are added to the script's (which outweigh
them by 1e4), so sampling still follows the script while a loss has gradients: an RL trainer
can take real optimisation steps on it.

With a key/value cache (our continuous batcher feeds only new tokens), the cache itself carries
what the script needs: layer 0's keys hold each position's token id and its values the reply's
*serial*. A reply starts (the input ends with the assistant header) with serial = how many
replies to the same text this model has started, so the G identical prompts of a GRPO group are
told apart by serial as they are by batch row without a cache; later tokens copy it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

ASSISTANT_HEADER = "<|im_start|>assistant\n"


class ScriptedLM(LlamaForCausalLM):
    def __init__(self, tokenizer, script: Callable[..., str], *, learnable: bool = False) -> None:
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
        self.learnable = learnable
        self.script_takes_row = len(inspect.signature(script).parameters) == 2
        self.header_ids = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False)
        self._replies: dict[str, int] = {}  # reply text so far -> replies started (cache path)

    def _next_token(self, ids: list[int], row: int) -> int:
        h = len(self.header_ids)
        start = max(i + h for i in range(len(ids) - h + 1) if ids[i : i + h] == self.header_ids)
        text = self.tokenizer.decode(ids[:start])
        reply = self.tokenizer.encode(
            self.script(text, row) if self.script_takes_row else self.script(text), add_special_tokens=False
        )
        reply.append(self.tokenizer.eos_token_id)
        n = len(ids) - start
        return reply[n] if n < len(reply) else self.tokenizer.eos_token_id

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None, **kwargs):
        if past_key_values is not None and use_cache:
            return self._cached_forward(input_ids, attention_mask, past_key_values)
        batch, length = input_ids.shape
        logits = torch.full((batch, length, self.config.vocab_size), -1e4, device=input_ids.device)
        for row in range(batch):
            ids = input_ids[row]
            if attention_mask is not None:
                ids = ids[attention_mask[row].bool()]
            logits[row, -1, self._next_token(ids.tolist(), row)] = 0.0
        if self.learnable:
            logits = logits + super().forward(input_ids=input_ids, attention_mask=attention_mask).logits
        return CausalLMOutputWithPast(logits=logits)

    def _cached_forward(self, input_ids, attention_mask, cache):
        batch = input_ids.shape[0]
        past = cache.get_seq_length()
        keys = cache.layers[0].keys if past else None
        values = cache.layers[0].values if past else None
        logits = torch.full((batch, 1, self.config.vocab_size), -1e4, device=input_ids.device)
        new_keys = input_ids.float()[:, None, :, None]
        new_values = torch.zeros_like(new_keys)
        for row in range(batch):
            real = attention_mask[row, :past].bool() if attention_mask is not None else slice(None)
            history = (keys[row, 0, real, 0].long().tolist() if past else []) + input_ids[row].tolist()
            h = len(self.header_ids)
            if history[-h:] == self.header_ids:  # a reply starts
                text = self.tokenizer.decode(history)
                serial = self._replies.get(text, 0)
                self._replies[text] = serial + 1
            else:
                serial = int(values[row, 0, real, 0][-1]) if past else 0
            new_values[row] = serial
            logits[row, 0, self._next_token(history, serial)] = 0.0
        cache.update(new_keys, new_values, 0)
        return CausalLMOutputWithPast(logits=logits, past_key_values=cache)
