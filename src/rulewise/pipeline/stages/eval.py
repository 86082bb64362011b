"""``eval``: ``rulewise eval`` as a stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rulewise.errors import RulewiseError
from rulewise.evaluation import EVAL_BATCH_SIZE
from rulewise.evaluation.runner import BenchSpec, EvalConfig
from rulewise.pipeline.stages.base import (
    EVAL_SECONDS_PER_ITEM,
    MODEL_LOAD_SECONDS,
    UNKNOWN_SIZE,
    StageContext,
    StageKind,
    check_model,
    check_rulebook,
    parse_reference,
    recipe_model_field,
)


class BenchEntry(BaseModel):
    """A benchmark that may be missing on this machine (e.g. ``../shared/data``): skipped with a note."""

    model_config = ConfigDict(extra="forbid")

    spec: str = Field(description="NAME[:LAYOUT][@N]=PATH, as for rulewise eval --bench")
    optional: bool = Field(default=False, description="leave it out, with a note, when its file is missing")


class EvalStage(StageKind, EvalConfig):
    """``rulewise eval`` of a model (``base``, ``@STAGE`` or a model spec): every eval setting,
    benchmarks that may be optional, and how to run it."""

    output = "eval"

    kind: Literal["eval"]
    model: str = recipe_model_field()
    label: str | None = Field(default=None, description="name in the report (default: the stage name)")
    benches: list[str | BenchEntry] = Field(  # type: ignore[assignment]
        min_length=1, description="NAME[:LAYOUT][@N]=PATH specs, or {spec, optional} entries"
    )
    batch_size: int = Field(default=EVAL_BATCH_SIZE, ge=1, description="conversations generated together")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="'auto': bf16 weights where the hardware computes bf16 natively"
    )

    def bench_entries(self) -> list[BenchEntry]:
        return [BenchEntry(spec=b) if isinstance(b, str) else b for b in self.benches]

    def references(self) -> dict[str, str]:
        refs = {"model": self.model}
        for index, entry in enumerate(self.bench_entries()):
            source = entry.spec.partition("=")[2]
            if source.startswith("@"):
                refs[f"benches[{index}]"] = source
        return refs

    def config(self, ctx: StageContext) -> tuple[EvalConfig, list[str]]:
        """The eval configuration, and notes on optional benchmarks left out (files missing); a
        required benchmark file that is missing is an error."""
        from rulewise.evaluation.benchmarks import parse_bench_spec

        specs, skipped = [], []
        for entry in self.bench_entries():
            parsed = parse_bench_spec(entry.spec)
            parsed["source"] = ctx.resolve(parsed["source"])
            is_path = parse_reference(entry.spec.partition("=")[2]) is None and "/" in parsed["source"]
            if is_path and not Path(parsed["source"]).exists():
                if not entry.optional:
                    raise RulewiseError("benchmark file not found", path=parsed["source"], field="benches")
                skipped.append(f"{parsed['name']} ({parsed['source']} not found)")
                continue
            specs.append(BenchSpec(**parsed))
        if not specs:
            raise RulewiseError("no benchmark left to run (all optional ones are missing)", field="benches")
        shared = self.model_dump(include=set(EvalConfig.model_fields) - {"model", "benches"})
        return EvalConfig(model=ctx.resolve(self.model), benches=specs, **shared), skipped

    def reads(self, ctx: StageContext, name: str) -> list[str]:
        prefix = f"stages.{name}"
        config, skipped = self.config(ctx)
        reads = ["model " + check_model(self.model, config.model, f"{prefix}.model")]
        check_rulebook(self.rulebook, f"{prefix}.rulebook")
        reads += [f"{bench.name}={bench.source}" for bench in config.benches]
        return reads + [f"(optional, left out: {note})" for note in skipped]

    def estimate_seconds(self) -> float:
        from rulewise.evaluation.benchmarks import parse_bench_spec

        items = sum(
            parse_bench_spec(entry.spec)["limit"] or self.limit or UNKNOWN_SIZE
            for entry in self.bench_entries()
        )
        return MODEL_LOAD_SECONDS + items * EVAL_SECONDS_PER_ITEM

    def run(self, ctx: StageContext, name: str) -> None:
        from rulewise.evaluation.runner import run_eval

        config, skipped = self.config(ctx)
        for note in skipped:
            ctx.console.print(f"[yellow]optional benchmark left out:[/yellow] {note}")
        out = ctx.stage_dir(name)
        run_eval(config, out, batch_size=self.batch_size, precision=self.precision, console=ctx.console)
