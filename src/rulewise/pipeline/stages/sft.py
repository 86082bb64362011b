"""``sft``: ``rulewise train sft`` as a stage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rulewise.pipeline.stages.base import BASE_MODEL, MODEL_LOAD_SECONDS
from rulewise.pipeline.stages.training import SFT_TOKENS_PER_EXAMPLE, TrainingStage, supervised_seconds
from rulewise.training.sft import SFTSettings


class SFTStage(TrainingStage, SFTSettings):
    """``rulewise train sft`` with every one of its settings; ``out`` is the stage's directory."""

    command = "sft"
    data_field = "data"
    settings_class = SFTSettings

    kind: Literal["sft"]
    model: str = Field(
        default=BASE_MODEL, description="starting model: 'base' (the recipe's), @STAGE or a model spec"
    )

    def estimate_seconds(self) -> float:
        examples_per_step = self.batch_size * self.grad_accum
        steps = self.max_steps if self.max_steps > 0 else self.epochs * 600 / examples_per_step
        examples = steps * examples_per_step
        return MODEL_LOAD_SECONDS + supervised_seconds(
            examples, SFT_TOKENS_PER_EXAMPLE, bool(self.train_top_layers)
        )

    def train(self, settings: Any) -> None:
        from rulewise.training.sft import run_sft

        run_sft(settings)
