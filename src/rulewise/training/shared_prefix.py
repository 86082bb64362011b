"""Shared-prefix forward: encode the tokens every row of a batch starts with once.

Every trajectory, rollout and preference pair here begins with the same system prompt and tool
schema (~280 tokens of ~640), and a GRPO group or a DPO pair also shares its user turn. The
plain forward pushes that prefix through the network once per row. Here it is encoded once
(batch 1), its keys/values are repeated for every row, and each row's remaining tokens attend to
them (the idea of Prefix Grouper, arXiv 2506.05433). Logits, loss and gradients equal the plain
forward's: the prefix rows would all compute the same activations, and the backward of the
repeat sums their gradients exactly as the plain backward does.

Only the positions that carry a label go through the LM head (TRL's fused head scores every
position on a CPU), which on a 49k-token vocabulary is a fifth of a small model's cost.

The hook sits where TRL's SFT, DPO and GRPO trainers all call the model —
``model(..., labels=labels, fused_lm_head=True)`` — so the trainers run unchanged, through PEFT
and ``accelerate``'s wrappers. A batch whose rows share fewer than :data:`MIN_SHARED` tokens
before the first label, a model that scales or soft-caps its logits, gradient checkpointing and
any extra model input (images, packed sequences) go to TRL's own path.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, TrainerCallback

#: Below this many shared tokens the separate prefix pass costs more than it saves.
MIN_SHARED = 16

#: Config fields with which a model changes its logits after the LM head (TRL's fused head
#: knows them all; this path does not, so such models keep TRL's path).
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def row_starts(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's first real token (rows may be left- or right-padded). Shape ``[B]``."""
    return attention_mask.long().argmax(dim=1)


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> int:
    """How many leading real tokens every row shares and may be encoded once.

    The prefix stops one token before the earliest label of any row (that token's output
    predicts the label, so it must be a row's own position), and leaves every row at least one
    token of its own. Rows are ``[left padding][real tokens][right padding]``; labels are in the
    unshifted convention (``labels[:, t]`` is the target of position ``t - 1``), ``-100`` unused.
    0 when fewer than :data:`MIN_SHARED` tokens qualify.
    """
    batch, width = input_ids.shape
    if batch < 2:
        return 0
    starts = row_starts(attention_mask)
    lengths = attention_mask.long().sum(dim=1)
    columns = torch.arange(width, device=input_ids.device)
    limit = int(lengths.min()) - 1
    labelled = labels != -100
    if labelled.any():
        first_label = torch.where(labelled, columns, width).min(dim=1).values
        limit = min(limit, int((first_label - starts).min()) - 1)
    if limit < MIN_SHARED:
        return 0
    aligned = torch.gather(input_ids, 1, (starts[:, None] + columns[None, :limit]).clamp(max=width - 1))
    differs = (aligned != aligned[:1]).any(dim=0)
    shared = int(differs.long().argmax()) if differs.any() else limit
    return shared if shared >= MIN_SHARED else 0


def _drop_prefix(tensor: torch.Tensor, starts: torch.Tensor, shared: int) -> torch.Tensor:
    """Each row without its ``shared`` prefix columns (width shrinks by ``shared``)."""
    columns = torch.arange(tensor.shape[1], device=tensor.device)[None, :]
    keep = (columns < starts[:, None]) | (columns >= starts[:, None] + shared)
    return tensor[keep].view(tensor.shape[0], tensor.shape[1] - shared)


def suffix_hidden_states(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, shared: int
) -> torch.Tensor:
    """Last hidden states of every row's columns after the shared prefix, prefix encoded once.

    Returns ``[B, width - shared, hidden]``; column ``c`` is original column ``c + shared`` for
    every real token past the prefix (left padding, which has no output that matters, moves).
    """
    backbone = getattr(model, model.base_model_prefix)
    batch = input_ids.shape[0]
    starts = row_starts(attention_mask)
    prefix_ids = input_ids[:1, int(starts[0]) : int(starts[0]) + shared]
    cache = DynamicCache(config=model.config)
    backbone(input_ids=prefix_ids, past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(batch)
    suffix_ids = _drop_prefix(input_ids, starts, shared)
    suffix_mask = _drop_prefix(attention_mask, starts, shared)
    full_mask = torch.cat([suffix_mask.new_ones(batch, shared), suffix_mask], dim=1)
    # Positions count real tokens only, so a left-padded row continues right after the prefix.
    positions = (full_mask.long().cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
    output = backbone(
        input_ids=suffix_ids,
        attention_mask=full_mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    return output.last_hidden_state


@dataclass
class ScoredLabels:
    """What TRL's fused head returns (``FusedCausalLMOutput``'s fields the trainers read).

    Per-token fields have shape ``[B, width - 1]`` (column ``t`` scores ``labels[:, t + 1]``) and
    are zero where the label is ``-100``.
    """

    loss: torch.Tensor
    log_probs: torch.Tensor
    entropy: torch.Tensor
    is_top1: torch.Tensor
    label_mask: torch.Tensor
    shared_prefix: int
    aux_loss: torch.Tensor | None = None
    log_sum_sq_probs: torch.Tensor | None = None
    mean_logits: torch.Tensor | None = None


def score_labels(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    shared: int,
    *,
    temperature: float = 1.0,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> ScoredLabels:
    """Log-probabilities of the labels, the prefix encoded once and only labelled positions scored."""
    hidden = suffix_hidden_states(model, input_ids, attention_mask, shared)[:, :-1]
    targets = labels[:, shared + 1 :]
    mask = targets != -100
    head = model.get_output_embeddings()
    logits = head(hidden[mask])
    scaled = logits.float() / temperature
    log_softmax = torch.log_softmax(scaled, dim=-1)
    picked = log_softmax.gather(1, targets[mask][:, None]).squeeze(1)
    with torch.no_grad():
        entropy = -(log_softmax.exp() * log_softmax).sum(dim=-1)
        top1 = log_softmax.argmax(dim=-1) == targets[mask]
        mean_logits = scaled.mean(dim=-1)
        log_sum_sq_probs = torch.logsumexp(2 * log_softmax, dim=-1)
    full = torch.zeros(labels.shape[0], labels.shape[1] - 1, device=labels.device)
    label_mask = labels[:, 1:] != -100

    def place(values: torch.Tensor) -> torch.Tensor:
        # masked_scatter keeps the graph even when no position is labelled.
        out = full.to(values.dtype)
        return torch.cat([out[:, :shared], out[:, shared:].masked_scatter(mask, values)], dim=1)

    log_probs = place(picked)
    count = label_mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return ScoredLabels(
        loss=-log_probs.sum() / count,
        log_probs=log_probs,
        entropy=place(entropy),
        is_top1=place(top1),
        label_mask=label_mask,
        shared_prefix=shared,
        mean_logits=place(mean_logits),
        log_sum_sq_probs=place(log_sum_sq_probs),
    )


#: Forward arguments the shared path understands; any other goes to TRL's path.
_HANDLED = {"input_ids", "attention_mask", "use_cache", "labels", "num_items_in_batch", "fused_lm_head"}


def _plain_logits(model: PreTrainedModel) -> bool:
    text_config = model.config.get_text_config()
    return all(getattr(text_config, name, None) in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS)


def _checkpointing(model: PreTrainedModel) -> bool:
    """Activation checkpointing recomputes layers without a cache: the shared path needs one."""
    flag = (
        "is_activation_checkpointing"
        if hasattr(type(model), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    return bool(getattr(model, flag, False))


@dataclass
class SharingStats:
    """Tokens the model was asked to encode and how many of them the shared path encoded once."""

    calls: int = 0
    shared_calls: int = 0
    prefix_tokens: int = 0  # sum over shared calls of the prefix length
    input_tokens: int = 0  # real tokens of every row of every call
    saved_tokens: int = 0  # (rows - 1) x prefix, summed

    def record(self, attention_mask: torch.Tensor, shared: int) -> None:
        self.calls += 1
        self.input_tokens += int(attention_mask.sum())
        if shared:
            self.shared_calls += 1
            self.prefix_tokens += shared
            self.saved_tokens += (attention_mask.shape[0] - 1) * shared

    def summary(self) -> str:
        if not self.calls:
            return "shared prefix: no labelled forward pass"
        if not self.shared_calls:
            return f"shared prefix: none in {self.calls} forward passes (plain path)"
        return (
            f"shared prefix: {self.prefix_tokens / self.shared_calls:.0f} tokens on average, encoded once in "
            f"{self.shared_calls}/{self.calls} forward passes ({self.saved_tokens / self.input_tokens:.0%} of "
            "input tokens not recomputed)"
        )


def enable_shared_prefix(model: PreTrainedModel, *, temperature: float = 1.0) -> SharingStats:
    """Route ``model(..., labels=..., fused_lm_head=True)`` calls through :func:`score_labels`.

    Call after the TRL trainer is built (it patches ``forward`` with its fused head first) on
    the causal LM itself (``get_base_model()`` under PEFT). ``temperature`` is the one the
    trainer gave its fused head (GRPO's sampling temperature; 1 for SFT and DPO). The model
    records the prefix length of its last call in ``rulewise_last_shared_prefix``.
    """
    stats = SharingStats()
    if not _plain_logits(model):
        return stats
    fallback = model.forward
    model.rulewise_last_shared_prefix = 0

    @functools.wraps(type(model).forward)  # generate() checks its kwargs against this signature
    def forward(self: PreTrainedModel, *args, **kwargs):
        scoring = bool(kwargs.get("fused_lm_head")) and kwargs.get("attention_mask") is not None
        shared = 0
        if (
            scoring
            and not args
            and set(kwargs) <= _HANDLED
            and kwargs.get("labels") is not None
            and not _checkpointing(self)
        ):
            shared = shared_prefix_length(kwargs["input_ids"], kwargs["attention_mask"], kwargs["labels"])
        self.rulewise_last_shared_prefix = shared
        if scoring:
            stats.record(kwargs["attention_mask"], shared)
        if not shared:
            return fallback(*args, **kwargs)
        return score_labels(
            self,
            kwargs["input_ids"],
            kwargs["attention_mask"],
            kwargs["labels"],
            shared,
            temperature=temperature,
            num_items_in_batch=kwargs.get("num_items_in_batch"),
        )

    model.forward = types.MethodType(forward, model)
    return stats


class SharingReport(TrainerCallback):
    """Logs the mean shared-prefix length per step (``shared_prefix`` in the log history) and
    prints the run's :meth:`SharingStats.summary` at the end."""

    def __init__(self, trainer: Any, stats: SharingStats) -> None:
        self.trainer, self.stats, self._seen = trainer, stats, (0, 0)

    def on_step_end(self, args, state, control, **kwargs):
        calls, tokens = self.stats.shared_calls, self.stats.prefix_tokens
        new_calls = calls - self._seen[0]
        mean = (tokens - self._seen[1]) / new_calls if new_calls else 0.0
        self.trainer._metrics["train"]["shared_prefix"].append(mean)
        self._seen = (calls, tokens)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            print(self.stats.summary(), flush=True)


def enable_for_trainer(trainer: Any, *, temperature: float = 1.0) -> SharingStats:
    """:func:`enable_shared_prefix` on a TRL trainer's model (PEFT unwrapped) and reference model,
    with a :class:`SharingReport` callback. Returns the policy's statistics."""
    model = trainer.model
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    stats = enable_shared_prefix(model, temperature=temperature)
    reference = getattr(trainer, "ref_model", None)
    if reference is not None:
        enable_shared_prefix(reference, temperature=temperature)
    trainer.add_callback(SharingReport(trainer, stats))
    return stats
