"""``rulewise train``: fine-tune models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rulewise.cli.common import console, quiet_libraries

app = typer.Typer(help="Fine-tune models.", no_args_is_help=True)


@app.command("sft")
def sft_command(
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Trajectories JSONL (from 'rulewise data bc').")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory; rerun to resume.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="'default', a checkpoint directory or a Hub id.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML with any SFT setting.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="key=value override, e.g. lora.enabled=true.")
    ] = None,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train LoRA adapters (merged into the saved model).")
    ] = False,
) -> None:
    """Supervised fine-tuning on trajectories (loss on assistant tokens only), resumable, with a loss curve.

    Example: rulewise train sft --data data/bc.jsonl --model default --out runs/sft --set max_steps=60
    """
    quiet_libraries()
    from rulewise.config import load_config
    from rulewise.training.sft import SFTSettings, run_sft

    flags = {k: str(v) for k, v in (("data", data), ("out", out), ("model", model)) if v is not None}
    sets = (
        [f"{k}={v}" for k, v in flags.items()]
        + list(overrides or [])
        + (["lora.enabled=true"] if lora else [])
    )
    settings = load_config(SFTSettings, config, sets)
    path = run_sft(settings)
    console.print(f"[green]saved[/green] {path} (loss curve: {path / 'loss.png'})")
