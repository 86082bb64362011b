"""``dpo``: ``rulewise train dpo`` as a stage (SaRO's SRPO)."""

from __future__ import annotations

from typing import Literal

from rulewise.pipeline.stages.base import MODEL_LOAD_SECONDS
from rulewise.pipeline.stages.training import SFT_TOKENS_PER_EXAMPLE, TrainingStage, supervised_seconds
from rulewise.training.dpo import DPOSettings


class DPOStage(TrainingStage, DPOSettings):
    """Preference optimisation on prompt/chosen/rejected pairs against a frozen reference:
    ``rulewise train dpo`` with every one of its settings; ``out`` is the stage's directory."""

    command = "dpo"
    settings_class = DPOSettings
    runner = "rulewise.training.dpo:run_dpo"

    kind: Literal["dpo"]

    def estimate_seconds(self) -> float:
        examples = self.max_steps * self.batch_size * self.grad_accum if self.max_steps > 0 else 300
        # chosen + rejected, policy + reference forward: about 3 SFT examples' worth each
        return MODEL_LOAD_SECONDS * 2 + supervised_seconds(examples, 3 * SFT_TOKENS_PER_EXAMPLE, False)
