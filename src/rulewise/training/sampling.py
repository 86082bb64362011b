"""Length-grouped batches in random order.

Grouping examples of similar length into a batch cuts padding (75 vs 62 tokens/s for SFT of
the default model here). transformers' ``group_by_length`` does it by sorting mega-batches of
50 batches from longest to shortest — so within a mega-batch training walks from long to short
examples. Over whole epochs that evens out; over the fraction of an epoch a CPU run affords it
is a curriculum nobody asked for: the behaviour cloning data's long examples are the ones that
consult the rules and the short ones answer directly, and a model stopped mid-way learns
whichever band it saw last (measured: after 24 of 35 sorted steps, the default model opened
every answer like the last length band's trajectories). Here the batches are built the same
way but visited in random order, so every stretch of training sees the whole mix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def shuffled_length_grouped_indices(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator, mega_batch_mult: int = 50
) -> list[int]:
    """Indices whose consecutive ``batch_size`` slices have similar lengths, slices in random order."""
    indices = torch.randperm(len(lengths), generator=generator).tolist()
    size = mega_batch_mult * batch_size
    batches = []
    for start in range(0, len(indices), size):
        mega = sorted(indices[start : start + size], key=lambda i: lengths[i], reverse=True)
        batches += [mega[i : i + batch_size] for i in range(0, len(mega), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [index for b in order for index in batches[b]]


class ShuffledLengthGroupedSampler(Sampler[int]):
    """A sampler over :func:`shuffled_length_grouped_indices`, reshuffled each epoch, same for a seed."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(shuffled_length_grouped_indices(self.lengths, self.batch_size, generator))
