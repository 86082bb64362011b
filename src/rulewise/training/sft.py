"""``rulewise train sft``: supervised fine-tuning on trajectories with TRL's SFTTrainer.

Loss is on assistant tokens only (``assistant_only_loss``): the prompt, the system prompt and
the tool results are context, not targets. Checkpoints are written every ``save_steps`` and a
rerun of the same command resumes from the newest one. The result is a plain checkpoint with
the tool chat template, plus ``loss.png`` and ``log_history.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from rulewise.errors import RulewiseError
from rulewise.fileio import iter_jsonl
from rulewise.training.settings import SupervisedSettings

CURVE_KEYS = ["loss", "learning_rate", "grad_norm"]


class SFTSettings(SupervisedSettings):
    """Everything ``rulewise train sft`` reads from ``--config`` and ``--set``."""

    group_by_length: bool = Field(
        default=True,
        description="batches of similar length (less padding), visited in random order (a run stopped "
        "part-way through an epoch otherwise learns whichever length band it saw last)",
    )
    oversample_direct: int = Field(
        default=1,
        ge=1,
        description="repeat every trajectory that answers without a tool call this many times. ASCL "
        "data that consults on every sensitive request is ~90% consulting, and a short run then "
        "learns to consult on everything: the quickstart's 32-step student consulted on 99% of "
        "plain tasks at 1, on 1 of 6 plain dev tasks at 3",
    )


def load_sft_dataset(path: str | Path, *, oversample_direct: int = 1):
    """Records with ``messages`` (and optional ``tools``) as a datasets.Dataset; bad lines are named.

    A record none of whose assistant messages calls a tool appears ``oversample_direct`` times."""
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
        calls = any(
            m.get("tool_calls") for m in messages if isinstance(m, dict) and m.get("role") == "assistant"
        )
        rows.extend([{"messages": messages, "tools": tools}] * (1 if calls else oversample_direct))
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
    from trl import SFTConfig

    from rulewise.models import load_model
    from rulewise.training.common import Curves, prepare_for_training, train_and_save
    from rulewise.training.settings import trl_config

    out = Path(settings.out)
    dataset = load_sft_dataset(settings.data, oversample_direct=settings.oversample_direct)
    if settings.oversample_direct > 1:
        print(
            f"SFT rows: {len(dataset)} (trajectories without a tool call repeated {settings.oversample_direct}×)"
        )
    loaded = load_model(settings.model)
    args = trl_config(settings, SFTConfig, assistant_only_loss=True)
    peft_config = settings.lora.peft_config()
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
    train_and_save(trainer, loaded, settings, Curves(CURVE_KEYS, "loss.png", f"SFT of {settings.model}"))
    return out
