"""``dpo``: ``rulewise train dpo`` as a stage (SaRO's SRPO)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rulewise.pipeline.stages.base import BASE_MODEL, MODEL_LOAD_SECONDS
from rulewise.pipeline.stages.training import SFT_TOKENS_PER_EXAMPLE, TrainingStage, supervised_seconds
from rulewise.training.dpo import DPOSettings


class DPOStage(TrainingStage, DPOSettings):
    """``rulewise train dpo`` with every one of its settings; ``out`` is the stage's directory."""

    command = "dpo"
    data_field = "data"
    settings_class = DPOSettings

    kind: Literal["dpo"]
    model: str = Field(
        default=BASE_MODEL, description="starting model: 'base' (the recipe's), @STAGE or a model spec"
    )

    def estimate_seconds(self) -> float:
        examples = self.max_steps * self.batch_size * self.grad_accum if self.max_steps > 0 else 300
        # chosen + rejected, policy + reference forward: about 3 SFT examples' worth each
        return MODEL_LOAD_SECONDS * 2 + supervised_seconds(examples, 3 * SFT_TOKENS_PER_EXAMPLE, False)

    def train(self, settings: Any) -> None:
        from rulewise.training.dpo import run_dpo

        run_dpo(settings)
