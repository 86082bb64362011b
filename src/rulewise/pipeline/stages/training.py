"""What the three training kinds (``sft``, ``rl``, ``dpo``) share: a stage is the job's own
settings plus the stage's inputs; it runs in this process or as an ``accelerate launch`` job."""

from __future__ import annotations

import importlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, Field

from rulewise.errors import RulewiseError
from rulewise.pipeline.stages.base import (
    Launcher,
    StageContext,
    StageKind,
    check_file,
    check_model,
    check_rulebook,
    recipe_model_field,
)

# Seconds on the 2-core reference machine (see base.py): SFT with the shared-prefix forward in
# bf16 (quickstart: 32 steps x 4 in 3.5 min); train_top_layers 8 on the default model: 133 vs
# 85 tokens/s.
SFT_TOKENS_PER_SECOND = 200.0
TOP_LAYERS_SPEEDUP = 1.5
SFT_TOKENS_PER_EXAMPLE = 450


class TrainingStage(StageKind):
    """A training job as a stage; subclasses also derive from the job's settings class."""

    output = "model"
    command: ClassVar[str]  # rulewise train COMMAND
    data_field: ClassVar[str] = "data"  # the field naming what it trains on
    settings_class: ClassVar[type[BaseModel]]
    runner: ClassVar[str]  # "module:function" behind rulewise train COMMAND, imported when run

    model: str = recipe_model_field()
    out: str = Field(default="", description="set by the pipeline: the stage's directory")
    launcher: Launcher | None = Field(default=None, description="run as an accelerate launch job")

    def references(self) -> dict[str, str]:
        return {"model": self.model, self.data_field: getattr(self, self.data_field)}  # type: ignore[attr-defined]

    def settings(self, ctx: StageContext, name: str) -> Any:
        """What ``rulewise train COMMAND`` would receive, with references resolved."""
        fields = self.model_dump(exclude={"kind", "launcher", "out"})
        fields |= {
            "model": ctx.resolve(self.model),
            self.data_field: ctx.resolve(getattr(self, self.data_field)),
        }  # type: ignore[attr-defined]
        return self.settings_class(**fields, out=str(ctx.stage_dir(name)))

    def reads(self, ctx: StageContext, name: str) -> list[str]:
        prefix = f"stages.{name}"
        try:
            settings = self.settings(ctx, name)
        except ValueError as exc:  # pydantic: the concrete settings do not validate
            raise RulewiseError(str(exc), path=ctx.recipe.source, field=prefix) from None
        reads = ["model " + check_model(self.model, settings.model, f"{prefix}.model")]  # type: ignore[attr-defined]
        check_file(getattr(self, self.data_field), f"{prefix}.{self.data_field}")
        reads.append(getattr(settings, self.data_field))
        if "rulebook" in type(self).model_fields:
            check_rulebook(self.rulebook, f"{prefix}.rulebook")  # type: ignore[attr-defined]
        if self.launcher is not None:
            if self.launcher.accelerate_config:
                check_file(self.launcher.accelerate_config, f"{prefix}.launcher.accelerate_config")
            command = launch_command(ctx.out / f"{name}.{self.command}.yaml", self.command, self.launcher)
            reads.append("(launched as) " + " ".join(command))
        return reads

    def train(self, settings: Any) -> None:
        """In this process: the function behind ``rulewise train COMMAND`` (imported only now, so
        listing or checking a recipe does not import the training stack)."""
        module, _, function = self.runner.partition(":")
        getattr(importlib.import_module(module), function)(settings)

    def run(self, ctx: StageContext, name: str) -> None:
        self._run(ctx, name)
        drop_checkpoints(ctx.stage_dir(name))

    def _run(self, ctx: StageContext, name: str) -> None:
        settings = self.settings(ctx, name)
        if self.launcher is None:
            self.train(settings)
            return
        config_path = ctx.out / f"{name}.{self.command}.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(
            yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
        cmd = launch_command(config_path, self.command, self.launcher)
        ctx.console.print("$ " + shlex.join(cmd))
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0:
            raise RulewiseError(
                f"stage '{name}' failed under accelerate launch (exit code {result.returncode})",
                path=config_path,
                hint="rerun the same command to resume from its last checkpoint",
            )


def drop_checkpoints(stage_dir: Path) -> None:
    """Delete a finished stage's ``checkpoint-*`` folders. They exist to resume an interrupted
    stage, and a finished one is never resumed (later stages read its final model); each holds
    the optimizer state too (about 1 GB on the default model), so keeping them left a quickstart
    at 9 GB of disk. ``rulewise train`` outside a recipe keeps them."""
    for checkpoint in stage_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)


def launch_command(config_path: Path, command: str, launcher: Launcher) -> list[str]:
    """``accelerate launch [--config_file F] --num_processes N -m rulewise.cli.main train KIND --config C``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launcher.accelerate_config:
        cmd += ["--config_file", launcher.accelerate_config]
    cmd += ["--num_processes", str(launcher.num_processes)]
    return cmd + ["-m", "rulewise.cli.main", "train", command, "--config", str(config_path)]


def supervised_seconds(examples: float, tokens_per_example: float, top_layers: bool) -> float:
    speed = SFT_TOKENS_PER_SECOND * (TOP_LAYERS_SPEEDUP if top_layers else 1.0)
    return examples * tokens_per_example / speed
