"""SFT throughput: trained (assistant) tokens/s of ``rulewise train sft`` vs a plain TRL SFTTrainer.

    .venv/bin/python benchmarks/bench_sft.py [--steps 8] [--batch-size 8] [--examples 64] [--lora] [--precision fp32]

Both train the default model on the same scripted-teacher trajectories (system prompt, tool
schema, rule text: the quickstart's data) for the same number of steps, at the same batch size
and precision (bf16 autocast where the CPU has native bf16, else fp32; ``--precision fp32`` times
the fp32 path a CPU without native bf16 takes), in one process. Trained
tokens are the labelled (assistant) tokens of the batches each run saw, counted as they go by;
runs are timed by TRL's ``train_runtime``. Ours is also run with ``shared_prefix: false`` to show
what the shared-prefix forward alone buys. Each line ends with the counted FLOP/s of the run as
a share of this machine's matmul peak at that precision. Target: ours / plain >= 1.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from measure import matmul_peak, measured, share_of_peak

TRAINED = {"tokens": 0}


def count_trained_tokens() -> None:
    """Count every training batch's labelled tokens (both trainers are TRL's SFTTrainer)."""
    from trl import SFTTrainer

    original = SFTTrainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        TRAINED["tokens"] += int((inputs["labels"][:, 1:] != -100).sum())
        return original(self, model, inputs, *args, **kwargs)

    SFTTrainer.training_step = training_step


def make_data(path: Path, examples: int) -> None:
    from transformers.utils import get_json_schema

    from rulewise.data.prompt_set import build_prompt_set
    from rulewise.data.synthesis import synthesize
    from rulewise.data.teachers import build_teacher
    from rulewise.rules import load_rulebook

    teacher = build_teacher("scripted", load_rulebook())
    prompts = build_prompt_set()
    step = max(1, len(prompts) // examples)
    synthesize(prompts[::step][:examples], teacher, path, tools=[get_json_schema(teacher.consult)])


def runtime(history: list[dict]) -> float:
    return next(e["train_runtime"] for e in history if "train_runtime" in e)


def plain_trl(data: Path, out: Path, args: argparse.Namespace, bf16: bool) -> float:
    """What a user would write by hand with TRL: same model, data, batch size and precision."""
    import datasets
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from rulewise.models import load_model
    from rulewise.training.settings import LoraSettings

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    dataset = datasets.Dataset.from_list([{"messages": r["messages"], "tools": r["tools"]} for r in rows])
    loaded = load_model("default")
    config = SFTConfig(
        output_dir=str(out),
        assistant_only_loss=True,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=5e-5,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=bf16,
        activation_checkpointing=False,
        max_length=1024,
        dataloader_pin_memory=False,
        use_cpu=True,
    )
    same = LoraSettings()
    peft = (
        LoraConfig(r=same.r, lora_alpha=same.alpha, lora_dropout=same.dropout, task_type="CAUSAL_LM")
        if args.lora
        else None
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=config,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        peft_config=peft,
    )
    trainer.train()
    return runtime(trainer.state.log_history)


def ours(data: Path, out: Path, args: argparse.Namespace, shared_prefix: bool) -> float:
    from rulewise.training.sft import SFTSettings, run_sft

    settings = SFTSettings(
        model="default",
        data=str(data),
        out=str(out),
        max_steps=args.steps,
        batch_size=args.batch_size,
        logging_steps=1,
        save_steps=10_000,
        shared_prefix=shared_prefix,
        lora={"enabled": args.lora},
        precision=args.precision,
    )
    run_sft(settings)
    return runtime([json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    args = parser.parse_args()

    import torch

    from rulewise.cli.common import quiet_libraries
    from rulewise.runtime import configure_threads, describe_precision, use_bf16

    quiet_libraries()
    threads = configure_threads()
    count_trained_tokens()
    bf16 = use_bf16(args.precision, torch.device("cpu"))
    peak = matmul_peak(bf16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root / "bc.jsonl", args.examples)

        def counted(run):  # the trained tokens of one run, and its train_runtime
            def go():
                TRAINED["tokens"] = 0
                seconds = run()
                return TRAINED["tokens"], seconds

            return go

        results = measured(
            {
                "plain TRL SFTTrainer": counted(
                    lambda: plain_trl(root / "bc.jsonl", root / "plain", args, bf16)
                ),
                "rulewise, no shared prefix": counted(
                    lambda: ours(root / "bc.jsonl", root / "flat", args, False)
                ),
                "rulewise": counted(lambda: ours(root / "bc.jsonl", root / "ours", args, True)),
            }
        )
    mode = "LoRA" if args.lora else "full fine-tuning"
    print(
        f"default model, {mode}, {args.steps} steps of batch {args.batch_size}, {threads} threads, "
        f"{describe_precision(args.precision, torch.device('cpu'))}; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    speeds = {label: tokens / seconds for label, ((tokens, seconds), _, _) in results.items()}
    base = speeds["plain TRL SFTTrainer"]
    for label, ((_, seconds), flops, _) in results.items():
        speed = speeds[label]
        print(
            f"{label:<27}: {speed:7.1f} trained tokens/s ({speed / base:4.2f}x plain) | "
            f"{share_of_peak(flops, seconds, peak)}"
        )
    print("target: rulewise / plain >= 1.5 (moonshot 2)")


if __name__ == "__main__":
    main()
