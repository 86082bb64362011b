"""TRL's GRPOTrainer with rollouts read turn by turn, and IFPO's advantage rebalancing.

Rollouts come from our engine (:mod:`rulewise.rl.engine_rollouts`, through ``rollout_func``)
or from TRL's tool loop (``tools=``; the path with vLLM); either way tool results are masked
from the loss, and TRL scores and computes GRPO advantages. This subclass only adds what TRL
does not do:

1. after generation, each rollout's model-written turns are a :class:`Rollout` that the reward
   functions receive as the ``rollout`` column (truncated and malformed calls included, which
   TRL's parsed messages drop): built by the engine, or decoded from TRL's tool mask;
2. after scoring, the advantages are recomputed by the registered estimator the run names
   (:mod:`rulewise.rl.advantages`: ``grpo``, ``dr_grpo``, ``ifpo``) from the whole batch's
   rewards and modes, gathered from every process (each process computes the same values from
   the same data, so IFPO's ``scope: batch`` really is the global batch), and sliced back; they
   replace TRL's own, so TRL's ``scale_rewards`` does not apply;
3. with ``dynamic_sampling``, groups whose rollouts all earned one reward give way to
   candidate groups for fresh prompts of the same kind, generated with them, before the
   advantages are computed (:mod:`rulewise.rl.dynamic_sampling`); TRL's own per-call
   metrics (``reward``, ``frac_reward_zero_std``, ...) then cover every rollout generated,
   ours the batch trained;
4. per step it logs mode frequencies, weights, reward and advantage mass by mode, and the
   consultation rate on harmful and on benign prompts.

The ``grpo`` estimator computes exactly TRL's advantages (``scale_rewards: group``), and IFPO
with ``alpha = 0`` gives every weight 1.0, so both train exactly as TRL's GRPO.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer

from rulewise.rl.advantages import AdvantageEstimator, IFPOSettings, IFPOState, ModeBatch, mode_statistics
from rulewise.rl.dynamic_sampling import SparePrompts, rows_to_train, take_rows
from rulewise.rl.rollout import Rollout, model_written_runs

IFPO_STATE_FILE = "ifpo_state.json"


@dataclass
class _Scored:
    """One process's generated and scored rows: TRL's batch entries, and per row the total
    reward, the mode (consulted) and whether the prompt is harmful."""

    output: dict[str, Any]
    rewards: torch.Tensor
    modes: torch.Tensor
    harmful: torch.Tensor

    def take(self, rows: list[int], pad_multiple: int | None, accelerator: Any) -> _Scored:
        """These rows only (:func:`take_rows`), TRL's loss normaliser recounted."""
        output = take_rows(
            {**self.output, "rewards": self.rewards, "modes": self.modes, "harmful": self.harmful},
            rows,
            pad_multiple,
        )
        rewards, modes, harmful = (output.pop(key) for key in ("rewards", "modes", "harmful"))
        # DAPO's loss divides by the batch's loss tokens over all processes: count the rows kept
        loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
        output["num_items_in_batch"] = accelerator.gather(loss_mask.sum()).sum()
        return _Scored(output, rewards, modes, harmful)


class IFPOTrainer(GRPOTrainer):
    """GRPO with tool rollouts and inverse-frequency mode weighting (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        estimator: AdvantageEstimator,
        ifpo: IFPOSettings,
        dynamic_sampling: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.estimator = estimator
        self.ifpo = ifpo
        self.ifpo_state = IFPOState()
        self.dynamic_sampling = dynamic_sampling
        self._spares: SparePrompts | None = None
        self._local_rollouts: list[Rollout] = []
        self._gathered_rewards: torch.Tensor | None = None

    def _generate(self, prompts: list) -> tuple:
        result = super()._generate(prompts)
        _, completion_ids, tool_mask, _, _, extra_fields, *_ = result
        if "rollout" in extra_fields:  # our engine's rollouts (rollout_func) come with their turns
            self._local_rollouts = list(extra_fields["rollout"])
            return result
        masks = tool_mask if tool_mask is not None else [None] * len(completion_ids)
        eos = self._tokenizer.eos_token
        self._local_rollouts = [
            Rollout(
                turns=tuple(
                    self._tokenizer.decode(run, skip_special_tokens=False)
                    for run in model_written_runs(ids, mask)
                ),
                finished=bool(ids) and ids[-1] in self.eos_token_ids,
                end_marker=eos,
            )
            for ids, mask in zip(completion_ids, masks, strict=True)
        ]
        return result

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        for example, rollout in zip(inputs, self._local_rollouts, strict=True):
            example["rollout"] = rollout
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func  # TRL gathers them from every process
        return rewards_per_func

    def _scored(self, inputs: list[dict[str, Any]]) -> _Scored:
        """TRL's generated and scored rows for ``inputs``, with their total rewards (TRL's
        weighting; NaN where no reward function scored a rollout), modes and labels."""
        output = super()._generate_and_score_completions(inputs)
        device = self.accelerator.device
        rewards = (self._gathered_rewards * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(self._gathered_rewards).all(dim=1)] = torch.nan
        start = self.accelerator.process_index * len(inputs)
        return _Scored(
            output,
            rewards[start : start + len(inputs)],
            torch.tensor([r.consulted for r in self._local_rollouts], device=device),
            torch.tensor([example.get("label") == "harmful" for example in inputs], device=device),
        )

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        if mode == "train" and self.dynamic_sampling:
            scored = self._scored_with_candidates(inputs, group_size)
        else:
            scored = self._scored(inputs)
        output = scored.output
        # the step's total rewards, modes and labels as trained, gathered from every process
        rewards = self.accelerator.gather(scored.rewards)
        modes, harmful = (self.accelerator.gather(t).bool() for t in (scored.modes, scored.harmful))
        state = self.ifpo_state if mode == "train" else None  # evaluation must not move the EMA
        advantages, weights = self.estimator(ModeBatch(rewards, modes, group_size, harmful), self.ifpo, state)
        start = self.accelerator.process_index * len(scored.rewards)
        output["advantages"] = advantages[start : start + len(scored.rewards)].to(output["advantages"].dtype)

        for name, value in mode_statistics(modes, harmful, weights, rewards, advantages).items():
            self._metrics[mode][name].append(value)
        return output

    def _scored_with_candidates(self, inputs: list[dict[str, Any]], group_size: int) -> _Scored:
        """DAPO's dynamic sampling (:mod:`rulewise.rl.dynamic_sampling`): the step's groups and,
        for each, ``dynamic_sampling`` candidate groups for fresh prompts of its kind, generated
        and scored in one call; a group with one reward throughout gives way to its first
        candidate that varies."""
        if self._spares is None:
            self._spares = SparePrompts(
                self.train_dataset, seed=self.args.seed + 1 + self.accelerator.process_index
            )
        tries, groups = self.dynamic_sampling, len(inputs) // group_size
        fresh = [
            self._spares.draw(inputs[i * group_size].get("kind")) for i in range(groups) for _ in range(tries)
        ]
        scored = self._scored(inputs + [dict(row) for row in fresh for _ in range(group_size)])
        rows, flat, replaced = rows_to_train(scored.rewards, group_size, groups, tries)
        device = scored.rewards.device
        for name, count in (("flat_groups", len(flat)), ("replaced_groups", replaced)):
            total = self.accelerator.gather(torch.tensor([count], device=device)).sum()
            self._metrics["train"][f"dynamic_sampling/{name}"].append(int(total))
        return scored.take(rows, self.pad_to_multiple_of, self.accelerator)

    def _save_checkpoint(self, model, trial) -> None:
        # Before the Trainer's files: it writes trainer_state.json last, which is what marks a
        # checkpoint complete for a resume, so a complete checkpoint always has this file too.
        if self.args.should_save:
            folder = os.path.join(self.args.output_dir, f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, IFPO_STATE_FILE), "w", encoding="utf-8") as handle:
                json.dump({"share_consulted": self.ifpo_state.share_consulted}, handle)
        super()._save_checkpoint(model, trial)

    def load_ifpo_state(self, checkpoint: str | os.PathLike[str]) -> None:
        """Restore the EMA of mode frequencies saved next to a checkpoint (absent: start fresh)."""
        path = os.path.join(checkpoint, IFPO_STATE_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                self.ifpo_state.share_consulted = json.load(handle)["share_consulted"]


__all__ = ["IFPOTrainer"]
