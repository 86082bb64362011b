"""SFT throughput: training tokens/s of ``rulewise train sft`` vs a plain TRL SFTTrainer script.

    .venv/bin/python benchmarks/bench_sft.py [--steps 6] [--batch-size 4] [--examples 48]

Both train the default model (full fine-tuning, then LoRA) on the same scripted-teacher
trajectories for the same number of steps in one process; tokens/s is the number of tokens
TRL counted divided by its ``train_runtime``. Target: ours / plain >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


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


def throughput(history: list[dict]) -> float:
    tokens = max(e["num_tokens"] for e in history if "num_tokens" in e)
    runtime = next(e["train_runtime"] for e in history if "train_runtime" in e)
    return tokens / runtime


def plain_trl(data: Path, out: Path, steps: int, batch_size: int, lora: bool) -> float:
    """What a user would write by hand with TRL: same model, data, and settings."""
    import datasets
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from rulewise.models import load_model
    from rulewise.training.sft import LoraSettings

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    dataset = datasets.Dataset.from_list([{"messages": r["messages"], "tools": r["tools"]} for r in rows])
    loaded = load_model("default")
    args = SFTConfig(
        output_dir=str(out),
        assistant_only_loss=True,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=5e-5,
        warmup_steps=0.05,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
        activation_checkpointing=False,
        max_length=1024,
        dataloader_pin_memory=False,
    )
    same = LoraSettings()  # the same adapter as ours, dropout included (it costs time on CPU)
    peft = (
        LoraConfig(
            r=same.r,
            lora_alpha=same.alpha,
            lora_dropout=same.dropout,
            target_modules=same.target_modules,
            task_type="CAUSAL_LM",
        )
        if lora
        else None
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        peft_config=peft,
    )
    trainer.train()
    return throughput(trainer.state.log_history)


def ours(data: Path, out: Path, steps: int, batch_size: int, lora: bool) -> float:
    from rulewise.training.sft import SFTSettings, run_sft

    settings = SFTSettings(
        model="default",
        data=str(data),
        out=str(out),
        max_steps=steps,
        batch_size=batch_size,
        logging_steps=1,
        save_steps=10_000,
        precision="fp32",
        lora={"enabled": lora},
    )
    run_sft(settings)
    history = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    return throughput(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--examples", type=int, default=48)
    args = parser.parse_args()

    from rulewise.cli.common import quiet_libraries
    from rulewise.runtime import configure_threads

    quiet_libraries()
    threads = configure_threads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root / "bc.jsonl", args.examples)
        print(f"default model, {args.steps} steps of batch {args.batch_size}, {threads} threads")
        for lora in (False, True):
            label = "LoRA" if lora else "full"
            base = plain_trl(root / "bc.jsonl", root / f"plain-{label}", args.steps, args.batch_size, lora)
            mine = ours(root / "bc.jsonl", root / f"ours-{label}", args.steps, args.batch_size, lora)
            print(
                f"{label:>4}: plain TRL {base:7.1f} tokens/s | rulewise {mine:7.1f} tokens/s | ratio {mine / base:.2f} (target >= 0.95)"
            )


if __name__ == "__main__":
    main()
