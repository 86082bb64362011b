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
        str, typer.Option("--rulebook", "-r", help="Rulebook file, or 'default'.")
    ] = "default",
    retriever: Annotated[
        RetrieverChoice, typer.Option(help="How the tool ranks rules.")
    ] = RetrieverChoice.bm25,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit per assistant turn.")] = 256,
    max_tool_calls: Annotated[int, typer.Option(min=0, help="Tool calls allowed per conversation.")] = 2,
    repetition_penalty: Annotated[float, typer.Option(min=1.0, help=REPETITION_PENALTY_HELP)] = 1.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Conversations generated together.")] = 16,
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
