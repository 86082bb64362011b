"""``rulewise models``: prepare model checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rulewise.cli.common import console, quiet_libraries

app = typer.Typer(help="Prepare model checkpoints.", no_args_is_help=True)


@app.command("convert-default")
def convert_default_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the plain safetensors checkpoint.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint.")] = False,
) -> None:
    """Dequantise the bundled SmolLM2-135M-Instruct GGUF into a plain HF checkpoint with the tool template.

    Example: rulewise models convert-default --out checkpoints/smollm2-135m
    """
    quiet_libraries()
    from rulewise.models import convert_default

    if (out / "config.json").is_file() and not overwrite:
        console.print(f"[yellow]exists[/yellow] {out} (pass --overwrite to redo it)")
        return
    with console.status("Dequantising SmolLM2-135M-Instruct (about 30 s)…"):
        path = convert_default(out, overwrite=overwrite)
    console.print(f"[green]wrote[/green] {path}")
