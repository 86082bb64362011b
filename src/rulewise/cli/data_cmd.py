"""``rulewise data``: build training data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rulewise.cli.common import console

app = typer.Typer(help="Build training data.", no_args_is_help=True)


@app.command("prompts")
def prompts_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for train.jsonl and dev.jsonl.")],
    seed: Annotated[
        int, typer.Option(help="Seed for the jailbreak wrappers, maths problems and the split.")
    ] = 0,
    dev_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of request families held out.")
    ] = 0.15,
) -> None:
    """Write the built-in training prompt set (harmful, jailbreak, look-alike, benign, maths) with a dev split.

    Example: rulewise data prompts --out data/prompts
    """
    from rulewise.data.prompt_set import build_prompt_set, diversity_report, split_train_dev

    prompts = build_prompt_set(seed=seed)
    train, dev = split_train_dev(prompts, dev_fraction=dev_fraction, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", train), ("dev", dev)):
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for prompt in split:
                handle.write(json.dumps(prompt.model_dump(), ensure_ascii=False) + "\n")
    table = Table(title=f"{len(prompts)} prompts")
    for column in ("kind", "label", "train", "dev"):
        table.add_column(column)
    train_counts, dev_counts = Counter(p.kind for p in train), Counter(p.kind for p in dev)
    for kind in ("harmful", "jailbreak", "lookalike", "benign", "math"):
        label = "harmful" if kind in {"harmful", "jailbreak"} else "benign"
        table.add_row(kind, label, str(train_counts[kind]), str(dev_counts[kind]))
    console.print(table)
    report = diversity_report(prompts)
    near = report["near_duplicate_pairs"]
    console.print(
        f"diversity: {report['exact_duplicates']} exact duplicates, {len(near)} near-duplicate pairs"
        + (f" (e.g. {near[0][0]} ~ {near[0][1]})" if near else "")
    )
    console.print(
        f"[green]wrote[/green] {out / 'train.jsonl'} ({len(train)}), {out / 'dev.jsonl'} ({len(dev)})"
    )


PromptsOpt = Annotated[
    Path, typer.Option("--prompts", "-p", help="Prompts JSONL (from 'rulewise data prompts').")
]
TeacherOpt = Annotated[
    str,
    typer.Option(
        "--teacher",
        "-t",
        help="'scripted' (offline), 'hf:MODEL' or 'openai:MODEL@URL' (key in OPENAI_API_KEY).",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output JSONL; rerun to resume.")]
RulebookOpt = Annotated[str, typer.Option("--rulebook", "-r", help="Rulebook file, or 'default'.")]


def _synthesize(prompts_path: Path, teacher, out: Path, tools: list[dict]) -> None:
    from rulewise.data.synthesis import load_prompts, rejected_path, synthesize
    from rulewise.progress import eta_progress

    prompts = load_prompts(prompts_path)
    with eta_progress(console) as progress:
        task = progress.add_task(f"teacher {teacher.name}", total=len(prompts))
        report = synthesize(prompts, teacher, out, tools=tools, on_progress=lambda: progress.advance(task))
    console.print(
        f"[green]wrote[/green] {report.written} trajectories to {out} "
        f"({report.with_tool_call} with a rule consultation = {report.consult_share:.0%}, "
        f"{report.written - report.with_tool_call} without); skipped {report.skipped} already done"
    )
    if report.written:
        console.print("by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(report.by_kind.items())))
    if report.rejected:
        reasons = "; ".join(f"{n}× {r}" for r, n in report.reasons.most_common())
        console.print(
            f"[yellow]filtered out[/yellow] {report.rejected} (judge disagrees with the label: {reasons}) → {rejected_path(out)}"
        )


@app.command("bc")
def bc_command(
    prompts: PromptsOpt,
    out: OutOpt,
    teacher: TeacherOpt = "scripted",
    rulebook: RulebookOpt = "default",
    paraphrase: Annotated[
        str | None, typer.Option(help="openai:MODEL@URL that rewrites each reasoning block (rule ids kept).")
    ] = None,
) -> None:
    """Synthesise ASCL behaviour-cloning trajectories (some consult the rules, some don't), judge-filtered.

    Example: rulewise data bc --prompts data/prompts/train.jsonl --teacher scripted --out data/bc.jsonl
    """
    from transformers.utils import get_json_schema

    from rulewise.data.teachers import build_teacher
    from rulewise.rules import load_rulebook, make_consult_tool
    from rulewise.rules.retrieval import build_retriever

    book = load_rulebook(rulebook)
    tools = [get_json_schema(make_consult_tool(build_retriever(book)))]
    chosen = build_teacher(teacher, book)
    if paraphrase is not None:
        from rulewise.data.teachers import ParaphrasingTeacher
        from rulewise.endpoint import ChatClient, parse_endpoint_spec
        from rulewise.errors import RulewiseError

        endpoint = parse_endpoint_spec(paraphrase, "openai")
        if endpoint is None:
            raise RulewiseError(f"--paraphrase '{paraphrase}' must be openai:MODEL@URL", field="paraphrase")
        chosen = ParaphrasingTeacher(chosen, ChatClient(*endpoint))
    _synthesize(prompts, chosen, out, tools)


@app.command("context-distill")
def context_distill_command(
    prompts: PromptsOpt, out: OutOpt, teacher: TeacherOpt = "scripted", rulebook: RulebookOpt = "default"
) -> None:
    """Synthesise the context-distillation baseline: rules pasted in context while generating, removed when stored.

    Example: rulewise data context-distill --prompts data/prompts/train.jsonl --out data/cd.jsonl
    """
    from rulewise.data.teachers import ContextDistillTeacher, build_teacher, rules_context
    from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT
    from rulewise.rules import load_rulebook

    book = load_rulebook(rulebook)
    system = f"{PLAIN_SYSTEM_PROMPT}\n\n# Safety rules\n\n{rules_context(book)}"
    inner = build_teacher(teacher, book, use_tools=False, system_prompt=system)
    _synthesize(prompts, ContextDistillTeacher(inner, book), out, tools=[])
