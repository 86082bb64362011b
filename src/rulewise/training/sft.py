"""``rulewise train sft``: supervised fine-tuning on trajectories with TRL's SFTTrainer.

Loss is on assistant tokens only (``assistant_only_loss``): the prompt, the system prompt and
the tool results are context, not targets. Checkpoints are written every ``save_steps`` and a
rerun of the same command resumes from the newest one. The result is a plain checkpoint with
the tool chat template, plus ``loss.png`` and ``log_history.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rulewise.errors import RulewiseError
from rulewise.fileio import iter_jsonl


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class SFTSettings(BaseModel):
    """Everything ``rulewise train sft`` reads from ``--config`` and ``--set``."""

    model_config = ConfigDict(extra="forbid")

    model: str = "default"
    data: str
    out: str
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = Field(default=5e-5, gt=0)
    lr_scheduler: str = "cosine"
    warmup: float = Field(
        default=0.05, ge=0, description="a fraction of training if < 1, else a number of steps"
    )
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=32)
    seed: int = 42
    logging_steps: int = Field(default=5, ge=1)
    save_steps: int = Field(default=50, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False  # saves memory on big models; slows small CPU runs
    group_by_length: bool = True  # similar lengths per batch (less padding), batches in random order
    train_top_layers: int | None = Field(
        default=None, ge=1, description="train only the last N blocks (CPU speed-up); None trains all"
    )
    shared_prefix: bool = Field(
        default=True,
        description="encode the tokens every row of a batch starts with (system prompt, tool schema, "
        "prompt) once per batch; exact, falls back to the plain forward when rows share little",
    )
    lora: LoraSettings = LoraSettings()


def load_sft_dataset(path: str | Path):
    """Records with ``messages`` (and optional ``tools``) as a datasets.Dataset; bad lines are named."""
    import datasets

    path = Path(path)
    rows = []
    for number, record in iter_jsonl(path):  # input data: never repaired, errors name the file line
        messages = record.get("messages")
        if not isinstance(messages, list) or not any(
            m.get("role") == "assistant" for m in messages if isinstance(m, dict)
        ):
            raise RulewiseError(
                "needs a 'messages' list with at least one assistant message",
                path=path,
                line=number,
                field="messages",
            )
        tools = record.get("tools") or []
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise RulewiseError(
                "'tools' must be a list of JSON-schema objects (not strings)",
                path=path,
                line=number,
                field="tools",
            )
        rows.append({"messages": messages, "tools": tools})
    if not rows:
        raise RulewiseError("no training examples", path=path)
    return datasets.Dataset.from_list(rows)


def _trainer_class(group_by_length: bool):
    """SFTTrainer, or a subclass whose batches are length-grouped but visited in random order."""
    from trl import SFTTrainer

    if not group_by_length:
        return SFTTrainer

    from rulewise.training.sampling import ShuffledLengthGroupedSampler

    class LengthGroupedSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [len(ids) for ids in dataset["input_ids"]]
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return ShuffledLengthGroupedSampler(lengths, batch, seed=self.args.seed)

    return LengthGroupedSFTTrainer


def run_sft(settings: SFTSettings, *, callbacks: list[Any] | None = None) -> Path:
    """Train (or resume) and save; returns the output directory."""
    import torch
    from trl import SFTConfig

    from rulewise.models import load_model
    from rulewise.runtime import describe_precision, use_bf16
    from rulewise.training.common import device_args, finish_training, last_checkpoint, prepare_for_training
    from rulewise.training.shared_prefix import enable_for_trainer

    out = Path(settings.out)
    dataset = load_sft_dataset(settings.data)
    loaded = load_model(settings.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(describe_precision(settings.precision, device), flush=True)
    args = SFTConfig(
        output_dir=str(out),
        assistant_only_loss=True,
        max_length=settings.max_length,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup,
        weight_decay=settings.weight_decay,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        activation_checkpointing=settings.gradient_checkpointing,  # TRL defaults it on; slow for small CPU runs
        bf16=use_bf16(settings.precision, device),
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        **device_args(device.type),
    )
    peft_config = None
    if settings.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=settings.lora.r,
            lora_alpha=settings.lora.alpha,
            lora_dropout=settings.lora.dropout,
            target_modules=settings.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    prepare_for_training(loaded.model, settings.train_top_layers)
    trainer = _trainer_class(settings.group_by_length)(
        model=loaded.model,
        args=args,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if len(trainer.train_dataset) == 0:  # TRL drops examples whose assistant part was truncated away
        raise RulewiseError(
            f"no example keeps any assistant token within max_length={settings.max_length}",
            path=settings.data,
            field="max_length",
            hint="raise max_length (system prompt, tool schema and tool results come first)",
        )
    if settings.shared_prefix:
        enable_for_trainer(trainer)
    resume = last_checkpoint(out)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finish_training(
        trainer,
        loaded,
        out,
        ["loss", "learning_rate", "grad_norm"],
        "loss.png",
        f"SFT of {settings.model}",
    )
    return out
