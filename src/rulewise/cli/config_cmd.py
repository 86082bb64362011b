"""``rulewise config``: the settings of each job, with their types, defaults and descriptions."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from rich.table import Table

from rulewise.cli.common import console
from rulewise.errors import RulewiseError

app = typer.Typer(help="Show the settings of a job.", no_args_is_help=True)


#: Each job's settings class, imported only when shown (the training stack is slow to import).
JOBS = {
    "sft": "rulewise.training.sft:SFTSettings",
    "rl": "rulewise.rl.train:RLSettings",
    "dpo": "rulewise.training.dpo:DPOSettings",
    "eval": "rulewise.evaluation.runner:EvalConfig",
    "srpo": "rulewise.saro.jobs:SRPOPairsSettings",
    "serve": "rulewise.serving.server:ServeSettings",
}


def _settings_class(job: str) -> type[BaseModel]:
    if job not in JOBS:
        raise RulewiseError(f"unknown job {job!r}", hint="one of: " + ", ".join(JOBS))
    module, _, name = JOBS[job].partition(":")
    return getattr(importlib.import_module(module), name)


def settings_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted name, type, default, description) for every field, nested settings flattened."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(settings_rows(annotation, f"{prefix}{name}."))
            continue
        default: Any = field.get_default(call_default_factory=True)
        shown = "required" if default is PydanticUndefined else repr(default)
        kind = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        rows.append((prefix + name, kind, shown, field.description or ""))
    return rows


@app.command("show")
def show(
    job: Annotated[str, typer.Argument(help="sft, rl, dpo, eval, srpo or serve.")],
) -> None:
    """Every setting of a job — what `--set key=value`, `--config FILE` and a recipe stage accept.

    Example: rulewise config show rl
    """
    table = Table(title=f"rulewise {job} settings", show_lines=False)
    for column in ("setting", "type", "default", "what it does"):
        table.add_column(column, overflow="fold")
    for row in settings_rows(_settings_class(job)):
        table.add_row(*row)
    console.print(table)
