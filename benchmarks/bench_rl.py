"""RL step time with tools: ``rulewise train rl`` (IFPO) vs the implementation before the speed-up
(TRL's tool loop for rollouts, no shared-prefix forward) and vs plain TRL GRPO with the same tool.

    .venv/bin/python benchmarks/bench_rl.py [--steps 3] [--prompts 2] [--group 4] [--new-tokens 96]

All three train the default model in one process on the same prompts, seed, group size,
completion budget (``--new-tokens`` plus ``--tool-budget`` for one tool result) and precision
(bf16 autocast where the CPU has native bf16, else fp32); every rollout is offered
``consult_safety_rules`` once. Seconds per step are TRL's ``step_time``, averaged over the steps
after the first (which warms up); sampled rollouts differ in length between implementations, so
each line also gives seconds per 1,000 tokens (prompt + model-written). Each line ends with the FLOP/s of the first step (FLOPs counted in
a repeat of that step, divided by its time in the timed run) as a share of this machine's matmul
peak at that precision. Target: rulewise / before <= 0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from measure import matmul_peak, measured, share_of_peak


def step_times(history: list[dict]) -> list[tuple[float, float]]:
    """(seconds, tokens) per step: tokens = prompt + model-written tokens, counted alike by TRL
    for every implementation (sampled rollouts differ in length between implementations)."""
    steps = [e for e in history if "step_time" in e]
    seen = [0.0] + [float(e["num_tokens"]) for e in steps]
    return [
        (e["step_time"], after - before) for e, before, after in zip(steps, seen[:-1], seen[1:], strict=True)
    ]


def after_first(times: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean seconds per step, and seconds per 1,000 tokens, over the steps after the first."""
    later = times[1:] or times
    seconds = sum(t for t, _ in later)
    return seconds / len(later), 1000 * seconds / sum(n for _, n in later)


def make_prompts(path: Path, count: int) -> Path:
    from rulewise.data.prompt_set import build_prompt_set

    prompts = build_prompt_set()
    chosen = prompts[:: max(1, len(prompts) // count)][:count]
    path.write_text("".join(p.model_dump_json() + "\n" for p in chosen), encoding="utf-8")
    return path


def plain_trl(prompts: Path, out: Path, args: argparse.Namespace, bf16: bool, steps: int) -> list[float]:
    """What a user would write by hand with TRL: same model, prompts, tool and sampling."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from rulewise.generation.prompts import ASCL_SYSTEM_PROMPT
    from rulewise.models import load_model
    from rulewise.rules import build_retriever, load_rulebook
    from rulewise.rules.tool import make_consult_tool

    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    dataset = datasets.Dataset.from_list(
        [
            {
                "prompt": [
                    {"role": "system", "content": ASCL_SYSTEM_PROMPT},
                    {"role": "user", "content": r["prompt"]},
                ]
            }
            for r in rows
        ]
    )

    def short_answers(completions, **_):
        return [-len(c[-1]["content"]) / 100 for c in completions]

    loaded = load_model("default")
    config = GRPOConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=args.group,
        gradient_accumulation_steps=args.prompts,
        num_generations=args.group,
        max_completion_length=args.new_tokens + args.tool_budget,
        max_tool_calling_iterations=1,
        learning_rate=1e-6,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=bf16,
        gradient_checkpointing=False,
        use_cpu=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=loaded.model,
        args=config,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        reward_funcs=short_answers,
        tools=[make_consult_tool(build_retriever(load_rulebook()), k=2)],
    )
    trainer.train()
    return step_times(trainer.state.log_history)


def ours(prompts: Path, out: Path, args: argparse.Namespace, faster: bool, steps: int) -> list[float]:
    """``faster``: our rollout engine and the shared-prefix forward; without: TRL's loop, plain forward."""
    from rulewise.rl.train import RLSettings, run_rl

    settings = RLSettings(
        model="default",
        prompts=str(prompts),
        out=str(out),
        max_steps=steps,
        prompts_per_step=args.prompts,
        group_size=args.group,
        micro_batch_size=args.group,
        max_completion_length=args.new_tokens + args.tool_budget,
        save_steps=10_000,
        seed=0,
        shared_prefix=faster,
        rollout_engine="rulewise" if faster else "trl",
    )
    run_rl(settings)
    history = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    return step_times(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--tool-budget", type=int, default=320)
    args = parser.parse_args()

    import torch

    from rulewise.cli.common import quiet_libraries
    from rulewise.runtime import configure_threads, describe_precision, use_bf16

    quiet_libraries()
    threads = configure_threads()
    bf16 = use_bf16("auto", torch.device("cpu"))
    peak = matmul_peak(bf16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prompts = make_prompts(root / "prompts.jsonl", args.prompts)

        def runs(steps: int, tag: str) -> dict:
            return {
                "plain TRL GRPO, tools": lambda: plain_trl(prompts, root / f"plain{tag}", args, bf16, steps),
                "rulewise IFPO, before": lambda: ours(prompts, root / f"before{tag}", args, False, steps),
                "rulewise IFPO": lambda: ours(prompts, root / f"ours{tag}", args, True, steps),
            }

        results = measured(runs(args.steps, ""), count=runs(1, "-counted"))
    print(
        f"default model, {args.prompts} prompts x group {args.group}, {args.new_tokens}+{args.tool_budget} "
        f"completion tokens, {threads} threads, {describe_precision('auto', torch.device('cpu'))}; "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    before, before_per_k = after_first(results["rulewise IFPO, before"][0])
    for label, (times, flops, _) in results.items():
        seconds, per_k = after_first(times)
        print(
            f"{label:<22}: {seconds:6.1f} s/step ({seconds / before:4.2f}x before), "
            f"{per_k:5.2f} s per 1k tokens ({per_k / before_per_k:4.2f}x before) | "
            f"first step {share_of_peak(flops, times[0][0], peak)}"
        )
    print("target: rulewise / before <= 0.5")


if __name__ == "__main__":
    main()
