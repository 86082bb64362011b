"""Token-level continuous batching with key/value reuse across a conversation's turns.

``model.generate`` on a batch runs until its longest row ends: rows that finished early are
carried as padding, and each tool turn re-encodes the whole conversation. Here one decode step
advances every running row by a token; a row that ends leaves at once and the next request
takes its slot (prefilled alone, then merged in). Keys/values are reused in two ways:

* **within a conversation** — when a row stops at ``</tool_call>``, its keys/values are kept
  (if the caller says the conversation continues); the next turn's prompt shares them as a
  prefix, so only the end-of-turn marker and the tool result are encoded;
* **across conversations** — a new conversation reuses the keys/values of the longest prefix
  it shares with a remembered prompt (the system prompt and tool schema every one starts with).

Reuse is decided on token ids (the longest common prefix of the new prompt's tokens and the
cached ones), so the model always sees exactly the tokens of the freshly rendered prompt: a
chat template that re-renders the model's tool call differently simply reuses less.

Rows live in one left-padded cache ``[rows, heads, width, head_dim]`` per layer; a row's
positions count only its real tokens, so padding never shifts what a row computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import (
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import Cache, DynamicLayer

from rulewise.generation.parsing import TOOL_CALL_CLOSE

Layers = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Request:
    """One assistant turn to generate; ``key`` names the conversation it belongs to.

    ``prompt`` is the rendered text, or its token ids when the caller must control them exactly
    (RL rollouts: the model-written tokens go back verbatim, never re-tokenized).
    """

    key: object
    prompt: str | list[int]
    max_new_tokens: int | None = None  # this turn's own limit, below the backend call's
    cancelled: Callable[[], bool] | None = None  # True: end the turn now, its slot is wanted
    on_text: Callable[[str], None] | None = None  # the turn's text so far, after each token (streaming)


@dataclass
class ReuseStats:
    """Prompt tokens encoded vs taken from cached keys/values, over a backend's life."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    decode_steps: int = 0

    def add(self, other: ReuseStats) -> None:
        """Count ``other``'s tokens and steps here too (a run's total over per-step batchers)."""
        self.prompt_tokens += other.prompt_tokens
        self.reused_tokens += other.reused_tokens
        self.decode_steps += other.decode_steps

    def summary(self) -> str:
        share = self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        return f"{share:.0%} of {self.prompt_tokens} prompt tokens reused from cached keys/values"


@dataclass
class _Row:
    request: Request
    ids: list[int]  # the prompt's tokens, then every generated token fed back so far
    generated: list[int] = field(default_factory=list)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _layers(cache: Cache) -> Layers:
    return [(layer.keys, layer.values) for layer in cache.layers]


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer that appends in place into spare room.

    transformers' ``DynamicLayer`` concatenates at every token, copying the whole cache: on a
    CPU that copy cost more than the model's matmuls. Here keys/values are views of a larger
    buffer that doubles when full.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self._reserve(keys, values)

    def _reserve(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        batch, heads, length, dim = keys.shape
        room = length + max(64, length)
        self._keys = keys.new_empty(batch, heads, room, dim)
        self._values = values.new_empty(batch, heads, room, dim)
        self._keys[:, :, :length] = keys
        self._values[:, :, :length] = values
        self.length = length
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self.length + new > self._keys.shape[-2]:
            self._reserve(self.keys, self.values)
        self._keys[:, :, self.length : self.length + new] = key_states
        self._values[:, :, self.length : self.length + new] = value_states
        self.length += new
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]
        return self.keys, self.values


def _growing(layers: Layers) -> Cache:
    return Cache(layers=[GrowingLayer(k, v) for k, v in layers])


def _left_pad(layers: Layers, width: int) -> Layers:
    return [(F.pad(k, (0, 0, width, 0)), F.pad(v, (0, 0, width, 0))) for k, v in layers] if width else layers


class ContinuousBatcher:
    """Runs requests to the end of their turn, ``batch_size`` at a time (see the module docstring).

    ``sample(logits, seen)`` turns the last logits ``[rows, vocab]`` into next tokens ``[rows]``;
    ``seen`` marks the tokens each row has in its prompt and output (for a repetition penalty).
    ``finish(request, generated_ids) -> Completion | None`` says whether a row has ended.
    """

    #: Below this many shared tokens, a remembered prompt is not worth reusing across conversations.
    MIN_SHARED_PREFIX = 16

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sample = sample
        self.stats = ReuseStats()
        self._prefix: tuple[list[int], Layers] = ([], [])
        self._kept: dict[object, tuple[list[int], Layers]] = {}
        self._vocab = model.get_output_embeddings().weight.shape[0]

    # -- one request in ------------------------------------------------------------------------

    def _prefill(self, request: Request) -> tuple[_Row, Layers, torch.Tensor]:
        """Encode what no cache holds of the prompt; the row's keys/values and last logits."""
        prompt = request.prompt
        ids = (
            list(prompt)
            if isinstance(prompt, list)
            else self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        )
        kept = self._kept.pop(request.key, None)
        source_ids, source = kept or self._prefix
        reuse = min(common_prefix(source_ids, ids), len(ids) - 1)
        new_prefix = kept is None and reuse < self.MIN_SHARED_PREFIX
        if new_prefix:
            reuse = 0
        past = [(k[:, :, :reuse], v[:, :, :reuse]) for k, v in source] if reuse else None
        cache = DynamicCache(ddp_cache_data=past) if past else DynamicCache()
        device = self.model.device
        out = self.model(
            input_ids=torch.tensor([ids[reuse:]], device=device),
            position_ids=torch.arange(reuse, len(ids), device=device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,  # the LM head only where the next token is sampled
        )
        layers = _layers(cache)
        if new_prefix:
            # remember this prompt for the conversations that follow; a copy, as the row's own
            # list grows with every generated token while these keys/values do not
            self._prefix = (list(ids), layers)
        self.stats.prompt_tokens += len(ids)
        self.stats.reused_tokens += reuse
        return _Row(request, ids), layers, out.logits[:, -1].float()

    # -- the loop --------------------------------------------------------------------------------

    @torch.no_grad()
    def run(
        self,
        next_request: Callable[[], Request | None],
        on_done: Callable[[Request, object], bool],
        finish: Callable[[Request, list[int]], object | None],
        batch_size: int,
    ) -> None:
        """Until ``next_request`` has nothing more and every row has ended.

        ``on_done(request, completion)`` returns True when the conversation will come back with
        another turn: its keys/values are then kept for it.
        """
        device = self.model.device
        rows: list[_Row] = []
        layers: Layers = []
        mask = torch.zeros(0, 0, dtype=torch.long, device=device)
        seen = torch.zeros(0, self._vocab, dtype=torch.bool, device=device)
        logits = torch.zeros(0, self._vocab, device=device)
        cache: Cache | None = None

        while True:
            while len(rows) < batch_size and (request := next_request()) is not None:
                row, row_layers, row_logits = self._prefill(request)
                length = len(row.ids)
                if not rows:  # an empty batch takes the row's shape
                    layers = [(k[:0], v[:0]) for k, v in row_layers]
                    mask = torch.zeros(0, length, dtype=torch.long, device=device)
                width = mask.shape[1]
                grow = max(0, length - width)
                layers = [
                    (torch.cat([k, rk]), torch.cat([v, rv]))
                    for (k, v), (rk, rv) in zip(
                        _left_pad(layers, grow), _left_pad(row_layers, max(0, width - length)), strict=True
                    )
                ]
                row_mask = torch.zeros(1, max(width, length), dtype=torch.long, device=device)
                row_mask[:, -length:] = 1
                mask = torch.cat([F.pad(mask, (grow, 0)), row_mask])
                row_seen = torch.zeros(1, self._vocab, dtype=torch.bool, device=device)
                row_seen[0, row.ids] = True
                seen = torch.cat([seen, row_seen])
                logits = torch.cat([logits, row_logits])
                rows.append(row)
                cache = None
            if not rows:
                return

            tokens = self.sample(logits, seen).tolist()
            ended: list[int] = []
            for index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
                row.generated.append(token)
                seen[index, token] = True
                completion = finish(row.request, row.generated)
                if completion is not None:
                    ended.append(index)
                    columns = mask[index].bool()
                    kept = [
                        (k[index : index + 1, :, columns], v[index : index + 1, :, columns])
                        for k, v in layers
                    ]
                    if on_done(row.request, completion):
                        self._kept[row.request.key] = (row.ids, kept)
                else:
                    row.ids.append(token)
            if ended:
                gone = set(ended)
                keep = [i for i in range(len(rows)) if i not in gone]
                rows = [rows[i] for i in keep]
                index = torch.tensor(keep, dtype=torch.long, device=device)
                layers = [(k[index], v[index]) for k, v in layers]
                mask, seen, logits = mask[index], seen[index], logits[index]
                tokens = [tokens[i] for i in keep]
                if rows:  # drop the columns that are padding in every remaining row
                    first = int(mask.any(dim=0).long().argmax())
                    layers = [(k[:, :, first:], v[:, :, first:]) for k, v in layers]
                    mask = mask[:, first:]
                cache = None
            if not rows:
                continue

            positions = mask.sum(dim=1, keepdim=True)  # each row's next position: its real tokens so far
            mask = F.pad(mask, (0, 1), value=1)
            if cache is None:  # rows joined or left: a new buffer
                cache = _growing(layers)
            out = self.model(
                input_ids=torch.tensor(tokens, device=device)[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            layers = _layers(cache)
            logits = out.logits[:, -1].float()
            self.stats.decode_steps += 1


def make_sampler(
    temperature: float, top_p: float, top_k: int | None, repetition_penalty: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Greedy or sampled next tokens, with HF's repetition penalty and warpers, in HF's order."""
    warpers = []
    if temperature > 0 and top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if temperature > 0 and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))

    def sample(logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        if repetition_penalty != 1.0:
            penalised = torch.where(logits < 0, logits * repetition_penalty, logits / repetition_penalty)
            logits = torch.where(seen, penalised, logits)
        if temperature <= 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        for warp in warpers:
            logits = warp(None, logits)
        return torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(1)

    return sample


def stop_checker(
    tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, stop_at_tool_call: bool
) -> Callable[[list[int]], bool]:
    """True once generated ids end the turn: end-of-turn token, ``</tool_call>``, or the limit."""
    eos = tokenizer.eos_token_id
    window = len(TOOL_CALL_CLOSE)  # every token decodes to at least one character

    def ended(ids: list[int]) -> bool:
        if ids[-1] == eos or len(ids) >= max_new_tokens:
            return True
        return stop_at_tool_call and TOOL_CALL_CLOSE in tokenizer.decode(
            ids[-window:], skip_special_tokens=False
        )

    return ended
