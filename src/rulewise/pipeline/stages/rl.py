"""``rl``: ``rulewise train rl`` (IFPO, GRPO, ...) as a stage."""

from __future__ import annotations

from typing import Literal

from rulewise.pipeline.stages.base import MODEL_LOAD_SECONDS
from rulewise.pipeline.stages.training import TrainingStage
from rulewise.rl.train import RLSettings

RL_SECONDS_PER_ROLLOUT = 7.0  # the 2-core reference machine (see base.py)


class RLStage(TrainingStage, RLSettings):
    """``rulewise train rl`` with every one of its settings; ``out`` is the stage's directory."""

    command = "rl"
    data_field = "prompts"
    settings_class = RLSettings
    runner = "rulewise.rl.train:run_rl"

    kind: Literal["rl"]

    def estimate_seconds(self) -> float:
        rollouts = self.max_steps * self.prompts_per_step * self.group_size
        # candidate groups are generated alongside, never trained: the quickstart's step took
        # 1.4x as long with 2 candidates per group (44 s against 31)
        return MODEL_LOAD_SECONDS + rollouts * RL_SECONDS_PER_ROLLOUT * (1 + 0.2 * self.dynamic_sampling)
