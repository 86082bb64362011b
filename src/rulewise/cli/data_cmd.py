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
