"""Text-completion backends for the tool-use loop.

The loop (``engine.py``) deals in chat messages; a backend only turns rendered prompts into
completions that stop at the end of the turn or right after ``</tool_call>``. Keeping that
boundary small is what lets tests drive the loop with a scripted backend and lets GPU users
swap in vLLM without touching the conversation logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rulewise.generation.parsing import TOOL_CALL_CLOSE
from rulewise.runtime import Precision, autocast

StopReason = Literal["eos", "tool_call", "length"]


@dataclass
class Completion:
    text: (
        str  # without the end-of-turn token and padding; ends with ``</tool_call>`` when stop == "tool_call"
    )
    num_tokens: int  # generated tokens, including the end-of-turn token when there was one
    stop: StopReason


class CompletionBackend(Protocol):
    def complete(self, prompts: list[str], max_new_tokens: int, stop_at_tool_call: bool) -> list[Completion]:
        """One completion per prompt, in order."""
        ...


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0


class HFBackend:
    """``model.generate`` on a left-padded batch, in eval mode and without gradients."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        sampling: SamplingConfig | None = None,
        precision: Precision = "auto",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingConfig()
        self.precision = precision
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer needs a pad token for batched generation")

    @torch.no_grad()
    def complete(self, prompts: list[str], max_new_tokens: int, stop_at_tool_call: bool) -> list[Completion]:
        """All ``prompts`` as one left-padded batch (the loop decides the batch size)."""
        tok = self.tokenizer
        # The chat template already wrote every special token; adding BOS again would shift the prompt.
        enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        device = self.model.device
        enc = {k: v.to(device) for k, v in enc.items()}
        kwargs: dict = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        }
        if self.sampling.temperature > 0:
            kwargs |= {
                "do_sample": True,
                "temperature": self.sampling.temperature,
                "top_p": self.sampling.top_p,
            }
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if self.sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.sampling.repetition_penalty
        if stop_at_tool_call:
            kwargs |= {"stop_strings": [TOOL_CALL_CLOSE], "tokenizer": tok}
        self.model.eval()  # gradient checkpointing in train mode drops the KV cache
        with autocast(self.precision, device):
            output = self.model.generate(**enc, **kwargs)
        prompt_len = enc["input_ids"].shape[1]
        return [self._to_completion(row[prompt_len:].tolist(), stop_at_tool_call) for row in output]

    def _to_completion(self, ids: list[int], stop_at_tool_call: bool) -> Completion:
        tok = self.tokenizer
        eos = tok.eos_token_id
        end = ids.index(eos) if eos in ids else len(ids)  # padding (== eos for many models) follows the stop
        text = tok.decode(ids[:end], skip_special_tokens=False)
        if stop_at_tool_call and TOOL_CALL_CLOSE in text:
            count = self._tokens_until(ids[:end], TOOL_CALL_CLOSE)
            text = text[: text.index(TOOL_CALL_CLOSE) + len(TOOL_CALL_CLOSE)]
            return Completion(text=text, num_tokens=count, stop="tool_call")
        if end < len(ids):
            return Completion(text=text, num_tokens=end + 1, stop="eos")
        return Completion(text=text, num_tokens=len(ids), stop="length")

    def _tokens_until(self, ids: list[int], marker: str) -> int:
        """Fewest leading tokens whose decoding contains ``marker`` (binary search; decoding is monotone)."""
        low, high = 1, len(ids)
        while low < high:
            mid = (low + high) // 2
            if marker in self.tokenizer.decode(ids[:mid], skip_special_tokens=False):
                high = mid
            else:
                low = mid + 1
        return low
