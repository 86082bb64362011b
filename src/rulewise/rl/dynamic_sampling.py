"""DAPO's dynamic sampling for TRL's GRPO batches: groups that carry no signal give way.

A group whose rollouts all earned the same reward has zero advantage under every estimator
here (GRPO, Dr. GRPO, IFPO: IFPO only rescales GRPO's advantages), so it adds nothing to the
gradient — and with the DAPO loss its tokens still dilute everyone else's. On the quickstart's
IFPO run half the steps had only such groups (grad norm 0: the whole step spent on nothing).
DAPO (Yu et al., 2025, §3.2) draws more prompts until the batch holds enough groups with
variance; TRL's GRPOTrainer has no such option (huggingface/trl#3708).
:class:`rulewise.rl.trainer.IFPOTrainer` generates, with the step's own groups and in the same
call, candidate groups for fresh prompts, and trains on the rows :func:`rows_to_train` picks.
In the same call, not in a second round afterwards: a step's generation waits for its longest
rollout, and on 2 CPU cores a decoding step of the 135M model costs little more for more rows
(a second round raised the quickstart's IFPO step from about 30 s to 50). The batch trained
keeps its size, so the optimiser step and its micro-batches are unchanged.

A candidate's prompt is of the same kind as the group it may replace (harmful, look-alike,
plain, maths, ...): the step's balance of kinds — which IFPO's mode frequencies are taken
over — stays as the sampler drew it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch

# TRL pads prompts on the left and everything per completion token on the right
LEFT_PADDED = ("prompt_ids", "prompt_mask")


def flat_groups(rewards: torch.Tensor, group_size: int) -> list[int]:
    """Indices of the groups whose scored rollouts all earned the same total reward.

    ``rewards``: float [B], groups of ``group_size`` contiguous rows; NaN marks a rollout no
    reward function scored (TRL gives it advantage 0), so it is left out, and a group with
    fewer than two scored rollouts is flat too.
    """
    flat = []
    for index, group in enumerate(rewards.view(-1, group_size)):
        scored = group[~torch.isnan(group)]
        if scored.numel() < 2 or torch.allclose(scored, scored[0].expand_as(scored)):
            flat.append(index)
    return flat


def rows_to_train(
    rewards: torch.Tensor, group_size: int, groups: int, tries: int
) -> tuple[list[int], list[int], int]:
    """Which generated rows a step trains on: ``rewards`` [B] hold the step's ``groups`` groups
    first, then ``tries`` candidate groups for each of them (group ``i``'s are groups
    ``groups + i·tries`` … ``groups + i·tries + tries − 1``). A flat group (:func:`flat_groups`)
    gives way to its first candidate that varies; with none, it stays.

    Returns the rows (``groups · group_size`` of them, group by group), the flat groups among
    the step's own, and how many of those were replaced.
    """
    flat = set(flat_groups(rewards, group_size))
    rows: list[int] = []
    replaced = 0
    for i in range(groups):
        chosen = i
        if i in flat:
            varied = [j for j in range(groups + i * tries, groups + (i + 1) * tries) if j not in flat]
            if varied:
                chosen, replaced = varied[0], replaced + 1
        rows += range(chosen * group_size, (chosen + 1) * group_size)
    return rows, sorted(f for f in flat if f < groups), replaced


def take_rows(
    batch: Mapping[str, Any], rows: Sequence[int], pad_multiple: int | None = None
) -> dict[str, Any]:
    """``batch``'s entries for ``rows`` only, columns that are padding in all of them dropped
    (prompts are left-padded, completions right-padded; widths stay multiples of
    ``pad_multiple``). Every entry must be row-aligned (first dimension = the batch's rows)
    except TRL's ``num_items_in_batch``, which the caller recounts; anything else is an error,
    not something silently kept from the wrong rows.
    """
    total = len(batch["advantages"])
    index = torch.tensor(list(rows), device=batch["advantages"].device)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "num_items_in_batch":
            continue
        if not (isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == total):
            raise ValueError(f"dynamic sampling cannot select rows of the batch entry {key!r}")
        out[key] = value[index]

    def width(used: int) -> int:
        return used if not pad_multiple else -(-used // pad_multiple) * pad_multiple

    prompt_width = out["prompt_mask"].shape[1]
    keep_prompt = width(int(out["prompt_mask"].sum(dim=1).max()))
    completion_width = out["completion_mask"].shape[1]
    keep_completion = width(int(out["completion_mask"].sum(dim=1).max()))
    for key, value in out.items():
        if key in LEFT_PADDED:
            out[key] = value[:, prompt_width - keep_prompt :]
        elif value.dim() >= 2 and value.shape[1] == completion_width:
            out[key] = value[:, :keep_completion]
    return out


class SparePrompts:
    """Fresh prompts for replacement groups: per kind, the dataset's rows in a seeded order,
    started again when used up. Rows without a ``kind`` column form one kind."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        kinds = dataset["kind"] if "kind" in dataset.column_names else [None] * len(dataset)
        self._by_kind: dict[Any, list[int]] = {}
        for index, kind in enumerate(kinds):
            self._by_kind.setdefault(kind, []).append(index)
        self._rng = random.Random(seed)
        self._queues: dict[Any, list[int]] = {}

    def draw(self, kind: Any) -> dict[str, Any]:
        """One row of ``kind`` (a kind the dataset lacks: any kind's)."""
        if kind not in self._by_kind:
            kind = self._rng.choice(sorted(self._by_kind, key=str))
        queue = self._queues.get(kind)
        if not queue:
            queue = self._queues[kind] = self._rng.sample(self._by_kind[kind], len(self._by_kind[kind]))
        return dict(self.dataset[queue.pop()])
