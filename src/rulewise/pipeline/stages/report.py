"""``report``: ``rulewise report`` over eval stages (or eval runs made elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from rulewise.errors import RulewiseError
from rulewise.pipeline.stages.base import StageContext, StageKind, parse_reference


class ReportStage(StageKind):
    """``rulewise report`` over eval stages: table, safety–utility plot, viewer."""

    output = "report"

    kind: Literal["report"]
    runs: list[str] = Field(
        min_length=1, description="@EVAL_STAGE references, or directories of eval runs made elsewhere"
    )

    def references(self) -> dict[str, str]:
        return {f"runs[{i}]": ref for i, ref in enumerate(self.runs)}

    def run(self, ctx: StageContext, name: str) -> None:
        from rulewise.evaluation.report import compare_runs

        directories, labels = [], []
        for run in self.runs:
            ref = parse_reference(run)
            if ref is None:  # an eval run made elsewhere: named by its directory
                directory, label = Path(run), Path(run).name
            else:
                directory, label = (
                    ctx.stage_dir(ref[0]),
                    getattr(ctx.recipe.stages[ref[0]], "label", None) or ref[0],
                )
            if not (directory / "results.jsonl").is_file():
                raise RulewiseError(
                    "not an eval run directory (no results.jsonl)", path=directory, field="runs"
                )
            directories.append(directory)
            labels.append(label)
        compare_runs(directories, ctx.stage_dir(name), labels=labels)
