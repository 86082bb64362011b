"""``rulewise train``: fine-tune models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rulewise.cli.common import console, job_settings, quiet_libraries

app = typer.Typer(help="Fine-tune models.", no_args_is_help=True)

OutOption = Annotated[Path | None, typer.Option("--out", "-o", help="Output directory; rerun to resume.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="key=value override of any setting, e.g. lora.enabled=true (rulewise config show JOB)."
    ),
]
ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="'default', a checkpoint directory or a Hub id.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML with any of the job's settings (rulewise config show JOB)."),
]


@app.command("sft")
def sft_command(
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Trajectories JSONL (from 'rulewise data bc').")
    ] = None,
    out: OutOption = None,
    model: ModelOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train LoRA adapters (merged into the saved model).")
    ] = False,
) -> None:
    """Supervised fine-tuning on trajectories (loss on assistant tokens only), resumable, with a loss curve.

    Example: rulewise train sft --data data/bc.jsonl --model default --out runs/sft --set max_steps=60
    """
    quiet_libraries()
    from rulewise.training.sft import SFTSettings, run_sft

    flags = {"data": data, "out": out, "model": model}
    settings = job_settings(
        SFTSettings, config, flags, [*(overrides or []), *(["lora.enabled=true"] if lora else [])]
    )
    path = run_sft(settings)
    console.print(f"[green]saved[/green] {path} (loss curve: {path / 'loss.png'})")


@app.command("rl")
def rl_command(
    algo: Annotated[
        str | None,
        typer.Option(
            "--algo",
            help="advantage estimator: 'ifpo' (inverse-frequency mode weighting), 'grpo' or 'dr_grpo'.",
        ),
    ] = None,
    model: ModelOption = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", "-p", help="Prompts JSONL (from 'rulewise data prompts').")
    ] = None,
    out: OutOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Tool-use RL (GRPO, or IFPO) with safety, utility and format rewards; resumable, with curves.

    Example: rulewise train rl --algo ifpo --model runs/sft --prompts data/prompts/train.jsonl --out runs/ifpo --set max_steps=20
    """
    quiet_libraries()
    from rulewise.rl.train import RLSettings, run_rl

    flags = {"algo": algo, "model": model, "prompts": prompts, "out": out}
    path = run_rl(job_settings(RLSettings, config, flags, overrides))
    console.print(
        f"[green]saved[/green] {path} (curves: {path / 'rl_curves.png'}, metrics: {path / 'log_history.jsonl'})"
    )


@app.command("dpo")
def dpo_command(
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Preference pairs JSONL (from 'rulewise data srpo').")
    ] = None,
    out: OutOption = None,
    model: ModelOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Preference optimisation (SaRO's SRPO stage) on TRL's DPOTrainer; resumable, with curves.

    Example: rulewise train dpo --data data/srpo.jsonl --model runs/rw --out runs/srpo --set beta=0.1
    """
    quiet_libraries()
    from rulewise.training.dpo import DPOSettings, run_dpo

    path = run_dpo(job_settings(DPOSettings, config, {"data": data, "out": out, "model": model}, overrides))
    console.print(f"[green]saved[/green] {path} (curves: {path / 'dpo_curves.png'})")
