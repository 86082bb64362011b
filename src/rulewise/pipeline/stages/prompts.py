"""``prompts``: the built-in prompt set with a seeded train/dev split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rulewise.pipeline.stages.base import StageContext, StageKind


class PromptsStage(StageKind):
    """The built-in prompt set with a seeded train/dev split (``@NAME/train.jsonl``, ``@NAME/dev.jsonl``)."""

    output = "prompts"

    kind: Literal["prompts"]
    seed: int = Field(default=0, description="seed of the jailbreak wrappers, maths problems and split")
    dev_fraction: float = Field(default=0.15, ge=0.0, le=0.9, description="share of request families in dev")
    math_count: int = Field(default=200, ge=0, description="maths word problems generated")

    def estimate_seconds(self) -> float:
        return 2.0

    def run(self, ctx: StageContext, name: str) -> None:
        from rulewise.data.prompt_set import write_prompt_set

        out = ctx.stage_dir(name)
        _, train_split, dev_split = write_prompt_set(
            out, seed=self.seed, dev_fraction=self.dev_fraction, math_count=self.math_count
        )
        ctx.console.print(f"{len(train_split)} train and {len(dev_split)} dev prompts in {out}")
