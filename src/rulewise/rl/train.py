"""``rulewise train rl``: tool-use GRPO or IFPO from an SFT checkpoint, on TRL's GRPOTrainer.

The prompts are the built-in prompt set's format (``prompt``, ``label``, ``kind``, ``answer``);
every rollout is offered ``consult_safety_rules`` and may call it up to ``max_tool_calls``
times. Metrics go to ``log_history.jsonl`` (and TensorBoard when installed), curves to
``rl_curves.png``; a rerun of the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from rulewise.errors import RulewiseError
from rulewise.rl.advantages import IFPOSettings, get_estimator
from rulewise.rl.rewards import RewardWeights
from rulewise.rules.tool import RULES_PER_CALL
from rulewise.training.settings import TrainingSettings, job_default

if TYPE_CHECKING:
    from rulewise.models import LoadedModel

CURVE_KEYS = [
    "reward",
    "consult_rate/harmful",
    "consult_rate/benign",
    "ifpo/weight/consulted",
    "ifpo/weight/direct",
    "ifpo/adv_mass/consulted",
]


class RLSettings(TrainingSettings):
    """Everything ``rulewise train rl`` reads from ``--config`` and ``--set``."""

    algo: str = Field(
        default="ifpo",
        description="the advantage estimator, by its registered name (rulewise.rl.advantages): 'ifpo' "
        "(GRPO rebalanced by inverse mode frequency), 'grpo', 'dr_grpo' (GRPO without the std division)",
    )
    prompts: str = Field(description="training prompts (the prompt-set JSONL `rulewise data prompts` writes)")
    max_steps: int = Field(
        default=20, ge=1, description="optimiser steps, each on one batch of fresh rollouts"
    )
    prompts_per_step: int = Field(
        default=4, ge=1, description="prompts per optimiser step, over all processes"
    )
    group_size: int = Field(default=4, ge=2, description="rollouts per prompt (the GRPO group)")
    micro_batch_size: int = Field(
        default=4, ge=1, description="rollouts per forward/backward pass; the step accumulates the rest"
    )
    max_completion_length: int = Field(
        default=448,
        ge=8,
        description="all turns and tool results together (a retrieved rule is about 50 tokens)",
    )
    dynamic_sampling: int = Field(
        default=0,
        ge=0,
        description="DAPO's dynamic sampling: for each group, this many candidate groups for fresh prompts of "
        "the same kind, generated with the step's own; a group whose rollouts all earned one reward (zero "
        "advantage, no gradient) gives way to its first candidate that varies (0: off; costs generation only)",
    )
    max_tool_calls: int = Field(default=1, ge=0, description="tool calls allowed per rollout")
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature of the rollouts")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling of the rollouts (1: off)")
    learning_rate: float = job_default("learning_rate", 1e-6, TrainingSettings)
    beta: float = Field(default=0.0, ge=0, description="KL coefficient (0: no reference model)")
    loss_type: str = Field(default="dapo", description="TRL's GRPO loss: dapo, grpo, dr_grpo, bnpo, ...")
    ifpo: IFPOSettings = Field(
        default_factory=IFPOSettings, description="IFPO's weighting (used by algo ifpo)"
    )
    rewards: RewardWeights = Field(default_factory=RewardWeights, description="reward component weights")
    judge: str = Field(
        default="refusal", description="safety reward's judge: 'refusal' (offline) or openai:MODEL@URL"
    )
    rulebook: str = Field(
        default="default", description="the rulebook the tool retrieves from (YAML/JSON path)"
    )
    top_k_rules: int = Field(default=RULES_PER_CALL, ge=1, description="rules returned per tool call")
    system_prompt: str | None = Field(
        default=None, description="system prompt of the rollouts (None: ASCL's)"
    )
    logging_steps: int = job_default("logging_steps", 1, TrainingSettings)
    save_steps: int = job_default("save_steps", 10, TrainingSettings)
    rollout_engine: Literal["auto", "rulewise", "trl"] = Field(
        default="auto",
        description="who generates rollouts: 'rulewise' = our continuous batcher (keys/values of the shared "
        "prompt and of each conversation's earlier turns reused; transformers models), 'trl' = TRL's tool "
        "loop (re-encodes the history after each tool call), 'auto' = trl with vLLM, else rulewise",
    )
    counterfactual: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of look-alike prompts also trained as counterfactual copies: the same request "
        "under a rulebook whose retrieved rule has its sides swapped, labelled to be refused, so the reward "
        "follows the rulebook in force and only the rule text tells the two apart (rulewise rollout engine)",
    )
    balance_kinds: bool = Field(
        default=True,
        description="visit prompts in turn by kind (plain, harmful, jailbreak, look-alike, maths; each kind in "
        "a seeded order) instead of shuffled: the built-in train split is 90% sensitive requests, so a "
        "short shuffled run hardly ever shows the policy a prompt it need not consult on",
    )
    use_vllm: bool = Field(
        default=False, description="GPU: generate rollouts with vLLM (pip install 'rulewise[vllm]')"
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        default="colocate", description="vLLM on the training GPUs, or a separate `trl vllm-serve` server"
    )
    vllm_gpu_memory_utilization: float = Field(
        default=0.3, gt=0, le=1, description="share of GPU memory vLLM may take in colocate mode"
    )

    @model_validator(mode="after")
    def _check_rewards(self) -> RLSettings:
        if not any(getattr(self.rewards, name) for name in RewardWeights.model_fields):
            raise ValueError("at least one reward weight must be non-zero")
        return self

    @model_validator(mode="after")
    def _check_engine(self) -> RLSettings:
        if self.use_vllm and self.rollout_engine == "rulewise":
            raise ValueError(
                "rollout_engine 'rulewise' generates with transformers; with use_vllm use 'trl' or 'auto'"
            )
        return self

    @model_validator(mode="after")
    def _check_counterfactual(self) -> RLSettings:
        if self.counterfactual and self.engine() != "rulewise":
            raise ValueError(
                "counterfactual rollouts need rollout_engine 'rulewise' (TRL's tool loop has one rulebook)"
            )
        return self

    def engine(self) -> Literal["rulewise", "trl"]:
        """Who generates the rollouts, 'auto' resolved."""
        if self.rollout_engine == "auto":
            return "trl" if self.use_vllm else "rulewise"
        return self.rollout_engine

    @field_validator("algo")
    @classmethod
    def _known_estimator(cls, name: str) -> str:
        get_estimator(name)  # an unknown name is an error listing the known ones
        return name


def load_rl_dataset(
    path: str | Path,
    system_prompt: str,
    *,
    balance_kinds: bool = False,
    seed: int = 0,
    counterfactual: float = 0.0,
    consult: Callable[[str], str] | None = None,
):
    """Prompt-set JSONL → conversational prompts with the label columns the rewards read
    (``balance_kinds``: in turn by kind, see ``RLSettings.balance_kinds``; ``counterfactual``:
    that share of look-alikes added again under a swapped rule, found with ``consult``, the
    rule named in the messages for the rollouts, see ``RLSettings.counterfactual``)."""
    import datasets

    from rulewise.data.prompt_set import spread_over_kinds
    from rulewise.data.synthesis import counterfactual_prompts, load_prompts
    from rulewise.rl.engine_rollouts import SWAPPED_RULE_KEY

    items = load_prompts(Path(path))
    if counterfactual > 0:
        if consult is None:
            raise ValueError("counterfactual copies need the consult tool that finds each look-alike's rule")
        items += counterfactual_prompts(items, consult, counterfactual, seed)
    if balance_kinds:
        items = spread_over_kinds(items, len(items), seed=seed)

    rows = [
        {
            "prompt": [
                {"role": "system", "content": system_prompt, SWAPPED_RULE_KEY: None},
                {"role": "user", "content": item.prompt, SWAPPED_RULE_KEY: item.swapped_rule},
            ],
            "label": item.label,
            "kind": item.kind,
            "answer": item.answer,
        }
        for item in items
    ]
    if not rows:
        raise RulewiseError("no prompts", path=path)
    return datasets.Dataset.from_list(rows)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def run_rl(
    settings: RLSettings, *, loaded: LoadedModel | None = None, callbacks: list[Any] | None = None
) -> Path:
    """Train (or resume) and save; returns the output directory.

    ``loaded`` replaces loading ``settings.model`` (a model built in code, e.g. for tests).
    """
    from trl import GRPOConfig

    from rulewise.evaluation.judges import build_judge
    from rulewise.generation.prompts import ASCL_SYSTEM_PROMPT
    from rulewise.models import load_model
    from rulewise.rl.engine_rollouts import EngineRollouts
    from rulewise.rl.rewards import build_reward_functions
    from rulewise.rl.trainer import IFPOTrainer
    from rulewise.rules import build_retriever, load_rulebook
    from rulewise.rules.tool import SwappedRuleTools, make_consult_tool
    from rulewise.training.common import Curves, prepare_for_training, train_and_save
    from rulewise.training.settings import trl_config

    out = Path(settings.out)
    rollouts_per_step = settings.prompts_per_step * settings.group_size
    per_process = rollouts_per_step // world_size()
    if settings.dynamic_sampling and per_process % settings.group_size:
        raise RulewiseError(
            f"dynamic sampling replaces whole groups: the {per_process} rollouts per process must be "
            f"whole groups of {settings.group_size}",
            field="dynamic_sampling",
        )
    if rollouts_per_step % world_size() or per_process % settings.micro_batch_size:
        raise RulewiseError(
            f"prompts_per_step × group_size = {rollouts_per_step} rollouts must split evenly over "
            f"{world_size()} process(es) and then into micro-batches of {settings.micro_batch_size}",
            field="micro_batch_size",
        )
    rulebook = load_rulebook(settings.rulebook)
    tool = make_consult_tool(build_retriever(rulebook), k=settings.top_k_rules)
    dataset = load_rl_dataset(
        settings.prompts,
        settings.system_prompt or ASCL_SYSTEM_PROMPT,
        balance_kinds=settings.balance_kinds,
        seed=settings.seed,
        counterfactual=settings.counterfactual,
        consult=tool,
    )
    loaded = loaded or load_model(settings.model)
    swapped_tools = SwappedRuleTools(rulebook, k=settings.top_k_rules)
    reward_funcs, reward_weights = build_reward_functions(
        settings.rewards, build_judge(settings.judge), consult=tool, swapped_tools=swapped_tools
    )
    args = trl_config(
        settings,
        GRPOConfig,
        # One generation batch of all the step's rollouts (groups stay whole, IFPO sees them
        # all), trained in micro-batches: 16 rollouts of ~800 tokens in one pass need >24 GiB on CPU.
        per_device_train_batch_size=settings.micro_batch_size,
        gradient_accumulation_steps=per_process // settings.micro_batch_size,
        num_generations=settings.group_size,
        max_completion_length=settings.max_completion_length,
        max_tool_calling_iterations=settings.max_tool_calls,
        temperature=settings.temperature,
        top_p=settings.top_p,
        beta=settings.beta,
        loss_type=settings.loss_type,
        reward_weights=reward_weights,
        shuffle_dataset=not settings.balance_kinds,  # balanced order is already seeded
        use_vllm=settings.use_vllm,
        vllm_mode=settings.vllm_mode,
        vllm_gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
    )
    prepare_for_training(loaded.model, settings.train_top_layers)
    rollouts = (
        EngineRollouts([tool], settings.max_tool_calls, swapped_tools)
        if settings.engine() == "rulewise"
        else None
    )
    warnings.filterwarnings("ignore", message="You are using 'rollout_func'")  # TRL: "experimental"
    print(
        "rollouts: rulewise engine (continuous batching, keys/values reused across rollouts and tool turns)"
        if rollouts
        else "rollouts: TRL's tool loop",
        flush=True,
    )
    trainer = IFPOTrainer(
        model=loaded.model,
        args=args,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        reward_funcs=reward_funcs,
        # the engine runs the tool itself (TRL would run its own loop on top when given tools)
        tools=None if rollouts else [tool],
        rollout_func=rollouts,
        estimator=get_estimator(settings.algo),
        ifpo=settings.ifpo,
        dynamic_sampling=settings.dynamic_sampling,
        callbacks=callbacks,
    )
    curves = Curves(CURVE_KEYS, "rl_curves.png", f"{settings.algo.upper()} from {settings.model}")
    # GRPO's LM head divides the logits by the sampling temperature: the shared-prefix path must too
    train_and_save(
        trainer, loaded, settings, curves, on_resume=trainer.load_ifpo_state, temperature=settings.temperature
    )
    if rollouts:
        print(f"rollouts: {rollouts.stats.summary()}", flush=True)
    return out
