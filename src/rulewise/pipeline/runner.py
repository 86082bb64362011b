"""Running a recipe: stages in order, each cached, resumable, with one pipeline-wide ETA.

``OUT/pipeline.json`` records, per stage, a fingerprint of its settings, of the *contents* of
the input files its settings name (a rulebook, a prompt file, a benchmark) and of everything
upstream, whether it finished, and how long it took. Editing an input file in place therefore
changes the fingerprint like a changed setting does, and the error names the file; file hashes
are cached in the state file by size and modification time, so unchanged inputs are not re-read.
On a rerun a finished stage with the same fingerprint is skipped; an unfinished one is run again and continues from its own checkpoints
or finished items. A stage whose settings changed since it ran is an error (its outputs would
silently mix two configurations) unless ``redo`` names it, which discards its outputs and
those of every stage downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from rulewise import memory
from rulewise.errors import RulewiseError, full_disk_named
from rulewise.pipeline.recipe import Recipe
from rulewise.pipeline.stages import BASE_MODEL, StageContext

STATE_FILE = "pipeline.json"
Status = Literal["done", "running"]


def input_files(settings: Any) -> list[str]:
    """Every string in a stage's settings that names an existing file (``@stage`` references aside)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value and not value.startswith("@"):
            # a bench spec "NAME[:LAYOUT][@N]=PATH" names its file after the "="
            for candidate in {value, value.split("=", 1)[-1]}:
                if len(candidate) < 4096 and Path(candidate).is_file():
                    found.add(candidate)

    walk(settings)
    return sorted(found)


class FileDigests:
    """SHA-256 of files, remembered by (size, modification time) so an unchanged file is read once."""

    def __init__(self, known: dict[str, dict[str, Any]] | None = None) -> None:
        self.known: dict[str, dict[str, Any]] = dict(known or {})

    def __call__(self, path: str) -> str:
        stat = Path(path).stat()
        entry = self.known.get(path)
        if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
            return entry["sha256"]
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self.known[path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
        return digest.hexdigest()


def stage_inputs(recipe: Recipe, digests: FileDigests) -> dict[str, dict[str, str]]:
    """Per stage: ``{input file: its SHA-256}``."""
    return {
        name: {
            path: digests(path) for path in input_files(stage.model_dump(mode="json", exclude={"launcher"}))
        }
        for name, stage in recipe.stages.items()
    }


def fingerprints(
    recipe: Recipe, inputs: dict[str, dict[str, str]] | None = None, *, with_inputs: bool = True
) -> dict[str, str]:
    """Per stage: a hash of its settings, its input files' contents, the base model it uses, and
    its upstream fingerprints.

    How a stage is launched (``launcher``) is left out: moving a run to more GPUs does not
    change what it computes. ``inputs`` are :func:`stage_inputs` when the caller has them already;
    ``with_inputs=False`` gives the fingerprint of versions that did not hash input files, so
    their finished stages stay valid.
    """
    if with_inputs and inputs is None:
        inputs = stage_inputs(recipe, FileDigests())
    prints: dict[str, str] = {}
    for name, stage in recipe.stages.items():
        uses_base = BASE_MODEL in stage.references().values()
        payload = {
            "settings": stage.model_dump(mode="json", exclude={"launcher"}),
            "base_model": recipe.model if uses_base else None,
            "upstream": {up: prints[up] for up in recipe.upstream(name)},
        }
        if inputs is not None and with_inputs:
            payload["inputs"] = inputs[name]
        prints[name] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return prints


@dataclass
class PipelineState:
    """The contents of ``pipeline.json``."""

    path: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # FileDigests' cache

    @classmethod
    def load(cls, path: Path) -> PipelineState:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RulewiseError(
                f"invalid JSON: {exc.msg}", path=path, line=exc.lineno, hint="delete it to start over"
            ) from None
        return cls(path, dict(data.get("stages", {})), dict(data.get("files", {})))

    def save(self, recipe: Recipe) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"recipe": recipe.name, "source": recipe.source, "stages": self.stages, "files": self.files},
                indent=2,
            ),
            encoding="utf-8",
        )
        tmp.replace(self.path)  # atomic: a kill never leaves a half-written state file

    def mark(
        self,
        recipe: Recipe,
        name: str,
        fingerprint: str,
        status: Status,
        seconds: float,
        peak_rss_gib: float | None = None,
        inputs: dict[str, str] | None = None,
    ) -> None:
        self.stages[name] = {
            "fingerprint": fingerprint,
            "status": status,
            "seconds": round(seconds, 1),
            "inputs": inputs or {},
        }
        if peak_rss_gib is not None:
            self.stages[name]["peak_rss_gib"] = peak_rss_gib
        self.save(recipe)


@dataclass
class StageOutcome:
    name: str
    kind: str
    status: Literal["ran", "cached"]
    seconds: float
    output: Path
    peak_rss_gib: float | None = None  # this stage's own high-water mark (rulewise.memory)


def _format_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class _ETA:
    """Pipeline ETA: the stages' reference estimates, rescaled by how this machine has done so far.

    The rescaling starts from a prior of ``PRIOR_SECONDS`` at reference speed, so a stage of
    a few seconds (writing the prompt set) cannot swing the estimate for an hour of training.
    """

    PRIOR_SECONDS = 120.0

    def __init__(self, estimates: dict[str, float]) -> None:
        self.estimates = estimates
        self.estimated_done = self.PRIOR_SECONDS
        self.actual_done = self.PRIOR_SECONDS

    def finish(self, name: str, seconds: float) -> None:
        self.estimated_done += self.estimates[name]
        self.actual_done += seconds

    def remaining(self, names: list[str]) -> float:
        return self.actual_done / self.estimated_done * sum(self.estimates[n] for n in names)


def _redo(
    recipe: Recipe, state: PipelineState, ctx: StageContext, names: list[str], console: Console
) -> None:
    for requested in names:
        if requested not in recipe.stages:
            raise RulewiseError(
                f"--redo '{requested}' names no stage of this recipe",
                field="redo",
                hint=f"stages: {', '.join(recipe.stages)}",
            )
        for name in recipe.downstream(requested):
            if state.stages.pop(name, None) is not None or ctx.stage_dir(name).exists():
                console.print(f"[yellow]redo:[/yellow] discarding the outputs of stage '{name}'")
            shutil.rmtree(ctx.stage_dir(name), ignore_errors=True)
    state.save(recipe)


def run_stage(ctx: StageContext, name: str) -> None:
    """Run one stage (its kind's own ``run``)."""
    ctx.recipe.stages[name].run(ctx, name)


def run_recipe(
    recipe: Recipe,
    *,
    out: str | Path | None = None,
    redo: list[str] | None = None,
    console: Console | None = None,
) -> list[StageOutcome]:
    """Run (or continue) every stage of ``recipe``; returns what each stage did."""
    console = console or Console()
    out_dir = Path(out or recipe.out)
    ctx = StageContext(recipe, out_dir, console)
    state = PipelineState.load(out_dir / STATE_FILE)
    digests = FileDigests(state.files)
    inputs = stage_inputs(recipe, digests)
    prints = fingerprints(recipe, inputs)
    state.files = digests.known
    if redo:
        _redo(recipe, state, ctx, redo, console)
    legacy = fingerprints(recipe, with_inputs=False)  # for stages recorded before inputs were hashed
    for name, fingerprint in prints.items():
        previous = state.stages.get(name)
        if previous is None:
            continue
        if previous["fingerprint"] == (fingerprint if "inputs" in previous else legacy[name]):
            continue
        changed = sorted(
            path
            for path, digest in inputs[name].items()
            if previous.get("inputs", {}).get(path, digest) != digest
        )
        message = (
            f"stage '{name}': input file(s) changed since it ran: {', '.join(changed)}"
            if changed
            else f"stage '{name}' was run with other settings (or other upstream results) than this recipe now has"
        )
        raise RulewiseError(
            message,
            path=state.path,
            field=f"stages.{name}",
            hint=f"rerun with --redo {name} to discard it and what depends on it, or use another --out",
        )

    estimates = {name: stage.estimate_seconds() for name, stage in recipe.stages.items()}
    eta = _ETA(estimates)
    names = list(recipe.stages)
    outcomes: list[StageOutcome] = []
    for index, name in enumerate(names, start=1):
        stage = recipe.stages[name]
        output = ctx.main_output(name)
        previous = state.stages.get(name)
        if previous is not None and previous["status"] == "done":
            console.print(f"[dim][{index}/{len(names)}] {name} ({stage.kind}): done earlier, skipped[/dim]")
            outcomes.append(
                StageOutcome(
                    name,
                    stage.kind,
                    "cached",
                    previous["seconds"],
                    output,
                    previous.get("peak_rss_gib"),
                )
            )
            continue
        left = eta.remaining(names[index - 1 :])
        console.rule(
            f"[bold][{index}/{len(names)}] {name}[/bold] ({stage.kind}) · pipeline ETA ~{_format_minutes(left)}"
        )
        with full_disk_named(ctx.stage_dir(name), f"stage '{name}'"):
            state.mark(recipe, name, prints[name], "running", 0.0, inputs=inputs[name])
            started = time.perf_counter()
            meter = memory.PeakMeter()
            run_stage(ctx, name)
            memory.release_free_memory()  # free this stage's models before the next loads its own
            seconds = time.perf_counter() - started
            peak = memory.gib(meter.peak_bytes())
            state.mark(recipe, name, prints[name], "done", seconds, peak, inputs=inputs[name])
        eta.finish(name, seconds)
        outcomes.append(StageOutcome(name, stage.kind, "ran", seconds, output, peak))
        console.print(
            f"[green]✓[/green] {name} in {_format_minutes(seconds)}, peak {peak:.1f} GiB → {output}"
        )
    return outcomes


def summary_table(outcomes: list[StageOutcome]) -> Table:
    table = Table(title="pipeline")
    for column in ("stage", "kind", "this run", "time", "peak memory", "output"):
        table.add_column(column)
    for o in outcomes:
        peak = "–" if o.peak_rss_gib is None else f"{o.peak_rss_gib:.1f} GiB"
        table.add_row(o.name, o.kind, o.status, _format_minutes(o.seconds), peak, str(o.output))
    return table


# -- dry run ---------------------------------------------------------------------------------


def dry_run(recipe: Recipe, *, out: str | Path | None = None) -> list[str]:
    """Check every stage as far as possible without loading a model or touching the network.

    Builds each stage's concrete settings exactly as a real run would (so every field is
    validated), and checks that every input file, rulebook and accelerate config exists.
    Returns the plan, one block of lines per stage.
    """
    ctx = StageContext(recipe, Path(out or recipe.out), Console())
    plan: list[str] = []
    total = 0.0
    for index, (name, stage) in enumerate(recipe.stages.items(), start=1):
        try:
            reads = stage.reads(ctx, name)
        except RulewiseError as exc:
            prefix = f"stages.{name}"
            if exc.field is None or not exc.field.startswith("stages."):
                exc.field = f"{prefix}.{exc.field}" if exc.field else prefix
            raise
        estimate = stage.estimate_seconds()
        total += estimate
        plan.append(f"[{index}] {name} ({stage.kind}) ~{_format_minutes(estimate)} → {ctx.main_output(name)}")
        plan += [f"      reads {item}" for item in reads]
    plan.append(f"estimated total on 2 CPU cores with the default model: ~{_format_minutes(total)}")
    return plan
