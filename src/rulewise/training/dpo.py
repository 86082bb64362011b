"""``rulewise train dpo``: preference optimisation (SaRO's SRPO stage) with TRL's DPOTrainer.

Reads the pairs ``rulewise data srpo`` writes (TRL's conversational preference format). The
reference model is a frozen copy of the starting model, or — with ``lora.enabled`` — the
starting model itself with the adapters switched off (no second copy in memory). Checkpoints
every ``save_steps``, a rerun resumes, and ``dpo_curves.png`` shows the loss, the reward margin
and the preference accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from rulewise.errors import RulewiseError
from rulewise.fileio import iter_jsonl
from rulewise.training.settings import SupervisedSettings, job_default

CURVE_KEYS = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"]


class DPOSettings(SupervisedSettings):
    """Everything ``rulewise train dpo`` reads from ``--config`` and ``--set``."""

    beta: float = Field(default=0.1, gt=0, description="strength of the pull towards the reference model")
    loss_type: str = Field(default="sigmoid", description="TRL loss: sigmoid (DPO), ipo, hinge, robust, ...")
    learning_rate: float = job_default("learning_rate", 5e-6)
    warmup: float = job_default("warmup", 0.1)
    batch_size: int = job_default("batch_size", 2)
    logging_steps: int = job_default("logging_steps", 1)
    save_steps: int = job_default("save_steps", 20)


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
    from trl import DPOConfig, DPOTrainer

    from rulewise.models import load_model
    from rulewise.training.common import Curves, prepare_for_training, train_and_save
    from rulewise.training.settings import trl_config

    out = Path(settings.out)
    dataset = load_preference_dataset(settings.data)
    loaded = load_model(settings.model)
    args = trl_config(settings, DPOConfig, beta=settings.beta, loss_type=[settings.loss_type])
    peft_config, reference = settings.lora.peft_config(), None
    if peft_config is None:
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
    title = f"DPO ({settings.loss_type}) of {settings.model}"
    train_and_save(trainer, loaded, settings, Curves(CURVE_KEYS, "dpo_curves.png", title))
    return out
