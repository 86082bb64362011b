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


@app.command("rl")
def rl_command(
    algo: Annotated[
        str | None, typer.Option("--algo", help="'ifpo' (inverse-frequency mode weighting) or 'grpo'.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="SFT checkpoint directory (or 'default').")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", "-p", help="Prompts JSONL (from 'rulewise data prompts').")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory; rerun to resume.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML with any RL setting.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="key=value override, e.g. ifpo.alpha=1.0.")
    ] = None,
) -> None:
    """Tool-use RL (GRPO, or IFPO) with safety, utility and format rewards; resumable, with curves.

    Example: rulewise train rl --algo ifpo --model runs/sft --prompts data/prompts/train.jsonl --out runs/ifpo --set max_steps=20
    """
    quiet_libraries()
    from rulewise.config import load_config
    from rulewise.rl.train import RLSettings, run_rl

    flags = {
        k: str(v)
        for k, v in (("algo", algo), ("model", model), ("prompts", prompts), ("out", out))
        if v is not None
    }
    settings = load_config(RLSettings, config, [f"{k}={v}" for k, v in flags.items()] + list(overrides or []))
    path = run_rl(settings)
    console.print(
        f"[green]saved[/green] {path} (curves: {path / 'rl_curves.png'}, metrics: {path / 'log_history.jsonl'})"
    )


@app.command("dpo")
def dpo_command(
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Preference pairs JSONL (from 'rulewise data srpo').")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory; rerun to resume.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Starting checkpoint (the RW model) or 'default'.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML with any DPO setting.")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="key=value override, e.g. beta=0.05 or lora.enabled=true."),
    ] = None,
) -> None:
    """Preference optimisation (SaRO's SRPO stage) on TRL's DPOTrainer; resumable, with curves.

    Example: rulewise train dpo --data data/srpo.jsonl --model runs/rw --out runs/srpo --set beta=0.1
    """
    quiet_libraries()
    from rulewise.config import load_config
    from rulewise.training.dpo import DPOSettings, run_dpo

    flags = {k: str(v) for k, v in (("data", data), ("out", out), ("model", model)) if v is not None}
    settings = load_config(
        DPOSettings, config, [f"{k}={v}" for k, v in flags.items()] + list(overrides or [])
    )
    path = run_dpo(settings)
    console.print(f"[green]saved[/green] {path} (curves: {path / 'dpo_curves.png'})")
