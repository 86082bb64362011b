"""``rulewise serve`` and ``rulewise audit``: a model behind an OpenAI-compatible server whose
rule tool runs server-side, and the audit trail it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rulewise.cli.common import console, err_console, job_settings, quiet_libraries


def serve_command(
    model: Annotated[str, typer.Argument(help="'default', a checkpoint directory or a Hub id.")],
    rules: Annotated[
        str | None, typer.Option("--rules", "-r", help="Rulebook YAML/JSON (default: the shipped one).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    audit_log: Annotated[
        Path | None, typer.Option("--audit-log", help="Audit JSONL (default rulewise-audit.jsonl).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML with any serve setting.")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="key=value of any setting, e.g. max_concurrent=8 (rulewise config show serve)."
        ),
    ] = None,
) -> None:
    """Serve MODEL on an OpenAI-compatible API; consult_safety_rules runs server-side on the live rulebook.

    Replies name the rules consulted (body field 'rulewise', header x-rulewise-rules); every request
    adds a line to the audit log; editing the rulebook file (or POST /admin/reload) swaps the rules
    without a restart.

    Example: rulewise serve default --rules my_rules.yaml --port 8000
    """
    quiet_libraries()
    from rulewise.serving.server import ServeSettings, build_server, run_server

    flags = {"model": model, "rules": rules, "host": host, "port": port, "audit_log": audit_log}
    settings = job_settings(ServeSettings, config, flags, overrides)
    with console.status(f"loading model '{settings.model}'…"):
        server = build_server(settings, log=lambda line: err_console.print(f"[yellow]{line}[/yellow]"))
    console.print(
        f"serving '{settings.name or settings.model}' on http://{settings.host}:{settings.port}/v1 "
        f"· rulebook {server.rules.path} (version {server.rules.current.version}) · audit {settings.audit_log}"
    )
    run_server(server)


audit_app = typer.Typer(help="Read the audit trail rulewise serve writes.", no_args_is_help=True)


@audit_app.command("summarize")
def summarize_command(
    log: Annotated[Path, typer.Argument(help="Audit JSONL written by rulewise serve.")],
) -> None:
    """Per-rule counts: requests that retrieved each rule, cited it, and were refused with it.

    Example: rulewise audit summarize rulewise-audit.jsonl
    """
    from rulewise.serving.audit import summarize

    summary = summarize(log)
    verdicts = ", ".join(f"{name} {count}" for name, count in summary.verdicts.most_common())
    console.print(
        f"{summary.requests} requests · rules consulted in {summary.consulted} · verdicts: {verdicts or 'none'}"
    )
    console.print("rulebook versions: " + ", ".join(f"{v} ({n})" for v, n in summary.versions.most_common()))
    table = Table("rule", "retrieved", "cited", "refusals")
    for rule in sorted(summary.retrieved | summary.cited, key=lambda r: -summary.retrieved[r]):
        table.add_row(
            rule, str(summary.retrieved[rule]), str(summary.cited[rule]), str(summary.refused_by_rule[rule])
        )
    console.print(table)
    if summary.torn_last_line:
        console.print(
            "[yellow]the last line is incomplete (being written, or a killed write); not counted[/yellow]"
        )
