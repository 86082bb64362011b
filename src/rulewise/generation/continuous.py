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


def _room(length: int) -> int:
    """Columns to allocate for ``length`` used ones: as many again, at least 64, so growing is rare."""
    return length + max(64, length)


class SlotLayer(DynamicLayer):
    """One layer's keys/values for the whole batch, in buffers reused for the batch's life.

    Buffers are ``[slots, heads, room, head_dim]``; rows ``0..rows-1`` are in use, each
    right-aligned in the first ``length`` columns (zeros on the left). Why not build a fresh
    cache when rows join or leave: transformers' ``DynamicLayer`` concatenates at every token,
    and rebuilding on every join or leave cost more in first touches of freshly allocated
    memory than in copying (docs/results.md, "Speed"). Here a leaving row is overwritten by the
    rows after it, a joining row is written into the next free slot, and memory is allocated only
    when the room runs out (then doubled).
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, slots: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        rows, heads, length, dim = keys.shape
        self._keys = keys.new_zeros(max(slots, rows), heads, _room(length), dim)
        self._values = torch.zeros_like(self._keys)
        self._keys[:rows, :, :length], self._values[:rows, :, :length] = keys, values
        self.rows, self.length = rows, length
        self._views()

    def _views(self) -> None:
        self.keys = self._keys[: self.rows, :, : self.length]
        self.values = self._values[: self.rows, :, : self.length]

    def _make_room(self, length: int) -> None:
        if length > self._keys.shape[2]:
            grown = (*self._keys.shape[:2], _room(length), self._keys.shape[3])
            keys, values = self._keys.new_zeros(grown), self._values.new_zeros(grown)
            keys[:, :, : self.length], values[:, :, : self.length] = (
                self._keys[:, :, : self.length],
                self._values[:, :, : self.length],
            )
            self._keys, self._values = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        self._make_room(self.length + new)
        self._keys[: self.rows, :, self.length : self.length + new] = key_states
        self._values[: self.rows, :, self.length : self.length + new] = value_states
        self.length += new
        self._views()
        return self.keys, self.values

    def keep(self, rows: list[int], first: int) -> None:
        """Keep only ``rows`` (ascending), dropping the first ``first`` columns (padding in all of them)."""
        for buffer in (self._keys, self._values):
            for slot, row in enumerate(rows):
                if row != slot:
                    buffer[slot, :, : self.length] = buffer[row, :, : self.length]
            if first:
                buffer[: len(rows), :, : self.length - first] = buffer[
                    : len(rows), :, first : self.length
                ].clone()
        self.rows, self.length = len(rows), self.length - first
        self._views()

    def add(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Append one row (``[1, heads, n, dim]``), right-aligned; longer than the batch so far, the
        other rows shift right."""
        if self.rows == self._keys.shape[0]:
            raise RuntimeError("no free slot: the batch is full")
        n = keys.shape[2]
        if n > self.length:
            shift = n - self.length
            self._make_room(n)
            for buffer in (self._keys, self._values):
                buffer[: self.rows, :, shift:n] = buffer[: self.rows, :, : self.length].clone()
                buffer[: self.rows, :, :shift] = 0
            self.length = n
        for buffer, part in ((self._keys, keys), (self._values, values)):
            buffer[self.rows, :, : self.length - n] = 0
            buffer[self.rows, :, self.length - n : self.length] = part[0]
        self.rows += 1
        self._views()


class ContinuousBatcher:
    """Runs requests to the end of their turn, ``batch_size`` at a time (see the module docstring).

    ``sample(logits, seen)`` turns the last logits ``[rows, vocab]`` into next tokens ``[rows]``;
    ``seen`` marks the tokens each row has in its prompt and output (for a repetition penalty).
    ``finish(request, generated_ids) -> Completion | None`` says whether a row has ended.
    """

    #: Below this many shared tokens, a remembered prompt is not worth reusing across conversations.
    MIN_SHARED_PREFIX = 16
    #: Padding columns every row has before they are cut off the cache (cutting moves every row).
    MIN_TRIM = 64

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
        mask = torch.zeros(0, 0, dtype=torch.long, device=device)
        seen = torch.zeros(0, self._vocab, dtype=torch.bool, device=device)
        logits = torch.zeros(0, self._vocab, device=device)
        cache: Cache | None = None

        while True:
            while len(rows) < batch_size and (request := next_request()) is not None:
                row, row_layers, row_logits = self._prefill(request)
                length = len(row.ids)
                if cache is None:
                    cache = Cache(layers=[SlotLayer(k, v, batch_size) for k, v in row_layers])
                else:
                    for slot_layer, (k, v) in zip(cache.layers, row_layers, strict=True):
                        slot_layer.add(k, v)
                width = mask.shape[1]
                row_mask = torch.zeros(1, max(width, length), dtype=torch.long, device=device)
                row_mask[:, -length:] = 1
                mask = torch.cat([F.pad(mask, (max(0, length - width), 0)), row_mask])
                row_seen = torch.zeros(1, self._vocab, dtype=torch.bool, device=device)
                row_seen[0, row.ids] = True
                seen = torch.cat([seen, row_seen])
                logits = torch.cat([logits, row_logits])
                rows.append(row)
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
                        for k, v in _layers(cache)
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
                mask, seen, logits = mask[index], seen[index], logits[index]
                tokens = [tokens[i] for i in keep]
                # drop the columns that are padding in every remaining row, once there are enough
                # of them to pay for moving every row's keys/values
                first = int(mask.any(dim=0).long().argmax()) if rows else mask.shape[1]
                if rows and first < self.MIN_TRIM:
                    first = 0
                mask = mask[:, first:]
                for slot_layer in cache.layers:
                    slot_layer.keep(keep, first)
            if not rows:
                continue

            positions = mask.sum(dim=1, keepdim=True)  # each row's next position: its real tokens so far
            mask = F.pad(mask, (0, 1), value=1)
            out = self.model(
                input_ids=torch.tensor(tokens, device=device)[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
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
