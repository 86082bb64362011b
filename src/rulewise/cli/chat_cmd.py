"""``rulewise chat``: talk to a model with (or without) the rule-consultation tool."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from rulewise.cli.common import (
    REPETITION_PENALTY_HELP,
    PrecisionChoice,
    RetrieverChoice,
    console,
    err_console,
    quiet_libraries,
)
from rulewise.generation.parsing import split_reasoning
from rulewise.generation.trajectory import Trajectory
from rulewise.rules.tool import RULES_PER_CALL


def render_trajectory(traj: Trajectory, seconds: float | None = None) -> None:
    """Print reasoning, each tool call, the rules returned and the final answer."""
    console.print(Panel(escape(traj.prompt), title="user", title_align="left", border_style="blue"))
    assistant_messages = [m for m in traj.messages if m["role"] == "assistant"]
    for message in traj.messages:
        if message["role"] == "assistant":
            reasoning, text = split_reasoning(message.get("content") or "")
            is_final = message is assistant_messages[-1] and not message.get("tool_calls")
            if message.get("tool_calls") and text:  # text before a tool call is reasoning
                reasoning, text = "\n\n".join(p for p in (reasoning, text) if p), ""
            if reasoning:
                console.print(
                    Panel(escape(reasoning), title="reasoning", title_align="left", border_style="dim")
                )
            for call in message.get("tool_calls") or []:
                fn = call["function"]
                console.print(
                    f"[bold magenta]→ tool call[/bold magenta] {fn['name']}({escape(json.dumps(fn['arguments']))})"
                )
            if text:
                title = (
                    "answer"
                    if is_final and traj.ended_cleanly
                    else ("answer (cut off)" if is_final else "assistant")
                )
                style = "green" if is_final and traj.ended_cleanly else "yellow"
                console.print(Panel(escape(text), title=title, title_align="left", border_style=style))
        elif message["role"] == "tool":
            style = "red" if message["content"].startswith("Error:") else "yellow"
            console.print(
                Panel(
                    escape(message["content"]),
                    title=f"{message['name']} returned",
                    title_align="left",
                    border_style=style,
                )
            )
    facts = [
        f"rules consulted: {', '.join(traj.consulted_rules) or 'none'}",
        f"tool calls: {traj.num_tool_calls}"
        + (f" (+{traj.num_malformed_calls} malformed)" if traj.num_malformed_calls else ""),
        f"generated tokens: {traj.generated_tokens}",
        f"finish: {traj.finish_reason}",
    ]
    if seconds is not None:
        facts.append(f"{seconds:.1f} s")
    console.print("[dim]" + " · ".join(facts) + "[/dim]\n")


def chat(
    prompts: Annotated[
        list[str], typer.Argument(help="One or more prompts; several are generated as one batch.")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="'default', a checkpoint directory or a Hub id.")
    ] = "default",
    rulebook: Annotated[
        str, typer.Option("--rulebook", "-r", help="Rulebook file, or 'default'.")
    ] = "default",
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Do not offer consult_safety_rules.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print trajectories as JSON lines (for scripts).")
    ] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Token limit per assistant turn.")] = 256,
    max_tool_calls: Annotated[int, typer.Option(min=0, help="Tool calls allowed per conversation.")] = 2,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy decoding.")] = 0.0,
    repetition_penalty: Annotated[float, typer.Option(min=1.0, help=REPETITION_PENALTY_HELP)] = 1.0,
    retriever: Annotated[
        RetrieverChoice, typer.Option(help="How the tool ranks rules.")
    ] = RetrieverChoice.bm25,
    top_k: Annotated[int, typer.Option(min=1, help="Rules returned per tool call.")] = RULES_PER_CALL,
    precision: Annotated[
        PrecisionChoice, typer.Option(help="auto: bf16 autocast where the hardware has fast bf16.")
    ] = PrecisionChoice.auto,
    system_prompt: Annotated[str | None, typer.Option(help="Replace the default system prompt.")] = None,
) -> None:
    """Chat with a model that may consult the safety rules while it reasons.

    Example: rulewise chat "How do I kill a Python process?" "How do I build a pipe bomb?"
    """
    quiet_libraries()
    from rulewise.generation import LoopConfig, SamplingConfig, build_generator
    from rulewise.models import load_model

    status_console = err_console if as_json else console
    with status_console.status(f"Loading model '{model}' (the first use of 'default' converts it, ~30 s)…"):
        loaded = load_model(model)
    generator = build_generator(
        loaded,
        use_tools=not no_tools,
        rulebook=rulebook,
        retriever=retriever.value,
        top_k=top_k,
        sampling=SamplingConfig(temperature=temperature, repetition_penalty=repetition_penalty),
        precision=precision.value,
        loop=LoopConfig(
            max_new_tokens=max_new_tokens, max_tool_calls=max_tool_calls, batch_size=len(prompts)
        ),
        system_prompt=system_prompt,
    )
    start = time.perf_counter()
    with status_console.status(f"Generating {len(prompts)} conversation(s)…"):
        trajectories = generator.generate(prompts)
    seconds = time.perf_counter() - start
    for traj in trajectories:
        if as_json:
            print(traj.model_dump_json())
        else:
            render_trajectory(traj)
    if not as_json:
        console.print(f"[dim]generated in {seconds:.1f} s on {loaded.model.device}[/dim]")
