"""``rulewise eval`` and ``rulewise report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rulewise.cli.common import (
    REPETITION_PENALTY_HELP,
    BackendChoice,
    PrecisionChoice,
    RetrieverChoice,
    console,
    quiet_libraries,
)
from rulewise.evaluation import EVAL_BATCH_SIZE


def eval_command(
    bench: Annotated[
        list[str],
        typer.Option(
            "--bench",
            "-b",
            help="NAME=PATH, or NAME:LAYOUT=PATH for a file in a known layout (strongreject, advbench, harmbench, jbb, "
            "xstest, orbench, orbench_toxic, donotanswer, gsm8k, custom); NAME@N=PATH subsamples N items of that one. "
            "Repeat for several.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory (rerun the same command to resume).")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="'default', a checkpoint directory or a Hub id.")
    ] = "default",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Seeded random subsample of each benchmark without its own @N.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for subsampling and bootstrap intervals.")] = 0,
    judge: Annotated[
        str, typer.Option(help="'refusal' (offline) or 'openai:MODEL@URL' (key in OPENAI_API_KEY).")
    ] = "refusal",
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Do not offer consult_safety_rules.")] = False,
    rulebook: Annotated[
        str, typer.Option("--rulebook", "--rules", "-r", help="Rulebook file, or 'default'.")
    ] = "default",
    retriever: Annotated[
        RetrieverChoice, typer.Option(help="How the tool ranks rules.")
    ] = RetrieverChoice.bm25,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit per assistant turn.")] = 256,
    max_tool_calls: Annotated[int, typer.Option(min=0, help="Tool calls allowed per conversation.")] = 2,
    repetition_penalty: Annotated[float, typer.Option(min=1.0, help=REPETITION_PENALTY_HELP)] = 1.0,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="0 = greedy; > 0 samples (needed for --samples > 1).")
    ] = 0.0,
    samples: Annotated[
        int,
        typer.Option(
            min=1, help="Answers sampled per prompt: safety/compliance become avg@k, plus worst-of-k."
        ),
    ] = 1,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Conversations generated together.")
    ] = EVAL_BATCH_SIZE,
    precision: Annotated[
        PrecisionChoice, typer.Option(help="auto: bf16 autocast where the hardware has fast bf16.")
    ] = PrecisionChoice.auto,
    backend: Annotated[
        BackendChoice, typer.Option(help="hf: transformers generate; vllm: vLLM on a GPU ('rulewise[vllm]').")
    ] = BackendChoice.hf,
) -> None:
    """Evaluate a model on harmful, benign and maths benchmarks; writes results.jsonl, metrics.json, report.md.

    Example: rulewise eval --bench strongreject=../shared/data/strongreject/strongreject_dataset.csv
    --bench gsm8k=../shared/data/gsm8k/test.jsonl --limit 50 --out runs/base
    """
    quiet_libraries()
    from rulewise.evaluation.benchmarks import parse_bench_spec
    from rulewise.evaluation.runner import REPORT_FILE, BenchSpec, EvalConfig, run_eval

    specs = [BenchSpec(**parse_bench_spec(spec)) for spec in bench]
    config = EvalConfig(
        model=model,
        benches=specs,
        limit=limit,
        seed=seed,
        judge=judge,
        use_tools=not no_tools,
        rulebook=rulebook,
        retriever=retriever.value,
        max_new_tokens=max_new_tokens,
        max_tool_calls=max_tool_calls,
        repetition_penalty=repetition_penalty,
        temperature=temperature,
        samples=samples,
        backend=backend.value,
    )
    run_eval(config, out, batch_size=batch_size, precision=precision.value, console=console)
    console.print((out / REPORT_FILE).read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"[green]wrote[/green] {out}/results.jsonl, metrics.json, report.md")


def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories written by 'rulewise eval'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for report.md, plots and viewer.html.")],
) -> None:
    """Compare eval runs: Markdown table, safety–utility scatter, consultation bars, HTML trajectory viewer.

    Example: rulewise report runs/tools runs/no-tools --out runs/compare
    """
    from rulewise.evaluation.report import compare_runs

    paths = compare_runs(runs, out)
    console.print(paths["report"].read_text(encoding="utf-8"), markup=False, highlight=False)
    for name, path in paths.items():
        console.print(f"[green]{name}[/green] {path}")


def judge_command(
    source: Annotated[
        Path, typer.Argument(help="JSONL with prompt, response and whether the request was harmful.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL of verdicts (rerun the same command to resume).")
    ],
    judge: Annotated[
        str,
        typer.Option(
            help="'refusal' (offline content judge) or the LLM judge 'openai:MODEL@URL' (key in OPENAI_API_KEY)."
        ),
    ] = "refusal",
    harmful_field: Annotated[
        str | None,
        typer.Option(
            help="Field saying whether each request was harmful (true/false, harmful/benign, unsafe/safe, "
            "refuse/comply); default 'harmful', which then must be on every line."
        ),
    ] = None,
) -> None:
    """Re-judge existing responses: one verdict and reason per line, and a summary table.

    The same judge ``rulewise eval`` and the RL safety reward use.

    Example: rulewise judge runs/base/results.jsonl --harmful-field expected --out runs/base/rejudged.jsonl
    """
    from rich.table import Table

    from rulewise.evaluation.rejudge import judge_file

    summary = judge_file(source, out, judge=judge, harmful_field=harmful_field, console=console)
    table = Table(title=f"{summary.judged} judged now, {summary.resumed} from an earlier run")
    for column in ("request", "n", "full refusal", "partial refusal", "full compliance"):
        table.add_column(column, justify="right" if column != "request" else "left")
    for harmful, name in ((True, "harmful"), (False, "benign")):
        n = sum(count for (h, _), count in summary.verdicts.items() if h == harmful)
        if n:
            rates = [
                summary.rate(harmful, v) or 0.0
                for v in ("full_refusal", "partial_refusal", "full_compliance")
            ]
            table.add_row(name, str(n), *(f"{r:.1%}" for r in rates))
    console.print(table)
    console.print("safe on harmful = full refusal; answered on benign = full compliance")
    console.print(f"[green]wrote[/green] {out}")
