import json

import pytest
import torch
from conftest import stop_at

from rulewise.config import load_config
from rulewise.data.prompt_set import build_prompt_set
from rulewise.data.synthesis import synthesize
from rulewise.data.teachers import build_teacher
from rulewise.errors import RulewiseError
from rulewise.models import chatml_tool_template, load_model
from rulewise.rules import load_rulebook
from rulewise.training.sft import SFTSettings, run_sft
from rulewise.training.shared_prefix import MIN_SHARED


@pytest.fixture(scope="module")
def bc_data(tmp_path_factory):
    from transformers.utils import get_json_schema

    path = tmp_path_factory.mktemp("bc") / "bc.jsonl"
    teacher = build_teacher("scripted", load_rulebook())
    prompts = build_prompt_set()[::40]
    synthesize(prompts, teacher, path, tools=[get_json_schema(teacher.consult)])
    return path


def settings(bc_data, tiny_checkpoint, out, **overrides):
    base = {
        "data": str(bc_data),
        "model": str(tiny_checkpoint),
        "out": str(out),
        "batch_size": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "max_steps": 2,
        "warmup": 0,
        "precision": "fp32",
        "learning_rate": 1e-3,
    }
    return SFTSettings(**{**base, **overrides})


def test_oversample_direct_repeats_only_trajectories_without_a_tool_call(bc_data):
    from rulewise.training.sft import load_sft_dataset

    records = [json.loads(line) for line in bc_data.read_text().splitlines()]
    direct = [r for r in records if not any(m.get("tool_calls") for m in r["messages"])]
    assert 0 < len(direct) < len(records)
    once = load_sft_dataset(bc_data)
    thrice = load_sft_dataset(bc_data, oversample_direct=3)
    assert len(once) == len(records) and len(thrice) == len(records) + 2 * len(direct)

    def user(messages):
        return next(m["content"] for m in messages if m["role"] == "user")

    assert sum(user(row["messages"]) == user(direct[0]["messages"]) for row in thrice) == 3


def test_sft_trains_saves_a_plain_checkpoint_and_curves(bc_data, tiny_checkpoint, tmp_path):
    out = run_sft(settings(bc_data, tiny_checkpoint, tmp_path / "sft"))
    history = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    # system prompt and tool schema encoded once per batch
    assert all(e["shared_prefix"] > MIN_SHARED for e in history if "loss" in e)
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = load_model(str(out))
    assert loaded.tokenizer.chat_template == chatml_tool_template()
    base = load_model(str(tiny_checkpoint)).model.state_dict()
    tuned = loaded.model.state_dict()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)


def test_sft_resumes_after_an_interrupt(bc_data, tiny_checkpoint, tmp_path):
    out = tmp_path / "sft"
    with pytest.raises(KeyboardInterrupt):
        run_sft(settings(bc_data, tiny_checkpoint, out, max_steps=4), callbacks=[stop_at(3)])
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    run_sft(settings(bc_data, tiny_checkpoint, out, max_steps=4))
    history = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]  # steps 1-2 restored, 3-4 trained
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_lora_is_merged_into_a_plain_model(bc_data, tiny_checkpoint, tmp_path):
    out = run_sft(
        settings(bc_data, tiny_checkpoint, tmp_path / "lora", max_steps=1, lora={"enabled": True, "r": 4})
    )
    tuned = load_model(str(out)).model
    assert not any("lora" in name for name in tuned.state_dict())
    base = load_model(str(tiny_checkpoint)).model.state_dict()
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(base[k], v)]
    assert changed and all("proj" in k for k in changed)  # only adapted linear layers moved


def test_a_max_length_that_cuts_every_answer_is_a_named_error(bc_data, tiny_checkpoint, tmp_path):
    with pytest.raises(RulewiseError, match="no example keeps any assistant token") as info:
        run_sft(settings(bc_data, tiny_checkpoint, tmp_path / "short", max_length=64))
    assert info.value.field == "max_length" and info.value.path == str(bc_data)


def test_bad_training_files_are_named(tmp_path, tiny_checkpoint):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "tools": ["{\\"type\\": \\"function\\"}"]}\n'
    )
    with pytest.raises(RulewiseError, match="not strings") as info:
        run_sft(SFTSettings(data=str(path), out=str(tmp_path / "o"), model=str(tiny_checkpoint)))
    assert (info.value.line, info.value.field) == (1, "tools")
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(RulewiseError, match="at least one assistant message"):
        run_sft(SFTSettings(data=str(path), out=str(tmp_path / "o"), model=str(tiny_checkpoint)))


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("data: d.jsonl\nout: o\nlora:\n  enabled: true\n  r: 8\n")
    cfg = load_config(SFTSettings, path, ["lora.r=4", "learning_rate=1e-4", "max_steps=10"])
    assert (cfg.lora.enabled, cfg.lora.r, cfg.learning_rate, cfg.max_steps) == (True, 4, 1e-4, 10)
    path.write_text("data: d.jsonl\nout: o\nlora:\n  rank: 8\n")
    with pytest.raises(RulewiseError) as info:
        load_config(SFTSettings, path)
    assert (info.value.line, info.value.field) == (4, "lora.rank") and "Extra inputs" in str(info.value)
    with pytest.raises(RulewiseError, match="key=value"):
        load_config(SFTSettings, None, ["max_steps"])
    with pytest.raises(RulewiseError) as info:
        load_config(SFTSettings, None, ["data=d", "out=o", "batch_size=zero"])
    assert info.value.field == "batch_size" and "<command line>" in str(info.value)


def test_shipped_sft_config_validates():
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "sft.yaml"
    cfg = load_config(SFTSettings, config, ["train_top_layers=8"])
    assert (cfg.group_by_length, cfg.train_top_layers, cfg.lora.enabled) == (True, 8, False)
    assert (cfg.max_steps, cfg.save_steps, cfg.learning_rate) == (
        60,
        20,
        5e-5,
    )  # set there; the rest defaults


def test_a_checkpoint_killed_while_writing_its_state_is_not_resumed_from(tmp_path):
    from rulewise.training.common import last_checkpoint

    for step, state in ((2, '{"global_step": 2}'), (3, ""), (4, '{"global_st')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-5").mkdir()  # killed before it wrote its state at all
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"


def test_trl_pass_through_reaches_the_config_and_unknown_names_are_errors(tmp_path):
    from trl import SFTConfig

    from rulewise.training.settings import trl_arguments

    base = {"data": "d.jsonl", "out": str(tmp_path)}
    args = trl_arguments(SFTSettings(**base, trl={"neftune_noise_alpha": 5.0}), SFTConfig, "cpu")
    assert args["neftune_noise_alpha"] == 5.0 and args["per_device_train_batch_size"] == 8
    assert SFTConfig(**args).neftune_noise_alpha == 5.0
    with pytest.raises(RulewiseError, match="SFTConfig has no field 'no_such_field'") as info:
        trl_arguments(SFTSettings(**base, trl={"no_such_field": 1}), SFTConfig, "cpu")
    assert info.value.field == "trl.no_such_field"
    with pytest.raises(RulewiseError, match="'learning_rate' is set by rulewise's own settings"):
        trl_arguments(SFTSettings(**base, trl={"learning_rate": 1.0}), SFTConfig, "cpu")


def test_every_job_setting_has_a_description():
    from rulewise.cli.config_cmd import JOBS, _settings_class, settings_rows
    from rulewise.pipeline.stages import STAGE_KINDS

    for settings in (*(_settings_class(job) for job in JOBS), *STAGE_KINDS.values()):
        missing = [name for name, _, _, about in settings_rows(settings) if not about and name != "kind"]
        assert not missing, f"{settings.__name__}: {missing}"


def test_jobs_keep_their_own_defaults_with_the_shared_descriptions():
    from rulewise.rl.train import RLSettings
    from rulewise.training.dpo import DPOSettings

    dpo = DPOSettings.model_fields["learning_rate"]
    assert dpo.default == 5e-6 and dpo.description == SFTSettings.model_fields["learning_rate"].description
    assert SFTSettings.model_fields["learning_rate"].default == 5e-5
    assert RLSettings.model_fields["learning_rate"].default == 1e-6
    with pytest.raises(ValueError):  # bounds are shared too
        DPOSettings(data="d", out="o", learning_rate=0)
