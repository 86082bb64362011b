"""``bc``, ``context-distill`` and ``rw``: teacher trajectories written as training data."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rulewise.pipeline.stages.base import DATA_FILE, StageContext, StageKind, check_file, check_rulebook
from rulewise.progress import job_progress


class SynthesisStage(StageKind):
    """Teacher trajectories: ``bc`` (ASCL, tool offered), ``context-distill`` (the baseline) or
    ``rw`` (SaRO's long policy-grounded reasoning)."""

    output = "data"

    kind: Literal["bc", "context-distill", "rw"]
    prompts: str = Field(description="prompts JSONL, or @STAGE/train.jsonl")
    teacher: str = Field(default="scripted", description="scripted, hf:MODEL or openai:MODEL@URL")
    rulebook: str = Field(default="default", description="the rulebook (YAML/JSON path)")
    paraphrase: str | None = Field(default=None, description="bc only: openai:MODEL@URL rewriting reasoning")
    shortest_of: int = Field(default=1, ge=1, description="rw only: keep the shortest accepted of N chains")
    counterfactual: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="bc only: share of look-alike prompts also written under a rulebook with their rule's "
        "sides swapped (refused there), so answers must follow the retrieved clause",
    )
    consult_plain: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="bc with the scripted teacher only: share of plain tasks (no rule touches them) on "
        "which it consults anyway, so a student sees what a needless check ends in; unset: the "
        "teacher's default (0.5). 1 leaves maths the only direct mode",
    )

    def references(self) -> dict[str, str]:
        return {"prompts": self.prompts}

    def reads(self, ctx: StageContext, name: str) -> list[str]:
        check_file(self.prompts, f"stages.{name}.prompts")
        check_rulebook(self.rulebook, f"stages.{name}.rulebook")
        return [ctx.resolve(self.prompts)]

    def estimate_seconds(self) -> float:
        return 10.0 if self.teacher == "scripted" else 600.0

    def run(self, ctx: StageContext, name: str) -> None:
        from rulewise.data.jobs import synthesize_bc, synthesize_context_distill
        from rulewise.saro.jobs import synthesize_rw

        out = ctx.stage_dir(name) / DATA_FILE
        prompts = ctx.resolve(self.prompts)
        common = {"teacher": self.teacher, "rulebook": self.rulebook}
        with job_progress(ctx.console, f"teacher {self.teacher}") as hooks:
            if self.kind == "rw":
                report = synthesize_rw(prompts, out, shortest_of=self.shortest_of, progress=hooks, **common)
            elif self.kind == "bc":
                report = synthesize_bc(
                    prompts,
                    out,
                    paraphrase=self.paraphrase,
                    counterfactual=self.counterfactual,
                    consult_plain=self.consult_plain,
                    progress=hooks,
                    **common,
                )
            else:
                report = synthesize_context_distill(prompts, out, progress=hooks, **common)
        ctx.console.print(
            f"{report.written} trajectories written ({report.consult_share:.0%} consult the rules), "
            f"{report.skipped} already done, {report.rejected} filtered out by the judge"
        )
