"""What every stage kind shares: references between stages, the context a stage runs in, and
the interface each kind implements in its own module.

A kind is a pydantic model of its settings (for training and evaluation: the job's own settings
class plus the stage's inputs) that also says what its output is, what it reads (checked by a
dry run), how long it roughly takes and how it runs. The runner and the recipe loader only call
these methods; they never ask which kind a stage is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from rulewise.errors import RulewiseError

if TYPE_CHECKING:
    from rulewise.pipeline.recipe import Recipe

REFERENCE = re.compile(r"^@([A-Za-z0-9][A-Za-z0-9_.-]*)(?:/(.+))?$")
BASE_MODEL = "base"
DATA_FILE = "data.jsonl"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Output = Literal["prompts", "data", "model", "eval", "report"]
#: What a reference in a given field may point at, by the target stage's output.
ACCEPTS: dict[str, set[str]] = {
    "model": {"model"},
    "data": {"data"},
    "prompts": {"prompts"},
    "runs": {"eval"},
    "benches": {"prompts"},
}

# Seconds on the 2-core reference machine with the default 135M model (measured; see
# docs/results.md). Only used to show an ETA before the first stage finishes; after that the
# runner rescales them by how fast this machine actually was.
MODEL_LOAD_SECONDS = 15.0
EVAL_SECONDS_PER_ITEM = 1.0  # continuous batching (quickstart: 24 conversations in about 20 s)
UNKNOWN_SIZE = 100  # items assumed for a benchmark without a limit


def recipe_model_field() -> Any:
    """A stage's ``model``: recipes name models by reference, so the default is the recipe's base
    (one definition for every kind that takes a model)."""
    return Field(default=BASE_MODEL, description="the model: 'base' (the recipe's), @STAGE or a model spec")


def parse_reference(value: str) -> tuple[str, str | None] | None:
    """``"@sft"`` → ``("sft", None)``; ``"@prompts/dev.jsonl"`` → ``("prompts", "dev.jsonl")``."""
    match = REFERENCE.match(value)
    return (match.group(1), match.group(2)) if match else None


@dataclass
class StageContext:
    """Turns a stage's references into paths under the pipeline's output directory."""

    recipe: Recipe
    out: Path
    console: Console

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def main_output(self, name: str) -> Path:
        """What ``@name`` means: a data file for stages that write data, the stage directory otherwise."""
        if self.recipe.stages[name].output == "data":
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


class StageKind(BaseModel):
    """The interface of a stage kind (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    output: ClassVar[Output]

    def references(self) -> dict[str, str]:
        """Field → value for every field that may hold ``@STAGE`` or ``base``."""
        return {}

    def reads(self, ctx: StageContext, name: str) -> list[str]:
        """What the stage reads, after checking it exists or an earlier stage makes it (dry run)."""
        return [ctx.resolve(ref) for ref in self.references().values()]

    def estimate_seconds(self) -> float:
        """A rough duration on the 2-core reference machine (for the ETA)."""
        return 5.0

    def run(self, ctx: StageContext, name: str) -> None:
        raise NotImplementedError


class Launcher(BaseModel):
    """Run a training stage in its own processes with ``accelerate launch`` (multi-GPU, DeepSpeed, FSDP)."""

    model_config = ConfigDict(extra="forbid")

    accelerate_config: str | None = Field(default=None, description="accelerate config YAML")
    num_processes: int = Field(default=1, ge=1, description="processes to launch")


# -- checks a dry run makes, without loading anything -------------------------------------------


def check_model(value: str, resolved: str, field_name: str) -> str:
    """A model field's meaning, without loading anything."""
    if parse_reference(value) is not None:
        return f"trained by stage {value}"
    if resolved == "default" or Path(resolved).is_dir():
        return resolved
    if not HUB_ID.match(resolved):
        raise RulewiseError("model directory not found", path=resolved, field=field_name)
    return f"{resolved} (Hub id, or a directory made before it runs)"


def check_file(value: str, field_name: str) -> None:
    if parse_reference(value) is None and not Path(value).is_file():
        raise RulewiseError("file not found", path=value, field=field_name)


def check_rulebook(value: str, field_name: str) -> None:
    if value != "default":
        check_file(value, field_name)
