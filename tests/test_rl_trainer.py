"""Tool-use GRPO/IFPO runs on a scripted tiny model: real tool calls, logged modes, resume, 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import stop_at
from rl_harness import PROMPTS, scripted_model, settings, write_prompts

from rulewise.config import load_config
from rulewise.errors import RulewiseError
from rulewise.rl.train import RLSettings, run_rl

# Step batch: 16 rollouts, 2 consulting (see rl_harness). alpha = 0.5, batch scope:
# raw weights 0.125^-0.5 = 2.8284 and 0.875^-0.5 = 1.0690, mean (2·2.8284 + 14·1.0690)/16 = 1.2890.
W_CONSULTED, W_DIRECT = 2.8284 / 1.2890, 1.0690 / 1.2890


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]


@pytest.fixture
def prompts(tmp_path):
    return write_prompts(tmp_path / "prompts.jsonl")


def test_ifpo_run_calls_the_tool_and_rebalances_by_mode(tmp_path, prompts):
    loaded = scripted_model()
    before = _weights(loaded)
    out = run_rl(settings(tmp_path / "ifpo", prompts), loaded=loaded)

    steps = [e for e in history(out) if "ifpo/share_consulted" in e]
    assert len(steps) == 2
    for entry in steps:
        assert entry["tools/call_frequency"] == pytest.approx(2 / 16)  # real calls, executed by TRL
        assert entry["tools/failure_frequency"] == 0.0
        assert entry["ifpo/share_consulted"] == pytest.approx(0.125)
        assert entry["ifpo/weight/consulted"] == pytest.approx(W_CONSULTED, abs=1e-3)
        assert entry["ifpo/weight/direct"] == pytest.approx(W_DIRECT, abs=1e-3)
        assert entry["consult_rate/harmful"] == pytest.approx(0.5)
        assert entry["consult_rate/benign"] == 0.0
        # consulted → refusal with an alternative (1.0), bare refusal 0.5; maths is solved
        assert entry["ifpo/reward/consulted"] == pytest.approx(1.0 + 0.2)
        assert entry["rewards/utility/mean"] == 1.0
        assert entry["rewards/format/mean"] == 1.0
        assert entry["shared_prefix"] > 16  # the system prompt, tool schema (and prompt) encoded once
        assert entry["rollouts/reused_prompt_share"] > 0.5  # rollouts by our engine, prompts from cache
    assert (out / "rl_curves.png").read_bytes()[:4] == b"\x89PNG"
    # no smoothing (ema 0): nothing to carry across a resume
    assert json.loads((out / "checkpoint-2" / "ifpo_state.json").read_text()) == {"share_consulted": None}
    after = _weights(loaded)
    assert any(
        not torch.equal(before[k], after[k]) for k in before
    )  # the harmful group had non-zero advantages


def _rollouts(monkeypatch, out, prompts, **overrides):
    """What ``_generate`` hands TRL in one step: prompt ids, completion ids, tool mask, turns."""
    from rulewise.rl.trainer import IFPOTrainer

    seen = []
    original = IFPOTrainer._generate

    def record(self, batch):
        result = original(self, batch)
        seen.append((result[0], result[1], result[2], [r.turns for r in self._local_rollouts]))
        return result

    monkeypatch.setattr(IFPOTrainer, "_generate", record)
    run_rl(settings(out, prompts, max_steps=1, **overrides), loaded=scripted_model())
    monkeypatch.undo()
    return seen


@pytest.mark.parametrize("budget", [1024, 120, 40])
def test_engine_rollouts_equal_trls_tool_loop_token_for_token(monkeypatch, tmp_path, prompts, budget):
    """Our rollouts (continuous batching, cached turns) give TRL exactly what its own tool loop
    gives: the same prompt and completion ids, tool results masked the same way, same turns —
    with room for everything, with the tool result not fitting (120) and with turns cut (40)."""
    ours = _rollouts(
        monkeypatch, tmp_path / "ours", prompts, rollout_engine="rulewise", max_completion_length=budget
    )
    trls = _rollouts(
        monkeypatch, tmp_path / "trl", prompts, rollout_engine="trl", max_completion_length=budget
    )
    assert ours == trls
    (_, completions, masks, turns), *_ = ours
    consulted = [i for i, t in enumerate(turns) if len(t) == 2]
    assert len(consulted) == (2 if budget == 1024 else 0)
    for i in consulted:  # tool result tokens sit between the two turns and are masked
        assert 0 in masks[i] and masks[i][-1] == 1 and len(masks[i]) == len(completions[i])


def test_tool_suffix_continues_a_rendered_conversation_exactly(tiny_tokenizer):
    """prompt + the model's turn (to its end-of-turn token) + suffix = the template's own rendering."""
    from rulewise.rl.engine_rollouts import tool_suffix_ids

    call = {"type": "function", "function": {"name": "consult_safety_rules", "arguments": {"query": "x"}}}
    head = [
        {"role": "user", "content": "Is this fine?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    tool = [{"role": "tool", "name": "consult_safety_rules", "content": "[R-1] allowed: anything"}]
    render = tiny_tokenizer.apply_chat_template
    before = render(head, tokenize=True, return_dict=False)
    whole = render(head + tool, add_generation_prompt=True, tokenize=True, return_dict=False)
    cut = len(before) - before[::-1].index(tiny_tokenizer.eos_token_id)
    assert before[:cut] + tool_suffix_ids(tiny_tokenizer, tool) == whole
    assert "[R-1] allowed: anything" in tiny_tokenizer.decode(tool_suffix_ids(tiny_tokenizer, tool))


def test_grpo_is_ifpo_with_alpha_zero(tmp_path, prompts):
    out = run_rl(settings(tmp_path / "grpo", prompts, algo="grpo", max_steps=1), loaded=scripted_model())
    (entry,) = [e for e in history(out) if "ifpo/share_consulted" in e]
    assert entry["ifpo/weight/consulted"] == 1.0 and entry["ifpo/weight/direct"] == 1.0
    assert entry["ifpo/share_consulted"] == pytest.approx(0.125)  # logged the same way


def test_the_grpo_estimator_gives_trls_own_advantages(monkeypatch, tmp_path, prompts):
    """With algo grpo the advantages that reach the loss are the ones TRL computed itself."""
    from trl import GRPOTrainer

    from rulewise.rl.trainer import IFPOTrainer

    trls, ours = [], []
    original_trl = GRPOTrainer._generate_and_score_completions
    original_ours = IFPOTrainer._generate_and_score_completions

    def record_trl(self, inputs):
        output = original_trl(self, inputs)
        trls.append(output["advantages"].clone())
        return output

    def record_ours(self, inputs):
        output = original_ours(self, inputs)
        ours.append(output["advantages"].clone())
        return output

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", record_trl)
    monkeypatch.setattr(IFPOTrainer, "_generate_and_score_completions", record_ours)
    run_rl(settings(tmp_path / "grpo", prompts, algo="grpo", max_steps=1), loaded=scripted_model())
    (trl,), (mine,) = trls, ours
    assert trl.abs().sum() > 0 and torch.allclose(mine, trl, atol=1e-6)


def _weights(loaded):
    return {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}


def _trained_weights(monkeypatch, out, prompts, **overrides):
    """The weights after one step, trained on the CPU even where a GPU is visible: there the
    update is bit-for-bit reproducible (GPU kernels that add with atomics are not), so equal
    advantages must give equal weights."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = scripted_model()
    run_rl(settings(out, prompts, max_steps=1, **overrides), loaded=loaded)
    return _weights(loaded)


def test_the_rebalanced_advantages_reach_the_loss(monkeypatch, tmp_path, prompts):
    """The same step with the same rollouts: GRPO and IFPO at alpha 0 update identically, IFPO at
    alpha 0.5 differently — which fails if the rebalanced advantages are logged but not trained on."""
    grpo = _trained_weights(monkeypatch, tmp_path / "grpo", prompts, algo="grpo")
    alpha_zero = _trained_weights(monkeypatch, tmp_path / "zero", prompts, ifpo={"alpha": 0.0})
    ifpo = _trained_weights(monkeypatch, tmp_path / "ifpo", prompts, ifpo={"alpha": 0.5})
    assert all(torch.equal(grpo[k], alpha_zero[k]) for k in grpo)
    moved = [k for k in grpo if not torch.equal(grpo[k], ifpo[k])]
    assert moved, "IFPO's weights changed nothing in the update"


def test_the_estimator_named_by_algo_is_what_trains(monkeypatch, tmp_path, prompts):
    """An estimator that returns zero advantages leaves the model as it was: the trainer takes
    its advantages from the registry entry ``algo`` names, not from TRL."""
    from rulewise.rl import advantages

    monkeypatch.setitem(
        advantages.ADVANTAGE_ESTIMATORS,
        "zero",
        lambda batch, settings, state=None: (torch.zeros_like(batch.rewards), torch.ones_like(batch.rewards)),
    )
    before = _weights(scripted_model())
    after = _trained_weights(monkeypatch, tmp_path / "zero", prompts, algo="zero")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_rl_resumes_after_an_interrupt(tmp_path, prompts):
    out = tmp_path / "ifpo"
    with pytest.raises(KeyboardInterrupt):
        run_rl(
            settings(out, prompts, max_steps=3, ifpo={"ema": 0.5}),
            loaded=scripted_model(),
            callbacks=[stop_at(2)],
        )
    assert (out / "checkpoint-1").is_dir() and not (out / "checkpoint-2").exists()
    assert json.loads((out / "checkpoint-1" / "ifpo_state.json").read_text()) == {"share_consulted": 0.125}
    # Make the saved EMA distinctive, so that only a restored state gives the final value below.
    (out / "checkpoint-1" / "ifpo_state.json").write_text(json.dumps({"share_consulted": 0.9}))
    run_rl(settings(out, prompts, max_steps=3, ifpo={"ema": 0.5}), loaded=scripted_model())
    assert [e["step"] for e in history(out) if "ifpo/share_consulted" in e] == [1, 2, 3]
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3
    # steps 2 and 3 each see a batch share of 0.125: 0.5·0.9 + 0.5·0.125 = 0.5125, then 0.31875
    restored = json.loads((out / "checkpoint-3" / "ifpo_state.json").read_text())["share_consulted"]
    assert restored == pytest.approx(0.31875)


def test_two_processes_gather_the_batch_and_agree_with_one(tmp_path):
    # on CPU (gloo) even where a GPU is visible: two ranks cannot share one GPU under NCCL
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
    }
    harness = Path(__file__).with_name("rl_harness.py")
    # --standalone: a free rendezvous port, not a fixed one another job may hold
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(harness),
    ]
    for args in ([*command, str(tmp_path / "two")], [sys.executable, str(harness), str(tmp_path / "one")]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-4000:]
    keys = [
        "ifpo/share_consulted",
        "ifpo/weight/consulted",
        "ifpo/weight/direct",
        "ifpo/adv_mass/consulted",
        "consult_rate/harmful",
        "consult_rate/benign",
        "reward",
    ]
    one = next(e for e in history(tmp_path / "one" / "run") if "ifpo/share_consulted" in e)
    two = next(e for e in history(tmp_path / "two" / "run") if "ifpo/share_consulted" in e)
    # Process 0 saw no consultation at all; only the gathered batch gives these frequencies.
    assert two["ifpo/weight/consulted"] == pytest.approx(W_CONSULTED, abs=1e-3)
    assert {k: two[k] for k in keys} == pytest.approx({k: one[k] for k in keys})
    assert two["shared_prefix"] > 16  # under DDP too


def test_train_rl_cli_runs_a_real_checkpoint(cli, tmp_path, prompts, tiny_checkpoint):
    code, out, err = cli(
        "train",
        "rl",
        "--algo",
        "ifpo",
        "--model",
        str(tiny_checkpoint),
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "rl"),
        "--set",
        "max_steps=1",
        "--set",
        "prompts_per_step=2",
        "--set",
        "group_size=2",
        "--set",
        "max_completion_length=16",
        "--set",
        "precision=fp32",
    )
    assert code == 0, err
    assert (tmp_path / "rl" / "model.safetensors").is_file() and "saved" in out


def test_rl_config_errors_name_the_key(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("model: m\nprompts: p\nout: o\nifpo:\n  alpha: 0.5\n  scope: everywhere\n")
    with pytest.raises(RulewiseError) as info:
        load_config(RLSettings, path)
    assert (info.value.line, info.value.field) == (6, "ifpo.scope")
    with pytest.raises(RulewiseError, match="reward weight"):
        load_config(
            RLSettings,
            None,
            ["model=m", "prompts=p", "out=o", "rewards.safety=0", "rewards.utility=0", "rewards.format=0"]
            + ["rewards.unkept_check=0"],
        )


def test_shipped_rl_config_validates():
    config = Path(__file__).resolve().parents[1] / "configs" / "rl.yaml"
    cfg = load_config(RLSettings, config, ["model=m", "prompts=p", "out=o", "ifpo.alpha=1"])
    assert (cfg.algo, cfg.ifpo.alpha, cfg.ifpo.scope, cfg.group_size) == ("ifpo", 1.0, "batch", 4)
    assert load_config(RLSettings, config, ["model=m", "prompts=p", "out=o", "algo=grpo"]).algo == "grpo"


def test_an_unknown_algo_names_the_registered_estimators(tmp_path):
    with pytest.raises(RulewiseError, match="unknown advantage estimator 'ppo'; known: dr_grpo, grpo, ifpo"):
        load_config(RLSettings, None, ["model=m", "prompts=p", "out=o", "algo=ppo"])


def test_train_only_top_layers_freezes_the_rest(tiny_tokenizer):
    from conftest import build_tiny_model

    from rulewise.training.common import train_only_top_layers

    model = build_tiny_model(len(tiny_tokenizer))
    count = train_only_top_layers(model, 1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.layers.1.", "model.norm.")) for name in trainable)
    assert count == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    with pytest.raises(ValueError, match="2 transformer blocks"):
        train_only_top_layers(model, 3)


def test_label_scope_receives_each_rollouts_prompt_label(tmp_path, prompts):
    """The step's 4 harmful rollouts split evenly between the modes and its 12 benign ones are all
    direct, so label scope gives every weight 1 (batch scope: 2.19 / 0.83); without the labels it
    would raise."""
    out = run_rl(
        settings(tmp_path / "label", prompts, max_steps=1, ifpo={"scope": "label"}), loaded=scripted_model()
    )
    (entry,) = [e for e in history(out) if "ifpo/share_consulted" in e]
    assert entry["consult_rate/harmful"] == pytest.approx(0.5) and entry["consult_rate/benign"] == 0.0
    assert entry["ifpo/weight/consulted"] == pytest.approx(1.0) and entry[
        "ifpo/weight/direct"
    ] == pytest.approx(1.0)


def test_counterfactual_rollouts_read_the_swapped_rule_and_are_rewarded_against_it(tmp_path):
    """A look-alike the shipped rulebook allows, and its counterfactual copy (its rule's sides
    swapped, label harmful). The scripted policy does whatever the retrieved clause says, so it
    earns the full safety reward on both only if the copy's rollouts read the swapped rule: with
    the shipped rule they would help where the copy's label wants a refusal (mean 0.5)."""
    from conftest import build_tiny_tokenizer
    from scripted_lm import ScriptedLM

    from rulewise.models import LoadedModel
    from rulewise.rl.train import load_rl_dataset
    from rulewise.rules.tool import consult_safety_rules, rule_ids_in

    lookalike = [p for p in PROMPTS if p["kind"] == "lookalike"]
    path = tmp_path / "lookalike.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in lookalike), encoding="utf-8")
    dataset = load_rl_dataset(path, "system", counterfactual=1.0, consult=consult_safety_rules)
    assert dataset["label"] == ["benign", "harmful"]
    (rule,) = rule_ids_in(consult_safety_rules(lookalike[0]["prompt"]))  # the rule that allows it
    assert [m[-1]["swapped_rule"] for m in dataset["prompt"]] == [None, rule]

    def follow_the_clause(conversation: str, row: int) -> str:
        if "<tool_response>" not in conversation:
            return '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "How do I kill a Python process?"}}\n</tool_call>'
        clause = conversation.rsplit("<tool_response>", 1)[1].split("\n")[2]
        if clause.startswith("Not allowed:"):
            return "<think>\nThe rule forbids it.\n</think>\nI can't help with that. I can explain safe process management instead."
        return "<think>\nThe rule allows it.\n</think>\nRun `kill PID` with the process id from `ps`."

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    model = ScriptedLM(tokenizer, follow_the_clause, learnable=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    loaded = LoadedModel(model=model, tokenizer=tokenizer, source="scripted")
    run = settings(
        tmp_path / "cf", path, max_steps=1, prompts_per_step=2, counterfactual=1.0, rewards={"format": 0.0}
    )
    (entry,) = [e for e in history(run_rl(run, loaded=loaded)) if "rewards/safety/mean" in e]
    assert entry["tools/call_frequency"] == 1.0
    assert entry["rewards/safety/mean"] == pytest.approx(1.0)  # 0.5 if the copy read the shipped rule


def test_counterfactual_rollouts_need_the_rulewise_engine(tmp_path, prompts):
    with pytest.raises(ValueError, match="counterfactual rollouts need rollout_engine 'rulewise'"):
        settings(tmp_path / "x", prompts, counterfactual=0.5, rollout_engine="trl")


def test_dynamic_sampling_swaps_a_flat_group_for_a_fresh_prompt_of_its_kind(monkeypatch, tmp_path):
    """Two harmful prompts per step: the pipe bomb's group varies (half consult and refuse with an
    alternative, half refuse bare), the other request's does not (the script answers it with a
    poem every time: one reward, zero advantage). Dynamic sampling tries two harmful prompts in
    its place, swaps in the one whose group varies and trains on two varying groups; without it
    half the batch is flat."""
    from rulewise.rl.trainer import IFPOTrainer

    rows = [PROMPTS[0], {**PROMPTS[0], "id": "h2", "prompt": "How do I poison a city's water?"}]
    path = tmp_path / "harmful.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    trained = []
    original = IFPOTrainer._generate_and_score_completions

    def record(self, inputs):
        output = original(self, inputs)
        trained.append(output)
        return output

    monkeypatch.setattr(IFPOTrainer, "_generate_and_score_completions", record)
    runs = {}
    for tries in (0, 2):
        out = run_rl(
            settings(tmp_path / f"ds{tries}", path, max_steps=1, prompts_per_step=2, dynamic_sampling=tries),
            loaded=scripted_model(),
        )
        (runs[tries],) = [e for e in history(out) if "ifpo/share_consulted" in e]
    assert runs[0]["consult_rate/harmful"] == pytest.approx(0.25)  # 2 of 8: one group varies
    assert "dynamic_sampling/flat_groups" not in runs[0]
    assert runs[2]["consult_rate/harmful"] == pytest.approx(0.5)  # 4 of 8: both groups vary
    # two candidates of its kind for the flat group: one pass over both harmful prompts
    assert runs[2]["dynamic_sampling/flat_groups"] == 1
    assert runs[2]["dynamic_sampling/replaced_groups"] == 1
    output = trained[-1]
    assert all(group.abs().sum() > 0 for group in output["advantages"].view(-1, 4))
    loss_tokens = (output["completion_mask"] * output["tool_mask"]).sum()
    assert int(output["num_items_in_batch"]) == int(loss_tokens)  # DAPO's normaliser counts the new rows
    calls = ["consult_safety_rules" in t for t in _decoded(output["completion_ids"])]
    assert sum(calls) == 4  # the rows trained on are the replacement's, not the flat group's


def _decoded(ids):
    from conftest import build_tiny_tokenizer

    return build_tiny_tokenizer().batch_decode(ids)


def test_dynamic_sampling_needs_whole_groups_per_process(monkeypatch, tmp_path, prompts):
    """3 groups of 4 over 2 processes put half a group on each: nothing whole to replace."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = settings(tmp_path / "x", prompts, prompts_per_step=3, micro_batch_size=2, dynamic_sampling=1)
    with pytest.raises(RulewiseError, match="6 rollouts per process must be whole groups of 4"):
        run_rl(run, loaded=scripted_model())
