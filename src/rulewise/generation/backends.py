"""Text-completion backends for the tool-use loop.

The loop (``engine.py``) deals in chat messages; a backend only turns rendered prompts into
completions that stop at the end of the turn or right after ``</tool_call>``. Keeping that
boundary small is what lets tests drive the loop with a scripted backend and lets GPU users
swap in vLLM without touching the conversation logic.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict, Unpack

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from rulewise.generation.continuous import ContinuousBatcher, Request, make_sampler, stop_checker
from rulewise.generation.parsing import TOOL_CALL_CLOSE
from rulewise.runtime import Precision, autocast, describe_precision

StopReason = Literal["eos", "tool_call", "length"]


@dataclass
class Completion:
    #: Without the end-of-turn token and padding; ends with ``</tool_call>`` when stop == "tool_call".
    text: str
    num_tokens: int  # generated tokens, including the end-of-turn token when there was one
    stop: StopReason


class CompletionBackend(Protocol):
    def complete(self, prompts: list[str], max_new_tokens: int, stop_at_tool_call: bool) -> list[Completion]:
        """One completion per prompt, in order."""
        ...


NextRequest = Callable[[], "Request | None"]
OnDone = Callable[["Request", Completion], bool]


class TurnLimits(TypedDict):
    """How every backend's ``serve`` generates turns (declared once for all of them)."""

    max_new_tokens: int  # per turn; a request's own ``max_new_tokens`` may lower it
    stop_at_tool_call: bool  # end a turn right after ``</tool_call>``
    batch_size: int  # requests generated together


def serve_in_turns(
    backend: CompletionBackend, next_request: NextRequest, on_done: OnDone, **limits: Unpack[TurnLimits]
) -> None:
    """Turn-level batching for backends that only ``complete`` a list of prompts (vLLM, which
    batches continuously inside, and test doubles): up to ``batch_size`` requests per call."""
    max_new_tokens = limits["max_new_tokens"]
    while True:
        batch: list[Request] = []
        while len(batch) < limits["batch_size"] and (request := next_request()) is not None:
            batch.append(request)
        if not batch:
            return
        by_limit: dict[int, list[Request]] = {}
        for request in batch:  # a request's own, lower limit gets a call of its own
            by_limit.setdefault(min(max_new_tokens, request.max_new_tokens or max_new_tokens), []).append(
                request
            )
        for limit, group in by_limit.items():
            completions = backend.complete([r.prompt for r in group], limit, limits["stop_at_tool_call"])
            for request, completion in zip(group, completions, strict=True):
                on_done(request, completion)


class IncrementalText:
    """A growing turn's text, decoding only the last few tokens at each step (TGI's method).

    Re-decoding the whole turn after every token, as streaming first did, costs O(n²) over a
    turn. Here each step decodes the tokens since the last emitted boundary twice — with and
    without the new ones — and appends the difference; a piece that ends in U+FFFD (a multibyte
    character split across tokens) waits for the next token.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.text = ""
        self._prefix = 0  # start of the decoded window
        self._read = 0  # end of what self.text already holds

    def update(self, ids: list[int]) -> str:
        """The text of ``ids`` (the previous call's ids plus new ones at the end)."""

        def decode(part: list[int]) -> str:
            return self.tokenizer.decode(part, skip_special_tokens=False)

        seen = decode(ids[self._prefix : self._read])
        window = decode(ids[self._prefix :])
        if len(window) > len(seen) and not window.endswith("\ufffd"):
            self.text += window[len(seen) :]
            self._prefix, self._read = self._read, len(ids)
        return self.text


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0


class HFBackend:
    """A transformers model, in eval mode and without gradients.

    :meth:`serve` batches continuously at token level and reuses keys/values across turns and
    conversations (:mod:`rulewise.generation.continuous`); it is what the tool loop uses.
    :meth:`complete`, and :meth:`serve` with ``continuous=False`` (a model that cannot take a
    key/value cache), use ``model.generate`` on a left-padded batch instead.

    Two things make those batches fast and exact:

    * **shared-prefix KV cache** — every prompt starts with the same system prompt and tool
      schemas (hundreds of tokens). Their keys/values are computed once, kept across calls,
      and the batch is laid out as ``[shared prefix][left padding][rest of prompt]``, so
      prefill only pays for what differs. Positions come from the attention mask, so a row
      sees exactly the positions it would see alone.
    * **a padding token that is not end-of-turn** — many chat models pad with their EOS token;
      a repetition penalty then penalises ending the turn in padded rows only, and batched
      output drifts from one-at-a-time output. Padding uses another special token instead.
    """

    #: Below this many shared tokens, caching is not worth a separate forward pass.
    MIN_SHARED_PREFIX = 16

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        sampling: SamplingConfig | None = None,
        precision: Precision = "auto",
        prefix_cache: bool = True,
        continuous: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingConfig()
        self.precision = precision
        self.prefix_cache = prefix_cache
        self.continuous = continuous
        self._batcher: ContinuousBatcher | None = None
        self.pad_id = self._padding_id(tokenizer)
        self._cached_prefix: tuple[int, ...] = ()
        self._cached_kv: DynamicCache | None = None

    @staticmethod
    def _padding_id(tokenizer: PreTrainedTokenizerBase) -> int:
        eos = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
            return tokenizer.pad_token_id
        others = [i for i in tokenizer.all_special_ids if i != eos]
        if others:
            return others[0]
        if eos is None:
            raise ValueError("tokenizer needs a pad or end-of-sequence token for batched generation")
        return eos

    def _generate_kwargs(self, max_new_tokens: int, stop_at_tool_call: bool) -> dict:
        tok = self.tokenizer
        kwargs: dict = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": self.pad_id,
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
        return kwargs

    @property
    def batcher(self) -> ContinuousBatcher:
        """The continuous batcher (created once, so its remembered prefix outlives a call)."""
        if self._batcher is None:
            top_k = self.model.generation_config.top_k  # what generate() would apply when sampling
            sampling = self.sampling
            self._batcher = ContinuousBatcher(
                self.model,
                self.tokenizer,
                make_sampler(sampling.temperature, sampling.top_p, top_k, sampling.repetition_penalty),
            )
        return self._batcher

    def describe(self) -> str:
        """One line for logs: precision, batching and how much of the prompts came from cache."""
        weights = (
            "bf16 weights"
            if self.model.dtype == torch.bfloat16
            else describe_precision(self.precision, self.model.device)
        )
        if not self.continuous:
            return f"generation: {weights}, turn-level batches"
        reuse = self._batcher.stats.summary() if self._batcher else "nothing generated yet"
        return f"generation: {weights}, continuous batching; {reuse}"

    def serve(self, next_request: NextRequest, on_done: OnDone, **limits: Unpack[TurnLimits]) -> None:
        """Generate a turn for every request ``next_request`` hands out, reporting each to ``on_done``
        as it ends (``on_done`` returns True when the conversation will send another turn)."""
        if not self.continuous:
            serve_in_turns(self, next_request, on_done, **limits)
            return
        stop_at_tool_call = limits["stop_at_tool_call"]
        ended = stop_checker(self.tokenizer, limits["max_new_tokens"], stop_at_tool_call)

        streams: dict[int, IncrementalText] = {}  # by id(request), while the turn streams

        def finish(request: Request, ids: list[int]) -> Completion | None:
            stop = (
                ended(ids)
                or (request.max_new_tokens is not None and len(ids) >= request.max_new_tokens)
                or (request.cancelled is not None and request.cancelled())
            )
            if stop:
                streams.pop(id(request), None)
                return self._to_completion(ids, stop_at_tool_call)
            if request.on_text is not None:
                stream = streams.setdefault(id(request), IncrementalText(self.tokenizer))
                request.on_text(stream.update(ids))
            return None

        self.model.eval()  # gradient checkpointing in train mode drops the KV cache
        with autocast(self.precision, self.model.device):
            self.batcher.run(next_request, on_done, finish, limits["batch_size"])

    def _prefix_kv(self, prefix: list[int], device: torch.device) -> DynamicCache:
        """Keys/values of ``prefix`` (computed once per distinct prefix), as a fresh copy."""
        if tuple(prefix) != self._cached_prefix or self._cached_kv is None:
            cache = DynamicCache()
            self.model(input_ids=torch.tensor([prefix], device=device), past_key_values=cache, use_cache=True)
            self._cached_prefix, self._cached_kv = tuple(prefix), cache
        return copy.deepcopy(self._cached_kv)

    def complete(self, prompts: list[str], max_new_tokens: int, stop_at_tool_call: bool) -> list[Completion]:
        """All ``prompts`` together (the caller decides how many), completions in order."""
        if not self.continuous:
            return self._generate_batch(prompts, max_new_tokens, stop_at_tool_call)
        results: list[Completion | None] = [None] * len(prompts)
        queue = deque(Request(key=i, prompt=p) for i, p in enumerate(prompts))

        def done(request: Request, completion: Completion) -> bool:
            results[request.key] = completion
            return False

        self.serve(
            lambda: queue.popleft() if queue else None,
            done,
            max_new_tokens=max_new_tokens,
            stop_at_tool_call=stop_at_tool_call,
            batch_size=max(1, len(prompts)),
        )
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def _generate_batch(
        self, prompts: list[str], max_new_tokens: int, stop_at_tool_call: bool
    ) -> list[Completion]:
        """``model.generate`` on one left-padded batch of ``prompts``."""
        # The chat template already wrote every special token; adding BOS again would shift the prompt.
        rows = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        shared = 0
        if self.prefix_cache:
            shortest = min(len(r) for r in rows) - 1  # at least one token per row is left to prefill
            while shared < shortest and all(r[shared] == rows[0][shared] for r in rows):
                shared += 1
            if shared < self.MIN_SHARED_PREFIX:
                shared = 0
        width = max(len(r) for r in rows) - shared
        ids, mask = [], []
        for row in rows:
            pad = width - (len(row) - shared)
            ids.append(row[:shared] + [self.pad_id] * pad + row[shared:])
            mask.append([1] * shared + [0] * pad + [1] * (len(row) - shared))
        device = self.model.device
        inputs = {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
        }
        self.model.eval()  # gradient checkpointing in train mode drops the KV cache
        with autocast(self.precision, device):
            if shared:
                inputs["past_key_values"] = self._prefix_kv(rows[0][:shared], device).batch_repeat_interleave(
                    len(rows)
                )
            output = self.model.generate(**inputs, **self._generate_kwargs(max_new_tokens, stop_at_tool_call))
        prompt_len = inputs["input_ids"].shape[1]
        return [self._to_completion(row[prompt_len:].tolist(), stop_at_tool_call) for row in output]

    def _to_completion(self, ids: list[int], stop_at_tool_call: bool) -> Completion:
        tok = self.tokenizer
        eos = tok.eos_token_id
        while ids and ids[-1] == self.pad_id and self.pad_id != eos:  # filler after a stop string
            ids = ids[:-1]
        end = ids.index(eos) if eos in ids else len(ids)
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
