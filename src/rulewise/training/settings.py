"""The settings every training job shares (SFT, DPO, RL), declared once, and their one mapping
onto TRL's configs.

Why one place: each job used to declare its own copy of precision, steps, learning rate,
checkpointing and LoRA and copy about twenty of them by hand into ``SFTConfig`` /
``DPOConfig`` / ``GRPOConfig``. Now a job's settings class derives from these, a job that wants
another default says so with :func:`job_default` (description and bounds stay here), and
:func:`trl_arguments` is the only code that knows TRL's names. Anything of TRL's we do not
model goes through ``trl:`` unchanged, checked against the TRL config's own fields.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from rulewise.errors import RulewiseError


class LoraSettings(BaseModel):
    """A LoRA adapter instead of full fine-tuning (merged into the saved model)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="train a LoRA adapter instead of every weight")
    r: int = Field(default=16, ge=1, description="adapter rank")
    alpha: int = Field(default=32, ge=1, description="adapter scaling numerator (scale = alpha / r)")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="dropout on the adapter's input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear", description="module names to adapt, or every linear layer"
    )

    def peft_config(self) -> Any:
        """PEFT's ``LoraConfig`` for these settings, or None when LoRA is off."""
        if not self.enabled:
            return None
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


class TrainingSettings(BaseModel):
    """What SFT, DPO and RL runs share."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="default",
        description="starting model: 'default' (SmolLM2-135M-Instruct), a checkpoint directory or a Hub id",
    )
    out: str = Field(
        description="output directory: checkpoints, curves, the final model; a rerun resumes from its "
        "newest complete checkpoint"
    )
    max_steps: int = Field(default=-1, description="optimiser steps; > 0 overrides epochs")
    learning_rate: float = Field(default=5e-5, gt=0, description="peak learning rate (AdamW)")
    seed: int = Field(default=42, description="seed for data order, sampling and initialisation")
    logging_steps: int = Field(default=5, ge=1, description="log metrics (and curve points) every N steps")
    save_steps: int = Field(default=50, ge=1, description="write a resumable checkpoint every N steps")
    save_total_limit: int = Field(default=2, ge=1, description="checkpoints kept; older ones are deleted")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="'auto': bf16 autocast where the hardware computes bf16 natively (CUDA, CPUs with "
        "AVX512-BF16 or AMX, read at run time), else fp32",
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="recompute activations in the backward pass: saves memory on big models, slows "
        "small CPU runs",
    )
    train_top_layers: int | None = Field(
        default=None, ge=1, description="train only the last N blocks (CPU speed-up); None trains all"
    )
    shared_prefix: bool = Field(
        default=True,
        description="encode the tokens every row of a batch starts with (system prompt, tool schema, "
        "prompt) once per batch; exact, falls back to the plain forward when rows share little",
    )
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="any other field of the job's TRL config (SFTConfig, DPOConfig, GRPOConfig), passed "
        "through unchanged; a name TRL does not know, or one set above, is an error",
    )


class SupervisedSettings(TrainingSettings):
    """What the two supervised jobs (SFT and DPO) add: epochs, schedule, batches, LoRA."""

    data: str = Field(
        description="training data JSONL: trajectories (SFT) or TRL's conversational prompt/chosen/rejected "
        "pairs (DPO); a bad line is reported with its number"
    )
    epochs: float = Field(default=1.0, gt=0, description="passes over the data (max_steps > 0 overrides it)")
    lr_scheduler: str = Field(
        default="cosine", description="transformers scheduler name: cosine, linear, constant, ..."
    )
    warmup: float = Field(
        default=0.05, ge=0, description="a fraction of training if < 1, else a number of steps"
    )
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay")
    batch_size: int = Field(default=8, ge=1, description="examples per device per forward/backward pass")
    grad_accum: int = Field(default=1, ge=1, description="passes accumulated into one optimiser step")
    max_length: int = Field(
        default=1024, ge=32, description="tokens per example; longer ones are cut (prompt parts come first)"
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA instead of full fine-tuning")


def job_default(name: str, value: Any, base: type[BaseModel] = SupervisedSettings) -> Any:
    """A shared field with a job's own default; its description and bounds stay the shared ones."""
    return FieldInfo.merge_field_infos(base.model_fields[name], default=value)


def trl_config(settings: TrainingSettings, config_class: type, **job_arguments: Any) -> Any:
    """The job's TRL config on this machine's device, after saying which precision it trains in."""
    import torch

    from rulewise.runtime import describe_precision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(describe_precision(settings.precision, device), flush=True)
    return config_class(**trl_arguments(settings, config_class, device.type, **job_arguments))


def trl_arguments(
    settings: TrainingSettings, config_class: type, device_type: str, **job_arguments: Any
) -> dict[str, Any]:
    """Keyword arguments for ``config_class`` (a TRL config dataclass): the shared settings under
    TRL's names, the job's own (``job_arguments``), then the ``trl`` pass-through. The one place
    that knows TRL's names for the shared settings."""
    import torch

    from rulewise.runtime import use_bf16
    from rulewise.training.common import device_args

    args: dict[str, Any] = {
        "output_dir": str(Path(settings.out)),
        "max_steps": settings.max_steps,
        "learning_rate": settings.learning_rate,
        "seed": settings.seed,
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        # TRL's configs default to bf16=True: always decide it here
        "bf16": use_bf16(settings.precision, torch.device(device_type)),
        # TRL defaults it on; transformers calls it activation checkpointing now
        "activation_checkpointing": settings.gradient_checkpointing,
        **device_args(device_type),
    }
    if isinstance(settings, SupervisedSettings):
        args |= {
            "num_train_epochs": settings.epochs,
            "lr_scheduler_type": settings.lr_scheduler,
            "warmup_steps": settings.warmup,
            "weight_decay": settings.weight_decay,
            "per_device_train_batch_size": settings.batch_size,
            "gradient_accumulation_steps": settings.grad_accum,
            "max_length": settings.max_length,
        }
    args |= job_arguments
    known = {field.name for field in dataclasses.fields(config_class)}
    for key in settings.trl:
        if key not in known:
            raise RulewiseError(
                f"{config_class.__name__} has no field {key!r}",
                field=f"trl.{key}",
                hint="trl: passes fields of TRL's config through; see its documentation for the names",
            )
        if key in args:
            raise RulewiseError(
                f"{key!r} is set by rulewise's own settings",
                field=f"trl.{key}",
                hint="set the rulewise setting instead",
            )
    return args | settings.trl
