"""DAPO's dynamic sampling: which groups are flat, which rows a step trains on, taking them from TRL's batch."""

import math

import datasets
import pytest
import torch

from rulewise.rl.dynamic_sampling import SparePrompts, flat_groups, rows_to_train, take_rows

NAN = math.nan


def test_flat_groups_are_those_with_one_reward_among_their_scored_rollouts():
    rewards = torch.tensor(
        [
            *[1.2, 1.2, 1.2, 1.2],  # flat
            *[1.2, 0.7, 1.2, 1.2],  # varies
            *[0.5, NAN, 0.5, 0.5],  # flat: the unscored rollout is left out
            *[NAN, NAN, 0.3, NAN],  # one scored rollout: nothing to compare
            *[0.0, NAN, 1.0, NAN],  # varies
        ]
    )
    assert flat_groups(rewards, 4) == [0, 2, 3]
    assert flat_groups(torch.tensor([0.2, 0.2 + 1e-9, 0.9, 0.1]), 2) == [0]  # float noise is no signal


def test_a_flat_group_gives_way_to_its_first_candidate_that_varies():
    # 2 groups of 2, then 2 candidates each: group 0's are groups 2 and 3, group 1's 4 and 5
    rewards = torch.tensor(
        [
            *[1.0, 1.0],  # group 0: flat
            *[0.0, 1.0],  # group 1: varies, stays
            *[0.5, 0.5],  # group 2: flat candidate, passed over
            *[0.2, 0.9],  # group 3: group 0's first varying candidate
            *[0.1, 0.8],  # groups 4, 5: group 1's, unused
            *[0.3, 0.3],
        ]
    )
    rows, flat, replaced = rows_to_train(rewards, 2, groups=2, tries=2)
    assert rows == [6, 7, 2, 3] and flat == [0] and replaced == 1
    # no candidate varies: the flat group stays (still counted among the flat ones)
    rows, flat, replaced = rows_to_train(torch.tensor([1.0, 1.0, 0.4, 0.4]), 2, groups=1, tries=1)
    assert rows == [0, 1] and flat == [0] and replaced == 0


def test_take_rows_keeps_the_rows_chosen_and_drops_columns_left_all_padding():
    batch = {  # prompts left-padded to 3, completions right-padded to 3 (row 2's the longest)
        "prompt_ids": torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [0, 0, 4]]),
        "prompt_mask": torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]]),
        "completion_ids": torch.tensor([[1, 0, 0], [2, 3, 0], [4, 5, 6], [7, 0, 0]]),
        "completion_mask": torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]]),
        "tool_mask": torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]]),
        "advantages": torch.tensor([0.5, -0.5, 0.7, -0.7]),
        "num_items_in_batch": torch.tensor(8),
    }
    out = take_rows(batch, [3, 0, 1])
    assert "num_items_in_batch" not in out  # the caller recounts it
    assert out["prompt_ids"].tolist() == [[0, 4], [5, 6], [5, 6]]
    assert out["prompt_mask"].tolist() == [[0, 1], [1, 1], [1, 1]]
    assert out["completion_ids"].tolist() == [[7, 0], [1, 0], [2, 3]]
    assert out["tool_mask"].tolist() == [[1, 1], [1, 1], [1, 0]]
    assert out["advantages"].tolist() == pytest.approx([-0.7, 0.5, -0.5])
    assert take_rows(batch, [0], pad_multiple=2)["completion_ids"].tolist() == [[1, 0]]  # width stays even


def test_take_rows_refuses_an_entry_it_cannot_align_with_rows():
    batch = {"advantages": torch.zeros(2), "pixel_values": torch.zeros(5, 3)}
    with pytest.raises(ValueError, match="pixel_values"):
        take_rows(batch, [0])


def test_spare_prompts_come_from_the_kind_asked_for_each_once_per_pass():
    rows = [{"prompt": f"h{i}", "kind": "harmful"} for i in range(3)] + [{"prompt": "p0", "kind": "plain"}]
    spares = SparePrompts(datasets.Dataset.from_list(rows), seed=0)
    first_pass = {spares.draw("harmful")["prompt"] for _ in range(3)}
    assert first_pass == {"h0", "h1", "h2"}  # every harmful prompt before any repeats
    assert spares.draw("harmful")["prompt"].startswith("h")
    assert spares.draw("plain")["prompt"] == "p0"
    assert spares.draw("maths")["prompt"] in {"h0", "h1", "h2", "p0"}  # a kind it lacks: any
