"""How each kind of recipe stage runs, where its output goes, and roughly how long it takes.

Every stage calls the same library function as its CLI command (``run_sft``, ``run_rl``,
``run_eval``, ...), so a recipe behaves exactly like the commands typed by hand — including
resuming: a stage interrupted half-way continues from its checkpoints or finished items.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from rulewise.errors import RulewiseError
from rulewise.evaluation.runner import BenchSpec, EvalConfig
from rulewise.pipeline.recipe import (
    BASE_MODEL,
    DATA_PRODUCERS,
    DPOStage,
    EvalStage,
    PairsStage,
    PromptsStage,
    Recipe,
    ReportStage,
    RLStage,
    SFTStage,
    SynthesisStage,
    parse_reference,
)
from rulewise.progress import job_progress
from rulewise.rl.train import RLSettings
from rulewise.training.dpo import DPOSettings
from rulewise.training.sft import SFTSettings

DATA_FILE = "data.jsonl"
TrainingStage = SFTStage | RLStage | DPOStage
#: Per training kind: its settings model and the field naming its data.
TRAINING_KINDS: dict[str, tuple[type, str]] = {
    "sft": (SFTSettings, "data"),
    "rl": (RLSettings, "prompts"),
    "dpo": (DPOSettings, "data"),
}

# Seconds on the 2-core reference machine with the default 135M model (measured; see README).
# Only used to show an ETA before the first stage finishes; after that the runner rescales
# them by how fast this machine actually was.
SFT_TOKENS_PER_SECOND = 200.0  # shared-prefix forward, bf16 (quickstart: 32 steps x 4 in 3.5 min)
TOP_LAYERS_SPEEDUP = 1.5  # train_top_layers: 8 on the default model: 133 vs 85 tokens/s
SFT_TOKENS_PER_EXAMPLE = 450
RL_SECONDS_PER_ROLLOUT = 7.0
EVAL_SECONDS_PER_ITEM = 1.0  # continuous batching (quickstart: 24 conversations in about 20 s)
MODEL_LOAD_SECONDS = 15.0
UNKNOWN_SIZE = 100  # items assumed for a benchmark without a limit


@dataclass
class StageContext:
    """Turns a stage's references into paths under the pipeline's output directory."""

    recipe: Recipe
    out: Path
    console: Console

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def main_output(self, name: str) -> Path:
        """What ``@name`` means: a data file for synthesis stages, the stage directory otherwise."""
        if self.recipe.kind_of(name) in DATA_PRODUCERS:
            return self.stage_dir(name) / DATA_FILE
        return self.stage_dir(name)

    def resolve(self, value: str) -> str:
        """``@stage`` / ``@stage/file`` → a path; ``base`` → the recipe's model; else unchanged."""
        if value == BASE_MODEL:
            return self.recipe.model
        ref = parse_reference(value)
        if ref is None:
            return value
        name, inner = ref
        return str(self.stage_dir(name) / inner) if inner else str(self.main_output(name))

    # -- concrete settings: what the stage's command would receive -------------------------

    def training_settings(self, name: str, stage: TrainingStage) -> SFTSettings | RLSettings | DPOSettings:
        """The settings ``rulewise train sft|rl|dpo`` would receive, with references resolved."""
        settings_class, data_field = TRAINING_KINDS[stage.kind]
        fields = stage.model_dump(exclude={"kind", "launcher", "out"})
        fields |= {"model": self.resolve(stage.model), data_field: self.resolve(getattr(stage, data_field))}
        return settings_class(**fields, out=str(self.stage_dir(name)))

    def eval_config(self, stage: EvalStage, *, check_files: bool) -> tuple[EvalConfig, list[str]]:
        """The eval configuration, and notes on optional benchmarks left out (files missing)."""
        from rulewise.evaluation.benchmarks import parse_bench_spec

        specs, skipped = [], []
        for entry in stage.bench_entries():
            parsed = parse_bench_spec(entry.spec)
            parsed["source"] = self.resolve(parsed["source"])
            is_path = parse_reference(entry.spec.partition("=")[2]) is None and "/" in parsed["source"]
            if entry.optional and is_path and not Path(parsed["source"]).exists():
                skipped.append(f"{parsed['name']} ({parsed['source']} not found)")
                continue
            if check_files and is_path and not Path(parsed["source"]).exists():
                raise RulewiseError("benchmark file not found", path=parsed["source"], field="benches")
            specs.append(BenchSpec(**parsed))
        if not specs:
            raise RulewiseError("no benchmark left to run (all optional ones are missing)", field="benches")
        shared = stage.model_dump(include=set(EvalConfig.model_fields) - {"model", "benches"})
        config = EvalConfig(model=self.resolve(stage.model), benches=specs, **shared)
        return config, skipped


# -- running ---------------------------------------------------------------------------------


def run_training(kind: str, settings: Any) -> None:
    """In this process: the function behind ``rulewise train KIND``."""
    if kind == "sft":
        from rulewise.training.sft import run_sft

        run_sft(settings)
    elif kind == "rl":
        from rulewise.rl.train import run_rl

        run_rl(settings)
    else:
        from rulewise.training.dpo import run_dpo

        run_dpo(settings)


def run_stage(ctx: StageContext, name: str) -> None:
    stage = ctx.recipe.stages[name]
    out = ctx.stage_dir(name)
    if isinstance(stage, PromptsStage):
        from rulewise.data.prompt_set import write_prompt_set

        _, train_split, dev_split = write_prompt_set(
            out, seed=stage.seed, dev_fraction=stage.dev_fraction, math_count=stage.math_count
        )
        ctx.console.print(f"{len(train_split)} train and {len(dev_split)} dev prompts in {out}")
    elif isinstance(stage, SynthesisStage):
        _run_synthesis(ctx, name, stage)
    elif isinstance(stage, SFTStage | RLStage | DPOStage):
        settings = ctx.training_settings(name, stage)
        if stage.launcher is not None:
            _launch(ctx, name, stage.kind, settings, stage.launcher)
        else:
            run_training(stage.kind, settings)
    elif isinstance(stage, PairsStage):
        _run_pairs(ctx, name, stage)
    elif isinstance(stage, EvalStage):
        from rulewise.evaluation.runner import run_eval

        config, skipped = ctx.eval_config(stage, check_files=True)
        for note in skipped:
            ctx.console.print(f"[yellow]optional benchmark left out:[/yellow] {note}")
        run_eval(config, out, batch_size=stage.batch_size, precision=stage.precision, console=ctx.console)
    elif isinstance(stage, ReportStage):
        from rulewise.evaluation.report import compare_runs

        directories, labels = [], []
        for run in stage.runs:  # @EVAL_STAGE, or the directory of an eval run made elsewhere
            ref = parse_reference(run)
            directory = ctx.stage_dir(ref[0]) if ref else Path(run)
            if not (directory / "results.jsonl").is_file():
                raise RulewiseError(
                    "not an eval run directory (no results.jsonl)", path=directory, field="runs"
                )
            directories.append(directory)
            labels.append((ctx.recipe.stages[ref[0]].label or ref[0]) if ref else directory.name)  # type: ignore[union-attr]
        compare_runs(directories, out, labels=labels)


def _run_synthesis(ctx: StageContext, name: str, stage: SynthesisStage) -> None:
    from rulewise.data.jobs import synthesize_bc, synthesize_context_distill
    from rulewise.saro.jobs import synthesize_rw

    out = ctx.stage_dir(name) / DATA_FILE
    prompts = ctx.resolve(stage.prompts)
    with job_progress(ctx.console, f"teacher {stage.teacher}") as hooks:
        if stage.kind == "rw":
            report = synthesize_rw(
                prompts,
                out,
                teacher=stage.teacher,
                rulebook=stage.rulebook,
                shortest_of=stage.shortest_of,
                progress=hooks,
            )
        elif stage.kind == "bc":
            report = synthesize_bc(
                prompts,
                out,
                teacher=stage.teacher,
                rulebook=stage.rulebook,
                paraphrase=stage.paraphrase,
                progress=hooks,
            )
        else:
            report = synthesize_context_distill(
                prompts, out, teacher=stage.teacher, rulebook=stage.rulebook, progress=hooks
            )
    ctx.console.print(
        f"{report.written} trajectories written ({report.consult_share:.0%} consult the rules), "
        f"{report.skipped} already done, {report.rejected} filtered out by the judge"
    )


def _run_pairs(ctx: StageContext, name: str, stage: PairsStage) -> None:
    import json

    from rulewise.saro.jobs import synthesize_srpo_pairs
    from rulewise.saro.pairs import stats_summary

    with job_progress(ctx.console, "SRPO pairs") as hooks:
        stats = synthesize_srpo_pairs(
            ctx.resolve(stage.model),
            ctx.resolve(stage.prompts),
            ctx.stage_dir(name) / DATA_FILE,
            **stage.model_dump(exclude={"kind", "model", "prompts"}),
            progress=hooks,
        )
    summary = stats_summary(stats)
    (ctx.stage_dir(name) / "stats.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    ctx.console.print(json.dumps(summary))


def launch_command(config_path: Path, command: str, launcher: Any) -> list[str]:
    """``accelerate launch [--config_file F] --num_processes N -m rulewise.cli.main train KIND --config C``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launcher.accelerate_config:
        cmd += ["--config_file", launcher.accelerate_config]
    cmd += ["--num_processes", str(launcher.num_processes)]
    return cmd + ["-m", "rulewise.cli.main", "train", command, "--config", str(config_path)]


def _launch(ctx: StageContext, name: str, command: str, settings: Any, launcher: Any) -> None:
    """Run a training stage as its own ``accelerate launch`` job with the resolved settings."""
    config_path = ctx.out / f"{name}.{command}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    cmd = launch_command(config_path, command, launcher)
    ctx.console.print("$ " + shlex.join(cmd))
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise RulewiseError(
            f"stage '{name}' failed under accelerate launch (exit code {result.returncode})",
            path=config_path,
            hint="rerun the same command to resume from its last checkpoint",
        )


# -- estimates -------------------------------------------------------------------------------


def estimate_seconds(stage: Any) -> float:
    """A rough duration on the 2-core reference machine (for the ETA; rescaled as stages finish)."""
    if isinstance(stage, PromptsStage):
        return 2.0
    if isinstance(stage, SynthesisStage):
        return 10.0 if stage.teacher == "scripted" else 600.0
    if isinstance(stage, SFTStage):
        examples_per_step = stage.batch_size * stage.grad_accum
        steps = stage.max_steps if stage.max_steps > 0 else stage.epochs * 600 / examples_per_step
        speed = SFT_TOKENS_PER_SECOND * (TOP_LAYERS_SPEEDUP if stage.train_top_layers else 1.0)
        return MODEL_LOAD_SECONDS + steps * examples_per_step * SFT_TOKENS_PER_EXAMPLE / speed
    if isinstance(stage, DPOStage):
        examples = stage.max_steps * stage.batch_size * stage.grad_accum if stage.max_steps > 0 else 300
        # chosen + rejected, policy + reference forward: about 3 SFT examples' worth each
        return MODEL_LOAD_SECONDS * 2 + examples * 3 * SFT_TOKENS_PER_EXAMPLE / SFT_TOKENS_PER_SECOND
    if isinstance(stage, PairsStage):
        prompts = stage.limit or UNKNOWN_SIZE
        return MODEL_LOAD_SECONDS + prompts * (stage.samples + stage.branches) * EVAL_SECONDS_PER_ITEM / 2
    if isinstance(stage, RLStage):
        rollouts = stage.max_steps * stage.prompts_per_step * stage.group_size
        return MODEL_LOAD_SECONDS + rollouts * RL_SECONDS_PER_ROLLOUT
    if isinstance(stage, EvalStage):
        from rulewise.evaluation.benchmarks import parse_bench_spec

        items = sum(
            parse_bench_spec(entry.spec)["limit"] or stage.limit or UNKNOWN_SIZE
            for entry in stage.bench_entries()
        )
        return MODEL_LOAD_SECONDS + items * EVAL_SECONDS_PER_ITEM
    return 5.0
