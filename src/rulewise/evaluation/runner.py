"""``rulewise eval``: generate with the tool-use loop, judge, and write a resumable run directory.

A run directory holds ``run.json`` (the configuration), ``generations.jsonl`` (one trajectory
per item, appended as conversations finish), ``results.jsonl`` (the trajectory with its
judgement), ``metrics.json`` and ``report.md``. Generation and judging are separate passes:
the judge (possibly a model or an endpoint) never stalls the batch of conversations being
generated, and a judging failure never costs a generation. Rerunning the same command skips
what is done, so an interrupted evaluation continues where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from rulewise.errors import RulewiseError
from rulewise.evaluation import EVAL_BATCH_SIZE
from rulewise.evaluation.benchmarks import BenchmarkItem, load_benchmark
from rulewise.evaluation.judges import Judge, build_judge, classify_response, math_correct
from rulewise.evaluation.metrics import compute_metrics
from rulewise.evaluation.report import write_run_report
from rulewise.fileio import append_record, read_records
from rulewise.generation.engine import ToolUseGenerator
from rulewise.generation.factory import BackendKind
from rulewise.generation.trajectory import Trajectory
from rulewise.models.loading import model_fingerprint
from rulewise.progress import eta_progress
from rulewise.rules.retrieval import RetrieverKind
from rulewise.rules.tool import RULES_PER_CALL
from rulewise.runtime import Precision

RESULTS_FILE, GENERATIONS_FILE, METRICS_FILE, CONFIG_FILE, REPORT_FILE = (
    "results.jsonl",
    "generations.jsonl",
    "metrics.json",
    "run.json",
    "report.md",
)


class BenchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the benchmark's name in reports")
    source: str = Field(
        description="a local CSV/JSON/JSONL file, or a Hub dataset id where the Hub is reachable"
    )
    layout: str | None = Field(
        default=None, description="column layout when the name is not one (strongreject, custom, ...)"
    )
    limit: int | None = Field(default=None, ge=1, description="items from this benchmark (overrides limit)")


class EvalConfig(BaseModel):
    """Everything that determines a run's results (compared on resume)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="default", description="the model: 'default', a checkpoint directory or a Hub id"
    )
    benches: list[BenchSpec] = Field(
        min_length=1,
        description="benchmarks: NAME=PATH or NAME:LAYOUT=PATH, optionally NAME@N=PATH for N items",
    )
    limit: int | None = Field(
        default=None, ge=1, description="items per benchmark (seeded subsample; twins kept)"
    )
    seed: int = Field(default=0, description="seed of the subsample and of sampling")
    judge: str = Field(default="refusal", description="'refusal' (offline content judge) or openai:MODEL@URL")
    use_tools: bool = Field(
        default=True, description="offer consult_safety_rules (off: the model answers alone)"
    )
    rulebook: str = Field(
        default="default", description="the rulebook the tool retrieves from (YAML/JSON path)"
    )
    retriever: RetrieverKind = Field(
        default="bm25", description="rule ranking: bm25 or dense (sentence-transformers)"
    )
    top_k: int = Field(default=RULES_PER_CALL, ge=1, description="rules returned per tool call")
    max_new_tokens: int = Field(default=256, ge=1, description="new tokens per assistant turn")
    max_tool_calls: int = Field(default=2, ge=0, description="tool calls allowed per conversation")
    temperature: float = Field(default=0.0, ge=0.0, description="0: greedy decoding")
    samples: int = Field(
        default=1,
        ge=1,
        description="answers per prompt, sampled at temperature > 0: safety and compliance become avg@k, and "
        "worst-of-k counts a prompt only when all k samples were handled right",
    )
    # Off by default: transformers' penalty applies to every token already in the context, the
    # prompt included, so a trained student's decision words that also occur in the system
    # prompt ("only" in "Refuse only what the rules forbid") lose out. At 1.1 it turned the BC
    # student's "This request only sounds sensitive" into "...asks for real help to cause
    # serious harm" on every look-alike of the dev split (docs/evaluation.md).
    repetition_penalty: float = Field(
        default=1.0,
        ge=1.0,
        description="transformers' repetition penalty (1: off); it also punishes tokens of the prompt",
    )
    system_prompt: str | None = Field(
        default=None, description="system prompt (None: ASCL's, or the plain one without tools)"
    )
    backend: BackendKind = Field(default="hf", description="'hf' (our continuous batcher) or 'vllm' (GPU)")


def load_items(config: EvalConfig) -> list[BenchmarkItem]:
    items: list[BenchmarkItem] = []
    for bench in config.benches:
        items += load_benchmark(
            bench.name, bench.source, layout=bench.layout, limit=bench.limit or config.limit, seed=config.seed
        )
    return items


def sample_ids(item: BenchmarkItem, samples: int) -> list[tuple[str, int]]:
    """``(record id, sample index)`` for each of an item's samples; one sample keeps the item's id."""
    if samples == 1:
        return [(item.id, 0)]
    return [(f"{item.id}#s{index}", index) for index in range(samples)]


def judge_item(item: BenchmarkItem, traj: Trajectory, judge: Judge) -> dict[str, Any]:
    """The judgement fields of a record. Maths is checked, not judged (and costs no judge call)."""
    answer = traj.final_content if traj.finish_reason != "call_cap" else ""
    if item.task == "math":
        verdict, reason = classify_response(answer, harmful=False)
        return {
            "verdict": verdict,
            "judge_reason": reason,
            "score": None,
            "refused": verdict == "full_refusal",
            "complied": verdict == "full_compliance",
            "correct": item.reference is not None and math_correct(answer, item.reference),
        }
    judgement = judge.judge(item.prompt, answer, harmful=item.expected == "refuse")
    return {
        "verdict": judgement.verdict,
        "judge_reason": judgement.reason,
        "score": judgement.score,
        "refused": judgement.refused,
        "complied": judgement.complied,
        "correct": None,
    }


def make_record(
    item: BenchmarkItem, traj: Trajectory, judge: Judge, *, record_id: str | None = None, sample: int = 0
) -> dict[str, Any]:
    return {
        **item.model_dump(),
        "id": record_id or item.id,
        "item_id": item.id,
        "sample": sample,
        **traj.model_dump(exclude={"id"}),
        "answer": traj.final_answer,
        **judge_item(item, traj, judge),
    }


def _check_config(out_dir: Path, config: EvalConfig, fingerprint: str | None) -> None:
    """Refuse to resume from results made with other settings or other weights (a retrained model)."""
    path = out_dir / CONFIG_FILE
    current = config.model_dump(mode="json") | {"model_fingerprint": fingerprint}
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if "model_fingerprint" not in previous:  # written before fingerprints existed: cannot tell
            current.pop("model_fingerprint")
        defaults = {name: f.default for name, f in EvalConfig.model_fields.items() if not f.is_required()}
        for key in [k for k in current if k not in previous and k in defaults]:
            if current[key] == defaults[key]:  # a setting added since, left at its default
                current.pop(key)
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        if changed:
            raise RulewiseError(
                f"this run directory holds results made with a different configuration ({', '.join(changed)})",
                path=path,
                hint="use another --out directory, or delete this one to start over",
            )
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2), encoding="utf-8")


def build_eval_generator(config: EvalConfig, *, batch_size: int, precision: Precision) -> ToolUseGenerator:
    from rulewise.generation import LoopConfig, SamplingConfig, build_generator
    from rulewise.generation.factory import load_for_backend

    return build_generator(
        load_for_backend(config.model, config.backend),
        use_tools=config.use_tools,
        rulebook=config.rulebook,
        retriever=config.retriever,
        top_k=config.top_k,
        sampling=SamplingConfig(temperature=config.temperature, repetition_penalty=config.repetition_penalty),
        precision=precision,
        loop=LoopConfig(
            max_new_tokens=config.max_new_tokens, max_tool_calls=config.max_tool_calls, batch_size=batch_size
        ),
        system_prompt=config.system_prompt,
        backend=config.backend,
    )


def run_eval(
    config: EvalConfig,
    out_dir: str | Path,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    precision: Precision = "auto",
    generator: ToolUseGenerator | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the metrics. ``generator`` overrides model loading."""
    out_dir = Path(out_dir)
    console = console or Console()
    if config.samples > 1 and config.temperature == 0:
        raise RulewiseError(
            f"{config.samples} samples per prompt at temperature 0 would be {config.samples} copies of one answer",
            field="samples",
            hint="set a temperature > 0 (e.g. --temperature 0.7), or --samples 1",
        )
    items = load_items(config)  # bad benchmark files fail before anything is loaded or written
    judge = build_judge(config.judge)
    _check_config(out_dir, config, None if generator is not None else model_fingerprint(config.model))
    results_path, generations_path = out_dir / RESULTS_FILE, out_dir / GENERATIONS_FILE
    units = [
        (item, record_id, sample) for item in items for record_id, sample in sample_ids(item, config.samples)
    ]
    wanted = {record_id for _, record_id, _ in units}
    judged = {r["id"] for r in read_records(results_path, console=console)}
    generated = {r["id"]: r for r in read_records(generations_path, console=console) if r["id"] in wanted}
    pending = [unit for unit in units if unit[1] not in judged and unit[1] not in generated]
    left = [unit for unit in units if unit[1] not in judged]
    if left and (judged & wanted or generated):
        console.print(
            f"resuming: {len((judged & wanted) | set(generated))} of {len(units)} answers already done"
        )
    if pending:
        if generator is None:
            with console.status(f"loading model '{config.model}'…"):
                generator = build_eval_generator(config, batch_size=batch_size, precision=precision)
        if config.temperature > 0:
            import torch

            torch.manual_seed(config.seed)  # the same samples for the same seed (on one machine)
        with eta_progress(console) as progress:
            task = progress.add_task("generating", total=len(units), completed=len(units) - len(pending))

            def finished(index: int, traj: Trajectory) -> None:
                _, record_id, sample = pending[index]
                row = {"id": record_id, "sample": sample, **traj.model_dump(exclude={"id"})}
                append_record(generations_path, row)
                generated[record_id] = row
                progress.advance(task)

            generator.generate(
                [item.prompt for item, _, _ in pending],
                ids=[record_id for _, record_id, _ in pending],
                on_finished=finished,
            )
        if hasattr(generator.backend, "describe"):
            console.print(generator.backend.describe())
    if left:
        with eta_progress(console) as progress:
            task = progress.add_task(f"judging ({config.judge})", total=len(left))
            for item, record_id, sample in left:
                traj = Trajectory.model_validate(generated[record_id])
                append_record(
                    results_path, make_record(item, traj, judge, record_id=record_id, sample=sample)
                )
                progress.advance(task)
    records = [r for r in read_records(results_path) if r["id"] in wanted]
    metrics = compute_metrics(records, seed=config.seed)
    metrics["run"] = {
        "model": config.model,
        "use_tools": config.use_tools,
        "judge": config.judge,
        "items": len(records),
        "samples": config.samples,
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    write_run_report(
        out_dir / REPORT_FILE,
        metrics,
        title=f"rulewise eval: {config.model}" + ("" if config.use_tools else " (no tools)"),
    )
    return metrics
