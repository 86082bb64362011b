"""``rulewise train dpo``: preference optimisation (SaRO's SRPO stage) with TRL's DPOTrainer.

Reads the pairs ``rulewise data srpo`` writes (TRL's conversational preference format). The
reference model is a frozen copy of the starting model, or — with ``lora.enabled`` — the
starting model itself with the adapters switched off (no second copy in memory). Checkpoints
every ``save_steps``, a rerun resumes, and ``dpo_curves.png`` shows the loss, the reward margin
and the preference accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rulewise.errors import RulewiseError
from rulewise.fileio import iter_jsonl
from rulewise.training.sft import LoraSettings

CURVE_KEYS = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"]


class DPOSettings(BaseModel):
    """Everything ``rulewise train dpo`` reads from ``--config`` and ``--set``."""

    model_config = ConfigDict(extra="forbid")

    model: str = "default"
    data: str
    out: str
    beta: float = Field(default=0.1, gt=0)
    loss_type: str = Field(default="sigmoid", description="TRL loss: sigmoid (DPO), ipo, hinge, robust, ...")
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(default=5e-6, gt=0)
    lr_scheduler: str = "cosine"
    warmup: float = Field(default=0.1, ge=0)
    batch_size: int = Field(default=2, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=32)
    seed: int = 42
    logging_steps: int = Field(default=1, ge=1)
    save_steps: int = Field(default=20, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False
    train_top_layers: int | None = Field(default=None, ge=1)
    shared_prefix: bool = Field(
        default=True,
        description="encode the tokens every row of a batch starts with (system prompt, tool schema, "
        "prompt) once per batch; exact, falls back to the plain forward when rows share little",
    )
    lora: LoraSettings = LoraSettings()


def load_preference_dataset(path: str | Path):
    """Pairs JSONL → datasets.Dataset of prompt/chosen/rejected; bad lines are named."""
    import datasets

    path = Path(path)
    rows = []
    for number, record in iter_jsonl(path):  # input data: never repaired, errors name the file line
        for field in ("prompt", "chosen", "rejected"):
            value = record.get(field)
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(m, dict) and "role" in m for m in value)
            ):
                raise RulewiseError(
                    "needs a non-empty list of chat messages (TRL's conversational preference format)",
                    path=path,
                    line=number,
                    field=field,
                )
        if record["chosen"] == record["rejected"]:
            raise RulewiseError("chosen and rejected are identical", path=path, line=number, field="chosen")
        rows.append({k: record[k] for k in ("prompt", "chosen", "rejected")})
    if not rows:
        raise RulewiseError("no preference pairs", path=path)
    return datasets.Dataset.from_list(rows)


def run_dpo(settings: DPOSettings, *, callbacks: list[Any] | None = None) -> Path:
    """Train (or resume) and save; returns the output directory."""
    import torch
    from trl import DPOConfig, DPOTrainer

    from rulewise.models import load_model
    from rulewise.runtime import describe_precision, use_bf16
    from rulewise.training.common import device_args, finish_training, last_checkpoint, prepare_for_training
    from rulewise.training.shared_prefix import enable_for_trainer

    out = Path(settings.out)
    dataset = load_preference_dataset(settings.data)
    loaded = load_model(settings.model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(describe_precision(settings.precision, device), flush=True)
    args = DPOConfig(
        output_dir=str(out),
        beta=settings.beta,
        loss_type=[settings.loss_type],
        max_length=settings.max_length,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        activation_checkpointing=settings.gradient_checkpointing,
        bf16=use_bf16(settings.precision, device),
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        **device_args(device.type),
    )
    peft_config, reference = None, None
    if settings.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=settings.lora.r,
            lora_alpha=settings.lora.alpha,
            lora_dropout=settings.lora.dropout,
            target_modules=settings.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    else:
        # TRL would rebuild the reference from the config's Hub id; the default model is a GGUF.
        reference = load_model(settings.model).model.eval()
    prepare_for_training(loaded.model, settings.train_top_layers)
    trainer = DPOTrainer(
        model=loaded.model,
        ref_model=reference,
        args=args,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if settings.shared_prefix:
        enable_for_trainer(trainer)
    resume = last_checkpoint(out)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finish_training(
        trainer,
        loaded,
        out,
        CURVE_KEYS,
        "dpo_curves.png",
        f"DPO ({settings.loss_type}) of {settings.model}",
    )
    return out
