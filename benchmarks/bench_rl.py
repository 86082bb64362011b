"""RL step time: plain TRL GRPO (no tools) vs ``rulewise train rl`` with tools, GRPO and IFPO.

    .venv/bin/python benchmarks/bench_rl.py [--steps 3] [--prompts 4] [--group 4] [--new-tokens 96]

All three train the default model in one process on the same prompts with the same seed.
Plain TRL generates ``--new-tokens`` per rollout with one reward function; ours offer
``consult_safety_rules`` and let a rollout read up to two rules, so their completion budget is
``--new-tokens`` plus room for one tool result (``--tool-budget``). Seconds per step are TRL's
``step_time``, averaged over the steps after the first (which warms up). IFPO and tool-use
GRPO sample the same rollouts at step 1 and differ only in the advantage rebalancing.
Target: IFPO / tool-use GRPO <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def step_seconds(history: list[dict]) -> float:
    times = [e["step_time"] for e in history if "step_time" in e]
    later = times[1:] or times
    return sum(later) / len(later)


def make_prompts(path: Path, count: int) -> Path:
    from rulewise.data.prompt_set import build_prompt_set

    prompts = build_prompt_set()
    chosen = prompts[:: max(1, len(prompts) // count)][:count]
    path.write_text("".join(p.model_dump_json() + "\n" for p in chosen), encoding="utf-8")
    return path


def plain_trl(prompts: Path, out: Path, args: argparse.Namespace) -> float:
    """What a user would write by hand with TRL: same model, prompts and sampling, no tools."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from rulewise.generation.prompts import PLAIN_SYSTEM_PROMPT
    from rulewise.models import load_model

    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    dataset = datasets.Dataset.from_list(
        [
            {
                "prompt": [
                    {"role": "system", "content": PLAIN_SYSTEM_PROMPT},
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
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group,
        max_completion_length=args.new_tokens,
        learning_rate=1e-6,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
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
    )
    trainer.train()
    return step_seconds(trainer.state.log_history)


def ours(prompts: Path, out: Path, args: argparse.Namespace, algo: str) -> float:
    from rulewise.rl.train import RLSettings, run_rl

    settings = RLSettings(
        algo=algo,
        model="default",
        prompts=str(prompts),
        out=str(out),
        max_steps=args.steps,
        prompts_per_step=args.prompts,
        group_size=args.group,
        max_completion_length=args.new_tokens + args.tool_budget,
        precision="fp32",
        save_steps=10_000,
        seed=0,
    )
    run_rl(settings)
    history = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    return step_seconds(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--tool-budget", type=int, default=320)
    args = parser.parse_args()

    from rulewise.cli.common import quiet_libraries
    from rulewise.runtime import configure_threads

    quiet_libraries()
    threads = configure_threads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prompts = make_prompts(root / "prompts.jsonl", args.prompts)
        plain = plain_trl(prompts, root / "plain", args)
        grpo = ours(prompts, root / "grpo", args, "grpo")
        ifpo = ours(prompts, root / "ifpo", args, "ifpo")
    print(
        f"default model, {args.prompts} prompts x group {args.group}, {args.new_tokens} new tokens, {threads} threads"
    )
    print(f"plain TRL GRPO, no tools : {plain:7.1f} s/step")
    print(
        f"rulewise GRPO, tools     : {grpo:7.1f} s/step ({grpo / plain:.2f}x plain: tool turns and rule text)"
    )
    print(f"rulewise IFPO, tools     : {ifpo:7.1f} s/step ({ifpo / grpo:.3f}x tool-use GRPO, target <= 1.05)")


if __name__ == "__main__":
    main()
