"""``rulewise run``, ``rulewise quickstart`` and ``rulewise recipes``: whole pipelines from a recipe."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rulewise.cli.common import console, quiet_libraries

recipes_app = typer.Typer(help="List and show the built-in recipes.", no_args_is_help=True)

OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output directory (default: runs/RECIPE); rerun to continue."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe key, e.g. stages.sft.max_steps=50 or model=PATH."),
]
RedoOpt = Annotated[
    list[str] | None,
    typer.Option("--redo", help="Discard this stage's outputs (and what depends on them) and run it again."),
]


def _run(
    recipe_spec: str, out: Path | None, sets: list[str], budget: str | None, redo: list[str], dry: bool
) -> None:
    quiet_libraries()
    from rulewise.pipeline.recipe import load_recipe
    from rulewise.pipeline.runner import dry_run, run_recipe, summary_table

    recipe = load_recipe(recipe_spec, overrides=sets, budget=budget)
    if dry:
        for line in dry_run(recipe, out=out):
            console.print(line, markup=False, highlight=False)
        console.print(f"[green]recipe '{recipe.name}' is valid[/green]: every stage's settings check out")
        return
    outcomes = run_recipe(recipe, out=out, redo=redo, console=console)
    console.print(summary_table(outcomes))
    reports = [o for o in outcomes if o.kind == "report"]
    for outcome in reports:
        report = outcome.output / "report.md"
        console.print(report.read_text(encoding="utf-8"), markup=False, highlight=False)
        for name, path in (
            ("report", report),
            ("plot", outcome.output / "safety_utility.png"),
            ("viewer", outcome.output / "viewer.html"),
        ):
            console.print(f"[green]{name}[/green] {path}", soft_wrap=True, highlight=False)


def run_command(
    recipe: Annotated[
        str, typer.Argument(help="A recipe YAML file, or a built-in name (see 'rulewise recipes list').")
    ],
    out: OutOpt = None,
    overrides: SetOpt = None,
    budget: Annotated[str | None, typer.Option(help="A named budget of the recipe, e.g. 'fast'.")] = None,
    redo: RedoOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate every stage and input file; load no model.")
    ] = False,
) -> None:
    """Run a recipe: its stages in order, each cached and resumable, with one ETA for the pipeline.

    Example: rulewise run ascl --out runs/ascl --set stages.sft.max_steps=100
    """
    _run(recipe, out, list(overrides or []), budget, list(redo or []), dry_run)


class Budget(str, Enum):
    fast = "fast"
    full = "full"


def quickstart_command(
    out: OutOpt = None,
    budget: Annotated[
        Budget, typer.Option(help="fast: about 15 minutes on 2 CPU cores; full: the ascl recipe as written.")
    ] = Budget.fast,
    overrides: SetOpt = None,
    redo: RedoOpt = None,
) -> None:
    """The whole ASCL pipeline on the default model: base eval, BC data, SFT, IFPO, evals, report.

    It is the built-in 'ascl' recipe (rulewise recipes show ascl) at a small budget.

    Example: rulewise quickstart --out runs/quickstart
    """
    target = out or Path("runs/quickstart" if budget is Budget.fast else "runs/ascl")
    _run(
        "ascl",
        target,
        list(overrides or []),
        "fast" if budget is Budget.fast else None,
        list(redo or []),
        False,
    )


@recipes_app.command("list")
def list_command() -> None:
    """The built-in recipes and what they do.

    Example: rulewise recipes list
    """
    from rich.table import Table

    from rulewise.pipeline.recipe import builtin_recipes, load_recipe

    table = Table()
    for column in ("recipe", "stages", "budgets", "description"):
        table.add_column(column)
    for name, path in builtin_recipes().items():
        recipe = load_recipe(path)
        table.add_row(
            name, str(len(recipe.stages)), ", ".join(recipe.budgets) or "–", recipe.description.strip()
        )
    console.print(table)


@recipes_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="A built-in recipe name.")],
) -> None:
    """Print a built-in recipe's YAML (copy it to start your own).

    Example: rulewise recipes show ascl > my_recipe.yaml
    """
    from rulewise.pipeline.recipe import resolve_recipe_path

    print(resolve_recipe_path(name).read_text(encoding="utf-8"), end="")
