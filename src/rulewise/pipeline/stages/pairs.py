"""``srpo``: SRPO preference pairs sampled from a model (SaRO)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from rulewise.pipeline.stages.base import (
    DATA_FILE,
    EVAL_SECONDS_PER_ITEM,
    MODEL_LOAD_SECONDS,
    UNKNOWN_SIZE,
    StageContext,
    StageKind,
    check_file,
    check_model,
    check_rulebook,
)
from rulewise.progress import job_progress
from rulewise.saro.jobs import SRPOPairsSettings


class PairsStage(StageKind, SRPOPairsSettings):
    """SRPO preference pairs sampled from a model (``rulewise data srpo``): its settings plus inputs."""

    output = "data"

    kind: Literal["srpo"]
    model: str = Field(description="the RW model: @STAGE or a model spec")
    prompts: str = Field(description="prompts JSONL, or @STAGE/train.jsonl")

    def references(self) -> dict[str, str]:
        return {"model": self.model, "prompts": self.prompts}

    def reads(self, ctx: StageContext, name: str) -> list[str]:
        prefix = f"stages.{name}"
        model = "model " + check_model(self.model, ctx.resolve(self.model), f"{prefix}.model")
        check_file(self.prompts, f"{prefix}.prompts")
        check_rulebook(self.rulebook, f"{prefix}.rulebook")
        return [model, ctx.resolve(self.prompts)]

    def estimate_seconds(self) -> float:
        prompts = self.limit or UNKNOWN_SIZE
        return MODEL_LOAD_SECONDS + prompts * (self.samples + self.branches) * EVAL_SECONDS_PER_ITEM / 2

    def run(self, ctx: StageContext, name: str) -> None:
        from rulewise.saro.jobs import synthesize_srpo_pairs
        from rulewise.saro.pairs import stats_summary

        with job_progress(ctx.console, "SRPO pairs") as hooks:
            stats = synthesize_srpo_pairs(
                ctx.resolve(self.model),
                ctx.resolve(self.prompts),
                ctx.stage_dir(name) / DATA_FILE,
                SRPOPairsSettings(**self.model_dump(include=set(SRPOPairsSettings.model_fields))),
                progress=hooks,
            )
        summary = stats_summary(stats)
        (ctx.stage_dir(name) / "stats.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        ctx.console.print(json.dumps(summary))
