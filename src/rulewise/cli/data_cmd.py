"""``rulewise data``: build training data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rulewise.cli.common import console
from rulewise.progress import job_progress

if TYPE_CHECKING:
    from rulewise.data.synthesis import SynthesisReport

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
    math_count: Annotated[int, typer.Option(min=0, help="Maths word problems to generate.")] = 200,
) -> None:
    """Write the built-in training prompt set (harmful, jailbreak, look-alike, benign, maths) with a dev split.

    Example: rulewise data prompts --out data/prompts
    """
    from rulewise.data.prompt_set import diversity_report, write_prompt_set

    prompts, train, dev = write_prompt_set(out, seed=seed, dev_fraction=dev_fraction, math_count=math_count)
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


@app.command("overlap")
def overlap_command(
    bench: Annotated[
        list[str],
        typer.Argument(help="Benchmarks as NAME[:LAYOUT][@LIMIT]=PATH, as for rulewise eval --bench."),
    ],
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", "-p", help="Prompts JSONL to check (default: the built-in prompt set)."),
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Content-word Jaccard similarity that flags a pair.")
    ] = 0.4,
) -> None:
    """Check that training prompts neither copy nor paraphrase benchmark prompts: each request
    (without its jailbreak wrapper) against every benchmark prompt, by shared content words.
    Exits with status 1 when a pair is flagged.

    Example: rulewise data overlap "xstest=../shared/data/xstest/xstest_prompts.csv"
    """
    from rulewise.data.contamination import benchmark_overlaps
    from rulewise.data.prompt_set import build_prompt_set
    from rulewise.data.synthesis import load_prompts
    from rulewise.evaluation.benchmarks import load_bench_spec

    items = [item for spec in bench for item in load_bench_spec(spec)[1]]
    training = load_prompts(prompts) if prompts else build_prompt_set()
    found = benchmark_overlaps(training, items, threshold=threshold)
    source = prompts or "the built-in prompt set"
    if not found:
        console.print(
            f"[green]no overlap[/green]: {len(training)} prompts of {source} against {len(items)} benchmark "
            f"prompts (content-word similarity < {threshold})"
        )
        return
    table = Table(title=f"{len(found)} training request(s) too close to a benchmark prompt")
    for column in ("similarity", "training request", "benchmark prompt", "shared words"):
        table.add_column(column)
    for o in found:
        table.add_row(
            f"{o.similarity:.2f}", o.request, f"{o.benchmark}: {o.benchmark_prompt}", " ".join(o.shared)
        )
    console.print(table)
    raise typer.Exit(1)


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


def _print_report(report: SynthesisReport, out: Path) -> None:
    from rulewise.data.synthesis import rejected_path

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


def _synthesize(job: Callable[..., Any], label: str, prompts: Path, out: Path, **options: Any) -> None:
    """Run a resumable synthesis job with a progress bar, then say what it wrote and filtered out."""
    with job_progress(console, label) as hooks:
        report = job(prompts, out, progress=hooks, **options)
    _print_report(report, out)


@app.command("bc")
def bc_command(
    prompts: PromptsOpt,
    out: OutOpt,
    teacher: TeacherOpt = "scripted",
    rulebook: RulebookOpt = "default",
    paraphrase: Annotated[
        str | None, typer.Option(help="openai:MODEL@URL that rewrites each reasoning block (rule ids kept).")
    ] = None,
    counterfactual: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of look-alikes also written under their rule with sides swapped (refused there).",
        ),
    ] = 0.0,
    consult_plain: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Scripted teacher: share of plain tasks it consults the rules on anyway (default 0.5).",
        ),
    ] = None,
) -> None:
    """Synthesise ASCL behaviour-cloning trajectories (some consult the rules, some don't), judge-filtered.

    Example: rulewise data bc --prompts data/prompts/train.jsonl --teacher scripted --out data/bc.jsonl
    """
    from rulewise.data.jobs import synthesize_bc

    _synthesize(
        synthesize_bc,
        f"teacher {teacher}",
        prompts,
        out,
        teacher=teacher,
        rulebook=rulebook,
        paraphrase=paraphrase,
        counterfactual=counterfactual,
        consult_plain=consult_plain,
    )


@app.command("context-distill")
def context_distill_command(
    prompts: PromptsOpt, out: OutOpt, teacher: TeacherOpt = "scripted", rulebook: RulebookOpt = "default"
) -> None:
    """Synthesise the context-distillation baseline: rules pasted in context while generating, removed when stored.

    Example: rulewise data context-distill --prompts data/prompts/train.jsonl --out data/cd.jsonl
    """
    from rulewise.data.jobs import synthesize_context_distill

    label = f"teacher context-distill:{teacher}"
    _synthesize(synthesize_context_distill, label, prompts, out, teacher=teacher, rulebook=rulebook)


@app.command("rw")
def rw_command(
    prompts: PromptsOpt,
    out: OutOpt,
    teacher: TeacherOpt = "scripted",
    rulebook: RulebookOpt = "default",
    shortest_of: Annotated[
        int, typer.Option(min=1, help="Draw N chains per prompt and keep the shortest the judge accepts.")
    ] = 1,
) -> None:
    """Synthesise SaRO reasoning-style warm-up data: long, policy-grounded numbered reasoning, then the answer.

    Example: rulewise data rw --prompts data/prompts/train.jsonl --teacher scripted --shortest-of 3 --out data/rw.jsonl
    """
    from rulewise.saro.jobs import synthesize_rw

    label = f"teacher rw:{teacher}"
    _synthesize(
        synthesize_rw, label, prompts, out, teacher=teacher, rulebook=rulebook, shortest_of=shortest_of
    )


@app.command("srpo")
def srpo_command(
    model: Annotated[str, typer.Option("--model", "-m", help="The RW model (after 'rulewise train sft').")],
    prompts: PromptsOpt,
    out: OutOpt,
    samples: Annotated[int | None, typer.Option(help="Chains sampled per prompt (default 4).")] = None,
    branches: Annotated[
        int | None, typer.Option(help="Continuations sampled from each shared prefix (default 2).")
    ] = None,
    splitter: Annotated[
        str | None,
        typer.Option(help="How chains are cut into steps: paragraphs (default), numbered or sentences."),
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default 0.8).")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Token limit per sampled chain (default 256).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use N prompts, taken in turn from each kind (seeded).")
    ] = None,
    anchors: Annotated[
        bool | None,
        typer.Option(
            "--anchors/--no-anchors",
            help="Anchor pairs: a benign request the model always answers, its answer over a refusal (default off).",
        ),
    ] = None,
) -> None:
    """Build SRPO preference pairs (outcome-, process-level and anchor) from the RW model's own reasoning.

    Every setting and its default: rulewise config show srpo.

    Example: rulewise data srpo --model runs/rw --prompts data/prompts/train.jsonl --out data/srpo.jsonl --limit 60
    """
    import json as _json

    from rulewise.config import load_config
    from rulewise.saro.jobs import SRPOPairsSettings, synthesize_srpo_pairs
    from rulewise.saro.pairs import stats_summary

    flags = {"samples": samples, "branches": branches, "splitter": splitter, "temperature": temperature,
             "max_new_tokens": max_new_tokens, "limit": limit, "anchors": anchors}  # fmt: skip
    settings = load_config(SRPOPairsSettings, None, [f"{k}={v}" for k, v in flags.items() if v is not None])
    with job_progress(console, f"pairs from {model}") as hooks:
        stats = synthesize_srpo_pairs(model, prompts, out, settings, progress=hooks)
    console.print(_json.dumps(stats_summary(stats), indent=2))
    console.print(f"[green]wrote[/green] pairs to {out}")
