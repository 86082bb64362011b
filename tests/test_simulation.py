"""The IFPO simulation: a bandit with a known optimum, driven by the real advantage functions."""

import pytest
import torch

from rulewise.rl.advantages import IFPOSettings
from rulewise.rl.simulation import SimulationConfig, at_safety, expected_reward, mean_traces, simulate


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("scope", ["group", "batch"])
def test_ifpo_at_alpha_zero_is_grpo_step_for_step(scope):
    config = SimulationConfig(steps=40, seed=3)
    assert simulate(config, IFPOSettings(alpha=0.0, scope=scope)) == simulate(config, None)


def test_ifpo_weights_reach_the_update_and_the_policy_learns_the_harmful_mode():
    config = SimulationConfig(steps=60, seed=1)
    grpo, ifpo = simulate(config, None), simulate(config, IFPOSettings(alpha=1.0))
    assert grpo.consult_harmful[0] == ifpo.consult_harmful[0] == pytest.approx(0.5)
    assert ifpo.consult_harmful != grpo.consult_harmful  # the rebalanced advantages move the policy
    assert grpo.consult_harmful[-1] > 0.8 and grpo.reward_harmful[-1] > grpo.reward_harmful[0]


def test_simulation_helpers_by_hand():
    config = SimulationConfig(benign_consult_reward=0.6)
    assert expected_reward(config, "harmful", 0.5) == pytest.approx(0.75)  # (0.9 + 0.6) / 2
    assert expected_reward(config, "benign", 1.0) == pytest.approx(0.6)
    traces = [simulate(SimulationConfig(steps=5, seed=s), None) for s in range(2)]
    mean = mean_traces(traces)
    assert mean.consult_benign[3] == pytest.approx(
        (traces[0].consult_benign[3] + traces[1].consult_benign[3]) / 2
    )
    step, benign = at_safety(mean, mean.reward_harmful[2])
    assert step <= 2 and benign == mean.consult_benign[step]
    assert at_safety(mean, 2.0) is None
