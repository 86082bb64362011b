import pytest
import torch

from rulewise.rl.advantages import (
    ADVANTAGE_ESTIMATORS,
    IFPOSettings,
    IFPOState,
    ModeBatch,
    get_estimator,
    grpo_advantages,
    ifpo_advantages,
    inverse_frequency_weights,
    mode_frequencies,
    register,
)

T, F = True, False


def test_grpo_matches_hand_computed_values():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    # group 1: mean 0.25, unbiased std sqrt((0.75² + 3·0.25²)/3) = 0.5; group 2: mean 0.5, std sqrt(4·0.25/3)
    std2 = (1 / 3) ** 0.5
    expected = torch.tensor(
        [
            0.75 / 0.5001,
            -0.25 / 0.5001,
            -0.25 / 0.5001,
            -0.25 / 0.5001,
            0.5 / (std2 + 1e-4),
            0.5 / (std2 + 1e-4),
            -0.5 / (std2 + 1e-4),
            -0.5 / (std2 + 1e-4),
        ]
    )
    assert torch.allclose(grpo_advantages(rewards, 4), expected, atol=1e-6)
    assert torch.equal(
        grpo_advantages(rewards, 4, scale=False),
        torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]),
    )
    assert set(ADVANTAGE_ESTIMATORS) >= {"grpo", "dr_grpo", "ifpo"}


def test_unscored_rollouts_leave_the_group_statistics_and_get_zero():
    """As in TRL: a NaN reward is out of its group's mean and std, and its advantage is 0."""
    rewards = torch.tensor([1.0, 0.0, float("nan"), 0.0])
    # mean 1/3; unbiased std over 3: sqrt(((2/3)² + 2·(1/3)²)/2) = sqrt(1/3)
    std = (1 / 3) ** 0.5
    expected = torch.tensor([(2 / 3) / (std + 1e-4), (-1 / 3) / (std + 1e-4), 0.0, (-1 / 3) / (std + 1e-4)])
    assert torch.allclose(grpo_advantages(rewards, 4), expected, atol=1e-6)


def test_registered_estimators_by_hand():
    rewards = torch.tensor([1.0, 0.5, 0.5, 0.5])
    modes = torch.tensor([T, F, F, F])
    settings = IFPOSettings(alpha=1.0, scope="group")
    batch = ModeBatch(rewards, modes, 4)
    grpo, ones = get_estimator("grpo")(batch, settings)
    # mean 0.625, unbiased std sqrt((0.375² + 3·0.125²)/3) = 0.25
    assert torch.allclose(grpo, torch.tensor([1.5, -0.5, -0.5, -0.5]) / 1.0004, atol=1e-6)
    assert torch.equal(ones, torch.ones(4))
    dr_grpo, _ = get_estimator("dr_grpo")(batch, settings)
    assert torch.allclose(dr_grpo, torch.tensor([0.375, -0.125, -0.125, -0.125]))
    ifpo, weights = get_estimator("ifpo")(batch, settings)
    # group shares 1/4 and 3/4 → raw weights 4 and 4/3, mean 2 → 2 and 2/3
    assert torch.allclose(weights, torch.tensor([2.0, 2 / 3, 2 / 3, 2 / 3]))
    assert torch.allclose(ifpo, grpo * weights)


def test_the_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match="unknown advantage estimator 'ppo'; known: dr_grpo, grpo, ifpo"):
        get_estimator("ppo")
    with pytest.raises(ValueError, match="'grpo' is already registered"):
        register("grpo")(lambda *args: args)


@pytest.mark.parametrize("scope", ["group", "batch"])
def test_alpha_zero_is_grpo_bit_for_bit(scope):
    torch.manual_seed(0)
    rewards = torch.rand(32)
    advantages = grpo_advantages(rewards, 4)
    modes = torch.rand(32) < 0.3
    rebalanced, weights = ifpo_advantages(advantages, modes, 4, IFPOSettings(alpha=0.0, scope=scope))
    assert torch.equal(rebalanced, advantages) and torch.equal(weights, torch.ones(32))


def test_group_scope_weights_by_hand():
    modes = torch.tensor([T, F, F, F, T, T, F, F])
    assert torch.allclose(
        mode_frequencies(modes, 4, "group"), torch.tensor([0.25, 0.75, 0.75, 0.75, 0.5, 0.5, 0.5, 0.5])
    )
    weights = inverse_frequency_weights(
        mode_frequencies(modes, 4, "group"), 4, IFPOSettings(alpha=1.0, scope="group")
    )
    # raw 1/f = [4, 4/3, 4/3, 4/3] with mean 2 → [2, 2/3, 2/3, 2/3]; a balanced group stays at 1
    assert torch.allclose(weights, torch.tensor([2.0, 2 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0]))


def test_batch_scope_one_rare_rollout_and_clipping():
    modes = torch.tensor([T] + [F] * 9)
    settings = IFPOSettings(alpha=1.0, scope="batch", w_max=3.0)
    # raw 1/f = [10, 10/9 × 9], mean 2 → [5, 5/9 × 9]; 5 is clipped to w_max = 3
    weights = inverse_frequency_weights(mode_frequencies(modes, 5, "batch"), 5, settings)
    assert torch.allclose(weights, torch.tensor([3.0] + [5 / 9] * 9))
    advantages = torch.tensor([1.0, -1.0, 0.5, 0.0, -0.5] * 2)
    rebalanced, _ = ifpo_advantages(advantages, modes, 5, settings)
    assert rebalanced[0] == pytest.approx(3.0) and rebalanced[1] == pytest.approx(-5 / 9)


def test_amplifying_only_gains_leaves_a_rare_modes_failures_at_grpo_scale():
    # group of 4, one direct rollout (rare): raw 1/f = [4/3 × 3, 4], mean 2 → [2/3 × 3, 2]
    modes = torch.tensor([T, T, T, F, T, T, T, F])
    advantages = torch.tensor([0.5, 0.5, 0.5, -1.5, -0.5, -0.5, -0.5, 1.5])
    both = IFPOSettings(alpha=1.0, scope="group")
    rebalanced, _ = ifpo_advantages(advantages, modes, 4, both)
    assert torch.allclose(rebalanced, torch.tensor([1 / 3] * 3 + [-3.0] + [-1 / 3] * 3 + [3.0]))
    gains = IFPOSettings(alpha=1.0, scope="group", amplify="gains")
    rebalanced, weights = ifpo_advantages(advantages, modes, 4, gains)
    # the rare mode's failure keeps its GRPO advantage (weight 1); its success is still doubled;
    # the common mode's weight below 1 scales both signs as before
    assert torch.allclose(weights, torch.tensor([2 / 3] * 3 + [1.0] + [2 / 3] * 3 + [2.0]))
    assert torch.allclose(rebalanced, torch.tensor([1 / 3] * 3 + [-1.5] + [-1 / 3] * 3 + [3.0]))


def test_absent_or_single_mode_changes_nothing():
    advantages = torch.tensor([0.5, -0.5, 1.0, -1.0])
    for modes in (torch.tensor([T, T, T, T]), torch.tensor([F, F, F, F])):
        for scope in ("group", "batch"):
            rebalanced, weights = ifpo_advantages(advantages, modes, 4, IFPOSettings(alpha=2.0, scope=scope))
            assert torch.equal(weights, torch.ones(4)) and torch.equal(rebalanced, advantages)


def test_zero_std_group_stays_zero():
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0])
    advantages = grpo_advantages(rewards, 4)
    rebalanced, _ = ifpo_advantages(
        advantages, torch.tensor([T, F, F, F]), 4, IFPOSettings(alpha=1.0, scope="group")
    )
    assert torch.equal(rebalanced, torch.zeros(4))


def test_ema_smooths_the_batch_share_across_steps():
    state = IFPOState()
    settings = IFPOSettings(alpha=1.0, scope="batch", ema=0.9)
    ifpo_advantages(torch.zeros(4), torch.tensor([T, T, F, F]), 2, settings, state)  # share 0.5
    advantages = torch.ones(10)
    modes = torch.tensor([T] + [F] * 9)  # current share 0.1, smoothed 0.9·0.5 + 0.1·0.1 = 0.46
    _, weights = ifpo_advantages(advantages, modes, 5, settings, state)
    assert state.share_consulted == pytest.approx(0.46)
    raw = torch.tensor([1 / 0.46] + [1 / 0.54] * 9)
    assert torch.allclose(weights, raw / raw.mean())


@pytest.mark.parametrize("bad", [{"alpha": -1.0}, {"ema": 1.0}, {"w_min": 0.0}, {"w_max": 0.5}])
def test_settings_are_validated(bad):
    with pytest.raises(ValueError):
        IFPOSettings(**bad)


def test_the_documented_new_estimator_registers_and_is_found_by_name(monkeypatch):
    """docs/architecture.md's RLOO example, executed as written."""
    import re
    from pathlib import Path

    from rulewise.rl import advantages

    monkeypatch.setattr(advantages, "ADVANTAGE_ESTIMATORS", dict(advantages.ADVANTAGE_ESTIMATORS))
    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    code = re.search(r"## Adding an advantage estimator.*?```python\n(.*?)```", doc, re.DOTALL).group(1)
    names = {
        "register": register,
        "ModeBatch": ModeBatch,
        "IFPOSettings": IFPOSettings,
        "IFPOState": IFPOState,
    }
    exec(compile(code, "architecture.md", "exec", dont_inherit=True), {**names, "torch": torch})  # noqa: S102
    rloo, weights = get_estimator("rloo")(
        ModeBatch(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4), 4), IFPOSettings()
    )
    # others' means: 0 for the first, 1/3 for each of the rest
    assert torch.allclose(rloo, torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3])) and torch.equal(
        weights, torch.ones(4)
    )


def test_label_scope_weighs_modes_within_harmful_and_within_benign_rollouts():
    modes = torch.tensor([T, F, F, F, T, T, T, F])
    harmful = torch.tensor([T, T, T, T, F, F, F, F])
    settings = IFPOSettings(alpha=1.0, scope="label")
    # harmful: consulted share 1/4 → raw 4, 4/3 ×3, mean 2; benign: share 3/4 → raw 4/3 ×3, 4
    expected = torch.tensor([2.0, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2.0])
    _, weights = ifpo_advantages(torch.ones(8), modes, 4, settings, labels=harmful)
    assert torch.allclose(weights, expected)
    # the same rollouts pooled (batch scope): half consulted, so every weight is 1
    _, pooled = ifpo_advantages(torch.ones(8), modes, 4, IFPOSettings(alpha=1.0, scope="batch"))
    assert torch.allclose(pooled, torch.ones(8))
    _, through_registry = get_estimator("ifpo")(ModeBatch(torch.rand(8), modes, 4, harmful), settings)
    assert torch.allclose(through_registry, expected)
    with pytest.raises(ValueError, match="label scope needs"):
        ifpo_advantages(torch.ones(8), modes, 4, settings)
