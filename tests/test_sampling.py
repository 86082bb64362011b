"""Length-grouped batches in random order (rulewise.training.sampling)."""

from __future__ import annotations

import torch

from rulewise.training.sampling import ShuffledLengthGroupedSampler, shuffled_length_grouped_indices


def test_every_index_once_batches_homogeneous_and_order_random():
    # Two length bands, like BC data: long consulting trajectories and short direct ones.
    lengths = [700 + i % 50 for i in range(200)] + [350 + i % 50 for i in range(200)]
    order = shuffled_length_grouped_indices(lengths, 4, torch.Generator().manual_seed(0), mega_batch_mult=25)
    assert sorted(order) == list(range(400))
    batches = [order[i : i + 4] for i in range(0, 400, 4)]
    mixed = [b for b in batches if max(lengths[i] for i in b) - min(lengths[i] for i in b) >= 100]
    assert len(mixed) <= 4  # at most the one batch per mega-batch that straddles the two bands
    # A partial epoch sees both bands early: no long-to-short walk.
    first_tenth = [lengths[b[0]] >= 700 for b in batches[:10]]
    assert any(first_tenth) and not all(first_tenth)


def test_transformers_grouping_walks_from_long_to_short_which_is_why_we_shuffle():
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [700 + i % 50 for i in range(200)] + [350 + i % 50 for i in range(200)]
    order = get_length_grouped_indices(
        lengths, 4, mega_batch_mult=100, generator=torch.Generator().manual_seed(0)
    )
    firsts = [lengths[order[i]] for i in range(0, 400, 4)]
    assert firsts[1:] == sorted(firsts[1:], reverse=True)  # one mega-batch: a walk from long to short


def test_sampler_is_seeded_and_reshuffles_per_epoch():
    lengths = list(range(100))
    a, b = ShuffledLengthGroupedSampler(lengths, 4, seed=1), ShuffledLengthGroupedSampler(lengths, 4, seed=1)
    assert list(a) == list(b) and len(a) == 100
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == lengths
