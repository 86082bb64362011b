"""Advantage estimators as registered pure functions (after verl's ``core_algos``).

IFPO — Inverse Frequency Policy Optimization — is our design; the paper's formula is not
public. A rollout's *mode* is whether it consulted the rules (a call counts even when the
completion was cut off). GRPO computes, inside each prompt's group ``g``,

    A_i = (r_i - mean_g r) / (std_g r + eps)

and IFPO rebalances it by how common the rollout's mode is:

    f_m   = share of rollouts in mode m, over the group (scope "group"), over the whole
            batch gathered from every process (scope "batch"; optionally smoothed across
            steps with an exponential moving average), or over the batch's rollouts of
            prompts with the same label, harmful or benign (scope "label");
    w_m   = f_m ** (-alpha), normalised so the mean weight over that population is 1, then
            clipped to [w_min, w_max];
    Ã_i   = w_{m_i} · A_i.

A rare mode's rollouts get larger advantages, in both directions, so the policy keeps learning
from the behaviour it is about to stop sampling, instead of drifting into always (or never)
consulting. With ``amplify: gains`` a weight above 1 scales only positive advantages: when the
rare mode's few rollouts are failures (a student that refuses plain tasks whenever it skips the
tool, docs/results.md "The quickstart"), amplifying them in both directions pushes the policy
out of that mode faster than GRPO would, the drift IFPO exists to stop. ``alpha = 0`` gives
every weight exactly 1.0 and is GRPO bit for bit; a mode that does not occur gets no weight and
changes nothing; a population with one mode gets weight 1.

Why a ``label`` scope: in batch scope harmful and benign prompts share one weight per mode.
When the rare direct rollouts are mostly failures on harmful requests (docs/results.md, "IFPO
against GRPO"), amplifying them pushes every prompt towards consulting, benign ones included.
Label scope takes the shares within the harmful and within the benign rollouts, so a benign
prompt's rare direct answer is weighed against other benign rollouts only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["group", "batch", "label"]


class ModeBatch(NamedTuple):
    """One step's rollouts, gathered from every process.

    Shapes: ``rewards`` float [B] (B = groups × ``group_size``, each group contiguous; NaN marks
    a rollout no reward function scored), ``modes`` bool [B] (True = consulted).
    """

    rewards: torch.Tensor
    modes: torch.Tensor
    group_size: int
    harmful: torch.Tensor | None = None  # bool [B]: the rollout's prompt is harmful (IFPO's label scope)


class AdvantageEstimator(Protocol):
    """``(batch, settings, state) → (advantages [B], weights [B])``: 0 advantage for unscored
    rollouts; ``weights`` are the per-rollout factors applied to GRPO-style advantages (ones
    when an estimator applies none). ``state`` carries what an estimator smooths across steps."""

    def __call__(
        self, batch: ModeBatch, settings: IFPOSettings, state: IFPOState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register(name: str) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Add an estimator under ``name``; a name registered twice is an error, not an override."""

    def decorate(fn: AdvantageEstimator) -> AdvantageEstimator:
        if name in ADVANTAGE_ESTIMATORS:
            raise ValueError(f"advantage estimator {name!r} is already registered")
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn

    return decorate


def get_estimator(name: str) -> AdvantageEstimator:
    """The estimator registered as ``name``; an unknown name lists the known ones."""
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        known = ", ".join(sorted(ADVANTAGE_ESTIMATORS))
        raise ValueError(f"unknown advantage estimator {name!r}; known: {known}") from None


def grpo_advantages(
    rewards: torch.Tensor, group_size: int, *, scale: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """Group-relative advantages exactly as TRL's GRPOTrainer computes them (``scale_rewards:
    group``, with TRL's own ``nanstd``): NaN rewards are left out of their group's mean and
    unbiased std, and get 0."""
    from trl.trainer.utils import nanstd  # here, not at import: TRL loads slowly, settings need this module

    grouped = rewards.view(-1, group_size)
    advantages = grouped - grouped.nanmean(dim=1, keepdim=True)
    if scale:
        advantages = advantages / (nanstd(grouped, dim=1, keepdim=True) + eps)
    return torch.nan_to_num(advantages.reshape(-1), nan=0.0)


class IFPOSettings(BaseModel):
    """IFPO's knobs (README, "IFPO"): strength, population, smoothing, clipping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(default=0.5, ge=0, description="strength: weight = share^-alpha; 0 is exactly GRPO")
    scope: Scope = Field(
        default="batch",
        description="population a mode's share is taken over: batch, group, or label (the batch's "
        "harmful-prompt rollouts and its benign-prompt rollouts separately)",
    )
    ema: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="smooth the batch share across steps (0: off; 0.9 remembers ~10 steps)",
    )
    w_min: float = Field(default=0.2, gt=0, le=1, description="lower clip of a weight")
    w_max: float = Field(
        default=5.0, ge=1, description="upper clip of a weight (bounds a rare rollout's push)"
    )
    amplify: Literal["both", "gains"] = Field(
        default="both",
        description="which advantages a weight above 1 scales: 'both' signs, or only 'gains' (a rare "
        "mode's failures then count as in GRPO, so failing at it does not push it out faster)",
    )


def populations(
    n: int,
    group_size: int,
    scope: Scope,
    labels: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Each rollout's population index [n]: its group, the whole batch, or its prompt's label."""
    if scope == "group":
        return torch.arange(n, device=device) // group_size
    if scope == "label":
        if labels is None:
            raise ValueError("IFPO's label scope needs each rollout's prompt label")
        return labels.long().reshape(-1).to(device)
    return torch.zeros(n, dtype=torch.long, device=device)


def _population_mean(values: torch.Tensor, population: torch.Tensor) -> torch.Tensor:
    """Each element's population mean of ``values`` (populations are small integer ids)."""
    size = int(population.max()) + 1
    sums = values.new_zeros(size).index_add_(0, population, values)
    counts = values.new_zeros(size).index_add_(0, population, torch.ones_like(values))
    return (sums / counts)[population]


def mode_frequencies(
    modes: torch.Tensor, group_size: int, scope: Scope, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """For each rollout, the share of its population (group, batch or label) in the same mode."""
    modes = modes.bool()
    population = populations(len(modes), group_size, scope, labels, modes.device)
    share_on = _population_mean(modes.float(), population)
    return torch.where(modes, share_on, 1 - share_on)


def inverse_frequency_weights(
    frequencies: torch.Tensor, group_size: int, settings: IFPOSettings, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``w = f^-alpha``, mean-normalised over each population, clipped. ``alpha = 0`` → all 1.0."""
    if settings.alpha == 0:
        return torch.ones_like(frequencies)
    raw = frequencies.clamp_min(1e-8) ** (-settings.alpha)
    population = populations(len(raw), group_size, settings.scope, labels, raw.device)
    return (raw / _population_mean(raw, population)).clamp(settings.w_min, settings.w_max)


class IFPOState:
    """Smoothed batch-level share of the 'consulted' mode across steps (used when ema > 0)."""

    def __init__(self) -> None:
        self.share_consulted: float | None = None

    def smoothed(self, current: float, ema: float) -> float:
        if ema == 0 or self.share_consulted is None:
            self.share_consulted = current
        else:
            self.share_consulted = ema * self.share_consulted + (1 - ema) * current
        return self.share_consulted


def ifpo_advantages(
    advantages: torch.Tensor,
    modes: torch.Tensor,
    group_size: int,
    settings: IFPOSettings,
    state: IFPOState | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rebalance GRPO ``advantages`` by mode frequency; returns ``(new advantages, weights)``.

    ``modes`` (True = consulted), ``advantages`` and, for ``label`` scope, ``labels`` (True =
    harmful prompt) cover the whole population the scope names: for ``batch`` and ``label``
    scope, gather them from every process first.
    """
    frequencies = mode_frequencies(modes, group_size, settings.scope, labels)
    if settings.scope == "batch" and state is not None and settings.ema > 0:
        share = state.smoothed(float(modes.float().mean()), settings.ema)
        frequencies = torch.where(modes.bool(), torch.tensor(share), torch.tensor(1 - share)).to(
            advantages.dtype
        )
    weights = inverse_frequency_weights(frequencies, group_size, settings, labels).to(advantages.dtype)
    if settings.amplify == "gains":
        weights = torch.where((weights > 1) & (advantages < 0), torch.ones_like(weights), weights)
    return advantages * weights, weights


def mode_statistics(
    modes: torch.Tensor,
    harmful: torch.Tensor,
    weights: torch.Tensor,
    rewards: torch.Tensor,
    advantages: torch.Tensor,
) -> dict[str, float]:
    """What to watch per step: how often each mode occurs, what it weighs, earns and moves.

    ``adv_mass/<mode>`` is the mode's share of the total absolute advantage, i.e. of the
    policy-gradient signal; IFPO exists to keep the rare mode's share from vanishing.
    Keys for a mode (or prompt label) absent from the batch are left out rather than logged as 0.
    """
    modes, harmful = modes.bool(), harmful.bool()
    stats = {"ifpo/share_consulted": modes.float().mean().item()}
    total_mass = advantages.abs().sum().item()
    for name, selected in (("consulted", modes), ("direct", ~modes)):
        if not selected.any():
            continue
        stats[f"ifpo/weight/{name}"] = weights[selected].mean().item()
        stats[f"ifpo/reward/{name}"] = torch.nanmean(rewards[selected]).item()
        if total_mass > 0:
            stats[f"ifpo/adv_mass/{name}"] = advantages[selected].abs().sum().item() / total_mass
    for name, selected in (("harmful", harmful), ("benign", ~harmful)):
        if selected.any():
            stats[f"consult_rate/{name}"] = modes[selected].float().mean().item()
    return stats


@register("grpo")
def grpo_estimator(
    batch: ModeBatch, settings: IFPOSettings, state: IFPOState | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO: each rollout's reward against its group's mean, in units of the group's std."""
    return grpo_advantages(batch.rewards, batch.group_size), torch.ones_like(batch.rewards)


@register("dr_grpo")
def dr_grpo_estimator(
    batch: ModeBatch, settings: IFPOSettings, state: IFPOState | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dr. GRPO's advantage (Liu et al., 2025, "Understanding R1-Zero-Like Training"): the
    reward minus its group's mean, *not* divided by the group's std.

    Why have it: dividing by the std scales every group to the same spread, so a group whose
    rewards barely differ (a full refusal at 1.0 against a bare one at 0.5) pushes as hard as a
    group split between refusing and complying (1.0 against 0.0); without it, a prompt's push
    grows with how much its outcomes differ. (Dr. GRPO also drops the per-sequence length
    normalisation of the loss: TRL's ``loss_type: dr_grpo``.)
    """
    return grpo_advantages(batch.rewards, batch.group_size, scale=False), torch.ones_like(batch.rewards)


@register("ifpo")
def ifpo_estimator(
    batch: ModeBatch, settings: IFPOSettings, state: IFPOState | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """IFPO: GRPO's advantages rebalanced by the inverse frequency of each rollout's mode."""
    advantages = grpo_advantages(batch.rewards, batch.group_size)
    return ifpo_advantages(advantages, batch.modes, batch.group_size, settings, state, batch.harmful)
