"""``sft``: ``rulewise train sft`` as a stage."""

from __future__ import annotations

from typing import Literal

from rulewise.pipeline.stages.base import MODEL_LOAD_SECONDS
from rulewise.pipeline.stages.training import SFT_TOKENS_PER_EXAMPLE, TrainingStage, supervised_seconds
from rulewise.training.sft import SFTSettings


class SFTStage(TrainingStage, SFTSettings):
    """Supervised fine-tuning on trajectories (loss on assistant tokens only): ``rulewise train sft``
    with every one of its settings; ``out`` is the stage's directory."""

    command = "sft"
    settings_class = SFTSettings
    runner = "rulewise.training.sft:run_sft"

    kind: Literal["sft"]

    def estimate_seconds(self) -> float:
        examples_per_step = self.batch_size * self.grad_accum
        steps = self.max_steps if self.max_steps > 0 else self.epochs * 600 / examples_per_step
        return MODEL_LOAD_SECONDS + supervised_seconds(
            steps * examples_per_step, SFT_TOKENS_PER_EXAMPLE, bool(self.train_top_layers)
        )
