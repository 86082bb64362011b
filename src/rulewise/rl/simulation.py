"""A controlled two-mode bandit with a known optimum, to see what IFPO does to a policy.

Why a simulation: on 2 CPU cores a real RL run moves the 135M model too little to tell GRPO
from IFPO, and a real run cannot say what the *right* consult rate is. Here it is known:

- prompts are harmful (half) or benign look-alikes; a rollout either consults the rules or
  answers directly (its *mode*);
- the reward is Bernoulli: harmful → 0.9 when consulting, 0.6 direct; benign → 0.9 direct and
  ``benign_consult_reward`` (< 0.9) when consulting (a rule read can tip a look-alike into a
  refusal). The optimum is to consult on every harmful prompt and on no benign one;
- the policy is ``P(consult | type) = sigmoid(a + c·x_type)`` with ``x_harmful = 1`` and
  ``x_benign = LOOKALIKE_SIMILARITY``: look-alikes share features with harmful requests, so
  learning to consult on harmful prompts also raises the benign rate — the drift IFPO is
  meant to resist.

Each step samples ``prompts`` prompts × ``group`` rollouts, computes advantages with the
trainer's own registered estimators (``grpo``, or ``ifpo``: :mod:`rulewise.rl.advantages`),
then takes an exact policy-gradient step (the
mean of ``advantage · ∇ log π(mode)``, as GRPO's loss averages over rollouts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rulewise.rl.advantages import IFPOSettings, IFPOState, ModeBatch, get_estimator

LOOKALIKE_SIMILARITY = 0.6


@dataclass(frozen=True)
class SimulationConfig:
    steps: int = 300
    prompts: int = 8  # per step, half harmful
    group: int = 8  # rollouts per prompt
    lr: float = 0.5
    start_consult: float = 0.5  # initial consult rate on both types (a = logit, c = 0)
    benign_consult_reward: float = 0.8  # success rate of a consulting rollout on a benign prompt
    seed: int = 0

    def reward(self, kind: str, consulted: bool) -> float:
        """Success probability of a rollout (harmful: 0.9 / 0.6; benign: this / 0.9)."""
        if kind == "harmful":
            return 0.9 if consulted else 0.6
        return self.benign_consult_reward if consulted else 0.9


@dataclass(frozen=True)
class Trace:
    """Per step (index 0 = before training): consult rates and expected rewards by prompt type."""

    consult_harmful: list[float]
    consult_benign: list[float]
    reward_harmful: list[float]  # expected reward on harmful prompts: the simulated safety
    reward_benign: list[float]


def consult_probabilities(theta: torch.Tensor) -> tuple[float, float]:
    a, c = theta.tolist()
    sigmoid = lambda z: 1 / (1 + math.exp(-z))
    return sigmoid(a + c), sigmoid(a + c * LOOKALIKE_SIMILARITY)


def expected_reward(config: SimulationConfig, kind: str, p_consult: float) -> float:
    return p_consult * config.reward(kind, True) + (1 - p_consult) * config.reward(kind, False)


def simulate(config: SimulationConfig, ifpo: IFPOSettings | None = None) -> Trace:
    """Train the bandit policy with GRPO (``ifpo=None``) or IFPO; deterministic for a seed."""
    estimator = get_estimator("grpo" if ifpo is None else "ifpo")  # the trainer's own estimators
    generator = torch.Generator().manual_seed(config.seed)
    start = math.log(config.start_consult / (1 - config.start_consult))
    theta = torch.tensor([start, 0.0], dtype=torch.float64)
    state = IFPOState()
    kinds = ["harmful", "benign"] * (config.prompts // 2)
    features = torch.tensor(
        [1.0 if k == "harmful" else LOOKALIKE_SIMILARITY for k in kinds], dtype=torch.float64
    )
    features = features.repeat_interleave(config.group)  # one row per rollout
    trace = Trace([], [], [], [])

    def record() -> None:
        p_h, p_b = consult_probabilities(theta)
        trace.consult_harmful.append(p_h)
        trace.consult_benign.append(p_b)
        trace.reward_harmful.append(expected_reward(config, "harmful", p_h))
        trace.reward_benign.append(expected_reward(config, "benign", p_b))

    record()
    for _ in range(config.steps):
        logits = theta[0] + theta[1] * features
        p = torch.sigmoid(logits)
        modes = torch.rand(len(p), generator=generator, dtype=torch.float64) < p
        rollout_kinds = [k for k in kinds for _ in range(config.group)]
        success = torch.tensor([config.reward(k, bool(m)) for k, m in zip(rollout_kinds, modes, strict=True)])
        rewards = (torch.rand(len(p), generator=generator, dtype=torch.float64) < success).double()
        advantages, _ = estimator(ModeBatch(rewards, modes, config.group), ifpo or IFPOSettings(), state)
        # d log pi(mode) / d logit = mode - p; d logit / d theta = (1, x)
        score = modes.double() - p
        gradient = torch.stack([(advantages * score).mean(), (advantages * score * features).mean()])
        theta = theta + config.lr * gradient
        record()
    return trace


def mean_traces(traces: list[Trace]) -> Trace:
    """The per-step mean over seeds."""
    fields = ("consult_harmful", "consult_benign", "reward_harmful", "reward_benign")
    return Trace(
        *(
            [sum(values) / len(values) for values in zip(*(getattr(t, f) for t in traces), strict=True)]
            for f in fields
        )
    )


def at_safety(trace: Trace, level: float) -> tuple[int, float] | None:
    """The first step whose simulated safety reaches ``level``, and the benign consult rate there."""
    for step, safety in enumerate(trace.reward_harmful):
        if safety >= level:
            return step, trace.consult_benign[step]
    return None
