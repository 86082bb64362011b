"""What every trainer shares: checkpoint discovery, curves, the final save."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rulewise.models.chat_template import chatml_tool_template
from rulewise.models.loading import LoadedModel


def _complete(checkpoint: Path) -> bool:
    """The Trainer writes ``trainer_state.json`` last, and not atomically: a checkpoint is whole
    when that file parses (a kill during the write leaves it empty or torn)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_bytes())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` directory, if any."""
    candidates = [p for p in out_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and _complete(p)]
    return max(candidates, key=lambda p: int(p.name.split("-")[-1]), default=None)


def write_log_history(out_dir: Path, history: list[dict[str, Any]]) -> Path:
    path = out_dir / "log_history.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in history), encoding="utf-8")
    return path


def plot_curves(
    out_dir: Path, history: list[dict[str, Any]], keys: list[str], filename: str, title: str
) -> Path | None:
    """One panel per logged key against the step; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [k for k in keys if any(k in entry for entry in history)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.5), squeeze=False)
    for ax, key in zip(axes[0], present, strict=True):
        points = [(e["step"], e[key]) for e in history if key in e and "step" in e]
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = out_dir / filename
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


CHECKPOINT_INFO = "rulewise_checkpoint.json"


def save_final(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    inference_template: str | None = None,
) -> None:
    """Save a plain checkpoint that ``rulewise chat/eval --model out_dir`` loads as is.

    LoRA adapters are merged, and the tokenizer gets back the chat template it was loaded with
    (TRL trains with a variant that carries assistant-mask markers): a model whose own template
    handles tools keeps it; one that got the ChatML tool template keeps that. Which one the
    checkpoint carries is written to ``rulewise_checkpoint.json``.
    """
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    tokenizer.chat_template = inference_template or chatml_tool_template()
    which = (
        "chatml-tools (TRL's Qwen2.5 template)"
        if tokenizer.chat_template == chatml_tool_template()
        else "own"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CHECKPOINT_INFO).write_text(json.dumps({"chat_template": which}, indent=2), encoding="utf-8")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def train_only_top_layers(model: PreTrainedModel, count: int) -> int:
    """Freeze everything but the last ``count`` transformer blocks and the final norm.

    Backward then stops at the lowest trainable block, which on a CPU cuts a step's cost
    to little more than a forward pass. Returns the number of trainable parameters.
    Tied input/output embeddings stay frozen with the rest.
    """
    import torch

    blocks = max((m for m in model.modules() if isinstance(m, torch.nn.ModuleList)), key=len, default=None)
    if blocks is None or not 0 < count <= len(blocks):
        raise ValueError(f"train_top_layers={count}: the model has {len(blocks or [])} transformer blocks")
    model.requires_grad_(False)
    blocks[-count:].requires_grad_(True)
    decoder = getattr(model, "model", None)
    norm = getattr(decoder, "norm", None)
    if isinstance(norm, torch.nn.Module):
        norm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def prepare_for_training(model: PreTrainedModel, train_top_layers: int | None) -> None:
    """Freeze all but the top blocks when asked (a config error names the field), then train mode."""
    from rulewise.errors import RulewiseError

    if train_top_layers is not None:
        try:
            train_only_top_layers(model, train_top_layers)
        except ValueError as exc:
            raise RulewiseError(str(exc), field="train_top_layers") from None
    model.train()


def device_args(device_type: str) -> dict[str, Any]:
    """TrainingArguments that depend on the device, shared by every trainer.

    ``use_cpu`` on CPU is what lets ``torchrun`` give real gloo data parallelism.
    """
    import importlib.util

    return {
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": device_type == "cuda",
        "use_cpu": device_type == "cpu",
        "report_to": ["tensorboard"] if importlib.util.find_spec("tensorboard") else [],
    }


class Curves(NamedTuple):
    """What a job plots from its log history: the keys, the file and the title."""

    keys: list[str]
    file: str
    title: str


def train_and_save(
    trainer: Any,
    loaded: LoadedModel,
    settings: Any,
    curves: Curves,
    *,
    on_resume: Callable[[Path], None] | None = None,
    **prefix_options: Any,
) -> None:
    """What every training job ends with: the shared-prefix forward (``prefix_options`` go to
    it), a resume from the newest complete checkpoint in ``settings.out`` (``on_resume``
    restores what the job keeps beside it), training, then on the main process the plain
    checkpoint (``loaded``'s tokenizer and template), the log history and the curves; then sync."""
    from rulewise.training.shared_prefix import enable_for_trainer

    out_dir = Path(settings.out)
    if settings.shared_prefix:
        enable_for_trainer(trainer, **prefix_options)
    resume = last_checkpoint(out_dir)
    if resume is not None and on_resume is not None:
        on_resume(resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        save_final(model, loaded.tokenizer, out_dir, loaded.inference_template)
        history = trainer.state.log_history
        write_log_history(out_dir, history)
        plot_curves(out_dir, history, curves.keys, curves.file, curves.title)
    trainer.accelerator.wait_for_everyone()
