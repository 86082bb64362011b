"""``rulewise rules``: browse, search and validate rulebooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from rulewise.cli.common import RetrieverChoice, console
from rulewise.rules import build_retriever, load_rulebook

app = typer.Typer(help="Browse, search and validate rulebooks.", no_args_is_help=True)

RulebookOpt = Annotated[
    str, typer.Option("--rulebook", "-r", help="Rulebook YAML/JSON file, or 'default' for the shipped one.")
]


@app.command("list")
def list_rules(
    rulebook: RulebookOpt = "default",
    category: Annotated[str | None, typer.Option(help="Only rules of this category.")] = None,
) -> None:
    """List the rules of a rulebook.

    Example: rulewise rules list --category cyber_attacks
    """
    book = load_rulebook(rulebook)
    table = Table(title=f"{book.name} v{book.version} — {len(book.rules)} rules")
    for column in ("id", "category", "title"):
        table.add_column(column)
    for rule in book.rules:
        if category is None or rule.category == category:
            table.add_row(rule.id, rule.category, rule.title)
    console.print(table)


@app.command("show")
def show_rule(
    rule_id: Annotated[str, typer.Argument(help="Rule id, e.g. WEAP-01 (case-insensitive).")],
    rulebook: RulebookOpt = "default",
) -> None:
    """Show one rule in full: what it forbids, what it allows, examples.

    Example: rulewise rules show CYBER-01
    """
    book = load_rulebook(rulebook)
    try:
        rule = book.get(rule_id)
    except KeyError:
        known = ", ".join(r.id for r in book.rules)
        raise typer.BadParameter(f"no rule '{rule_id}' in {book.name}; known ids: {known}") from None
    lines = [f"[bold]Rule:[/bold] {rule.rule}", "", "[bold red]Not allowed[/bold red]"]
    lines += [f"  • {item}" for item in rule.disallowed]
    lines += ["", "[bold green]Allowed[/bold green]"] + [f"  • {item}" for item in rule.allowed]
    if rule.examples:
        lines += ["", "[bold]Examples[/bold]"]
        lines += [
            f"  {ex.verdict:>7}: {ex.request}" + (f"  [dim]({ex.why})[/dim]" if ex.why else "")
            for ex in rule.examples
        ]
    console.print(Panel("\n".join(lines), title=f"{rule.id} · {rule.title}", subtitle=rule.category))


@app.command("search")
def search_rules(
    query: Annotated[str, typer.Argument(help="What to look up, as a model would phrase a tool call.")],
    rulebook: RulebookOpt = "default",
    k: Annotated[int, typer.Option("-k", min=1, help="How many rules to return.")] = 3,
    retriever: Annotated[
        RetrieverChoice, typer.Option(help="bm25 (default) or dense.")
    ] = RetrieverChoice.bm25,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rank rules for a query with the retriever the tool uses.

    Example: rulewise rules search "how to make a pipe bomb"
    """
    hits = build_retriever(load_rulebook(rulebook), retriever.value).search(query, k=k)
    if as_json:
        print(
            json.dumps([{"id": h.rule.id, "score": round(h.score, 4), "title": h.rule.title} for h in hits])
        )
        return
    if not hits:
        console.print("[yellow]No rule matches this query.[/yellow]")
        return
    table = Table(title=f"rules for: {query[:80]}")
    for column in ("rank", "id", "score", "category", "title"):
        table.add_column(column)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), hit.rule.id, f"{hit.score:.3f}", hit.rule.category, hit.rule.title)
    console.print(table)


@app.command("coverage")
def rule_coverage_cmd(
    bench: Annotated[
        list[str],
        typer.Argument(help="Benchmarks as NAME[:LAYOUT][@LIMIT]=PATH, as for rulewise eval --bench."),
    ],
    rulebook: RulebookOpt = "default",
    retriever: Annotated[
        RetrieverChoice, typer.Option(help="bm25 (default) or dense.")
    ] = RetrieverChoice.bm25,
) -> None:
    """How often the rulebook alone decides each benchmark as labelled: the side of the clause
    the tool puts first, against the expected behaviour. A model that follows its rules cannot
    do better; a low figure means the rulebook lacks clauses for that wording.

    Example: rulewise rules coverage "advbench=../shared/data/advbench/harmful_behaviors.csv"
    """
    from rulewise.evaluation.benchmarks import load_bench_spec, rule_coverage
    from rulewise.rules import make_consult_tool

    tool = make_consult_tool(build_retriever(load_rulebook(rulebook), retriever.value))
    table = Table(title="rule verdict agrees with the label")
    for column in ("benchmark", "harmful: ruled 'refuse'", "benign: ruled 'comply'"):
        table.add_column(column)
    for spec in bench:
        name, items = load_bench_spec(spec)
        counts = rule_coverage(items, tool)
        cells = []
        for expected in ("refuse", "comply"):
            agree, total = counts.get(expected, (0, 0))
            cells.append(f"{agree}/{total} ({agree / total:.1%})" if total else "–")
        table.add_row(name, *cells)
    console.print(table)


@app.command("validate")
def validate_rulebook(
    path: Annotated[Path, typer.Argument(help="Rulebook YAML/JSON file to check.")],
) -> None:
    """Check a rulebook file; errors name the line, rule id and field.

    Example: rulewise rules validate my_rules.yaml
    """
    book = load_rulebook(path)
    console.print(f"[green]OK[/green] {path}: {len(book.rules)} rules in {len(book.categories)} categories")
