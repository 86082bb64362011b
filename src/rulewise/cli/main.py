"""The ``rulewise`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rulewise import __version__
from rulewise.cli import config_cmd, data_cmd, models_cmd, rules_cmd, train_cmd
from rulewise.cli.chat_cmd import chat
from rulewise.cli.common import err_console
from rulewise.cli.eval_cmd import eval_command, judge_command, report_command
from rulewise.cli.run_cmd import quickstart_command, recipes_app, run_command
from rulewise.cli.serve_cmd import audit_app, serve_command
from rulewise.errors import RulewiseError, full_disk_named

app = typer.Typer(
    name="rulewise",
    help="Reasoning-based safety alignment: adaptive rule consultation (ASCL/IFPO), SaRO, and evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("quickstart")(quickstart_command)
app.command("run")(run_command)
app.command("chat")(chat)
app.command("eval")(eval_command)
app.command("report")(report_command)
app.command("judge")(judge_command)
app.command("serve")(serve_command)
app.add_typer(rules_cmd.app, name="rules")
app.add_typer(models_cmd.app, name="models")
app.add_typer(data_cmd.app, name="data")
app.add_typer(train_cmd.app, name="train")
app.add_typer(recipes_app, name="recipes")
app.add_typer(config_cmd.app, name="config")
app.add_typer(audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        print(f"rulewise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: all cores).")] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    from rulewise.runtime import configure_threads

    configure_threads(threads)


def main() -> None:
    """Console-script entry point: user errors become one clear line and exit code 2."""
    try:
        with full_disk_named(Path.cwd(), "the command"):
            app()
    except RulewiseError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # `python -m rulewise.cli.main ...`, as `accelerate launch -m` runs it
    main()
