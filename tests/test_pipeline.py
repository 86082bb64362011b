"""Recipes and the pipeline runner: validation, dry runs, caching, resume, redo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rulewise.errors import RulewiseError
from rulewise.pipeline.recipe import builtin_recipes, load_recipe
from rulewise.pipeline.runner import STATE_FILE, dry_run, fingerprints, run_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    """Recipes name paths relative to the repository root (../shared/data, configs/...)."""
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_every_shipped_recipe_passes_a_dry_run(name, tmp_path):
    recipe = load_recipe(name)
    plan = dry_run(recipe, out=tmp_path)
    assert plan[0].startswith("[1] ")
    assert sum(line.startswith("[") for line in plan) == len(recipe.stages)
    for budget in recipe.budgets:
        dry_run(load_recipe(name, budget=budget), out=tmp_path)


def test_the_recipes_folder_at_the_repository_root_is_the_packaged_one():
    assert sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")) == [
        "ascl.yaml",
        "context_distill.yaml",
        "ifpo_vs_grpo.yaml",
        "saro.yaml",
        "sft_dev.yaml",
    ]
    assert {"ascl", "context_distill", "sft_dev", "gpu/ascl-qwen2.5-7b"} <= set(builtin_recipes())


def test_quickstart_budget_shrinks_the_ascl_recipe():
    full, fast = load_recipe("ascl"), load_recipe("ascl", budget="fast")
    assert fast.stages["sft"].max_steps < full.stages["sft"].max_steps
    assert fast.stages["rl"].max_steps < full.stages["rl"].max_steps


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


GOOD = """\
name: tiny
model: default
stages:
  prompts:
    kind: prompts
  bc:
    kind: bc
    prompts: "@prompts/train.jsonl"
  sft:
    kind: sft
    data: "@bc"
    max_steps: 2
"""


@pytest.mark.parametrize(
    ("text", "field", "line", "message"),
    [
        (GOOD + "    max_step: 3\n", "stages.sft.max_step", 13, "Extra inputs"),
        (GOOD.replace("kind: bc", "kind: bcc"), "stages.bc.kind", 7, "unknown stage kind"),
        (GOOD.replace('data: "@bc"', 'data: "@sft2"'), "stages.sft.data", 11, "no stage defined before"),
        (
            GOOD.replace('data: "@bc"', 'data: "@prompts"'),
            "stages.sft.data",
            11,
            "needs a bc or context-distill",
        ),
        (GOOD.replace("max_steps: 2", "batch_size: 0"), "stages.sft.batch_size", 12, "greater than or equal"),
        (GOOD.replace("name: tiny", "name: tiny\ncolour: blue"), "colour", 2, "Extra inputs"),
    ],
)
def test_bad_recipes_name_file_line_and_key(tmp_path, text, field, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(RulewiseError) as info:
        load_recipe(path)
    assert info.value.field == field
    assert info.value.line == line
    assert info.value.path == str(path)
    assert message in info.value.message


def test_overrides_and_budgets_are_checked(tmp_path):
    path = _write(tmp_path, GOOD + "budgets:\n  small:\n    stages.sft.max_steps: 1\n")
    assert load_recipe(path, budget="small").stages["sft"].max_steps == 1
    assert (
        load_recipe(path, budget="small", overrides=["stages.sft.max_steps=5"]).stages["sft"].max_steps == 5
    )
    with pytest.raises(RulewiseError, match="no budget 'huge'"):
        load_recipe(path, budget="huge")
    with pytest.raises(RulewiseError, match="names no stage") as info:
        load_recipe(path, overrides=["stages.sfft.max_steps=5"])
    assert info.value.field == "stages.sfft.max_steps"
    with pytest.raises(RulewiseError) as info:
        load_recipe(path, overrides=["stages.sft.learning_rate=-1"])
    assert info.value.field == "stages.sft.learning_rate"


def test_dry_run_names_a_missing_input_file(tmp_path):
    path = _write(tmp_path, GOOD.replace('prompts: "@prompts/train.jsonl"', "prompts: nowhere/train.jsonl"))
    with pytest.raises(RulewiseError) as info:
        dry_run(load_recipe(path), out=tmp_path / "out")
    assert info.value.field == "stages.bc.prompts" and info.value.path == "nowhere/train.jsonl"


def test_fingerprints_follow_settings_and_upstream(tmp_path):
    path = _write(tmp_path, GOOD)
    base = fingerprints(load_recipe(path))
    changed = fingerprints(load_recipe(path, overrides=["stages.bc.teacher=hf:default"]))
    assert changed["prompts"] == base["prompts"]
    assert changed["bc"] != base["bc"] and changed["sft"] != base["sft"]  # downstream follows
    launched = fingerprints(load_recipe(path, overrides=["stages.sft.launcher.num_processes=2"]))
    assert launched == base  # how a stage is launched does not change what it computes


# -- the quickstart on a tiny random model ------------------------------------------------------


def tiny_quickstart_overrides(model: Path) -> list[str]:
    """The shipped ascl recipe at its fast budget, shrunk to seconds for a 2-layer random model."""
    sets = [f"model={model}", "stages.prompts.math_count=4", "stages.sft.train_top_layers=1"]
    for stage in ("sft", "sft-cd"):
        sets += [
            f"stages.{stage}.{k}" for k in ("max_steps=2", "batch_size=2", "precision=fp32", "save_steps=1")
        ]
    sets += [
        f"stages.rl.{k}"
        for k in (
            "max_steps=1",
            "prompts_per_step=2",
            "group_size=2",
            "micro_batch_size=2",
            "max_completion_length=16",
            "precision=fp32",
            "train_top_layers=1",
        )
    ]
    benches = "['dev:custom@3=@prompts/dev.jsonl', {spec: 'strongreject=missing/sr.csv', optional: true}]"
    for stage in ("eval-base", "eval-sft", "eval-rl", "eval-cd"):
        sets += [
            f"stages.{stage}.benches={benches}",
            f"stages.{stage}.max_new_tokens=8",
            f"stages.{stage}.precision=fp32",
        ]
    return [arg for assignment in sets for arg in ("--set", assignment)]


@pytest.mark.slow
def test_quickstart_runs_end_to_end_resumes_after_an_interruption_and_caches(
    cli, tmp_path, tiny_checkpoint, monkeypatch
):
    import rulewise.rl.train as rl_train

    out = tmp_path / "quickstart"
    args = ("quickstart", "--out", str(out), *tiny_quickstart_overrides(tiny_checkpoint))
    real_run_rl = rl_train.run_rl

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rl_train, "run_rl", interrupted)
    code, _, _ = cli(*args)  # Ctrl-C during the RL stage
    assert code == 130  # click reports an interrupt as 128 + SIGINT
    state = json.loads((out / STATE_FILE).read_text())["stages"]
    assert [state[s]["status"] for s in ("prompts", "eval-base", "bc", "sft", "eval-sft", "rl")] == [
        "done", "done", "done", "done", "done", "running"
    ]  # fmt: skip
    assert "eval-rl" not in state
    assert all(0 < state[s]["peak_rss_gib"] < 64 for s in ("prompts", "eval-base", "sft"))

    monkeypatch.setattr(rl_train, "run_rl", real_run_rl)
    code, printed, err = cli(*args)
    assert code == 0, err
    recipe = load_recipe("ascl", budget="fast", overrides=args[4::2])
    outcomes = {o.name: o.status for o in run_recipe(recipe, out=out)}  # a third run: all cached
    assert set(outcomes.values()) == {"cached"} and len(outcomes) == 11
    assert "rulewise comparison" in printed and str(out / "report" / "viewer.html") in printed
    report = (out / "report" / "report.md").read_text()
    for label in ("base", "ASCL SFT", "ASCL SFT+IFPO", "context distillation"):
        assert f"| {label} |" in report
    assert (out / "report" / "safety_utility.png").is_file()
    assert (out / "rl" / "model.safetensors").is_file() and (out / "sft-cd" / "model.safetensors").is_file()
    assert not list(out.glob("*/checkpoint-*"))  # a finished stage is never resumed: no 1 GB optimizer states
    metrics = json.loads((out / "eval-rl" / "metrics.json").read_text())
    assert (
        metrics["run"]["model"] == str(out / "rl") and metrics["run"]["items"] == 4
    )  # optional bench left out; @3 drew two twin pairs (pairs first, a pair may end one over)
    assert json.loads((out / "eval-cd" / "run.json").read_text())["use_tools"] is False

    # a report stage also takes eval runs made elsewhere, by directory; a directory that is not
    # one is named, not a traceback
    elsewhere = tmp_path / "compare.yaml"
    elsewhere.write_text(
        f"name: compare\nstages:\n  report:\n    kind: report\n    runs: [{out / 'eval-base'}, {out / 'eval-rl'}]\n"
    )
    run_recipe(load_recipe(elsewhere), out=tmp_path / "compare")
    assert "| eval-rl |" in (tmp_path / "compare" / "report" / "report.md").read_text()
    elsewhere.write_text(f"name: compare\nstages:\n  report:\n    kind: report\n    runs: [{tmp_path}]\n")
    with pytest.raises(RulewiseError, match="not an eval run directory"):
        run_recipe(load_recipe(elsewhere), out=tmp_path / "compare2")


def test_changed_settings_are_refused_and_redo_reruns_downstream(tmp_path, monkeypatch):
    """Caching by fingerprint, with the stages' work replaced by a recorder."""
    from rulewise.pipeline import runner

    ran: list[str] = []
    monkeypatch.setattr(runner, "run_stage", lambda ctx, name: ran.append(name))
    path = _write(tmp_path, GOOD)
    out = tmp_path / "run"
    run_recipe(load_recipe(path), out=out)
    assert ran == ["prompts", "bc", "sft"]
    changed = load_recipe(path, overrides=["stages.bc.teacher=hf:default"])
    with pytest.raises(RulewiseError, match="other settings") as info:
        run_recipe(changed, out=out)
    assert info.value.field == "stages.bc" and "--redo bc" in info.value.hint
    ran.clear()
    (out / "bc").mkdir(parents=True)
    outcomes = {o.name: o.status for o in run_recipe(changed, out=out, redo=["bc"])}
    assert ran == ["bc", "sft"] and outcomes["prompts"] == "cached" and not (out / "bc").exists()


def test_a_stage_stopped_by_a_full_disk_names_it_and_continues_on_rerun(tmp_path, monkeypatch, disk_free):
    from rulewise.pipeline import runner

    ran: list[str] = []

    def stage(ctx, name):
        ran.append(name)
        if name == "bc" and ran.count("bc") == 1:
            raise RuntimeError("basic_ios::clear: iostream error")  # torch.save on a full disk

    monkeypatch.setattr(runner, "run_stage", stage)
    disk_free(1)
    out = tmp_path / "run"
    with pytest.raises(
        RulewiseError, match=r"disk filled up \(1 MiB free now\) — stage 'bc' stopped"
    ) as info:
        run_recipe(load_recipe(_write(tmp_path, GOOD)), out=out)
    assert info.value.path == str(out / "bc") and "rerun the same command" in info.value.hint
    disk_free(2**20)
    outcomes = {o.name: o.status for o in run_recipe(load_recipe(_write(tmp_path, GOOD)), out=out)}
    assert ran == ["prompts", "bc", "bc", "sft"] and outcomes["prompts"] == "cached"


def test_cli_run_dry_run_list_and_show(cli):
    code, out, err = cli("run", "ascl", "--budget", "fast", "--dry-run")
    assert code == 0, err
    assert "[1] prompts (prompts)" in out and "recipe 'ascl' is valid" in out
    code, out, _ = cli("recipes", "list")
    assert code == 0 and "context_distill" in out and "gpu/ascl-qwen2.5-7b" in out
    code, out, _ = cli("recipes", "show", "ascl")
    assert code == 0 and load_recipe("ascl").name == "ascl" and "stages:" in out
    code, _, err = cli("run", "no-such-recipe")
    assert code == 2 and "no recipe 'no-such-recipe'" in err
    code, _, err = cli("run", "ascl", "--dry-run", "--set", "stages.sft.max_step=3")
    assert code == 2 and "stages.sft.max_step" in err


TINY_SARO = """\
name: tiny-saro
model: {model}
stages:
  prompts: {{kind: prompts, math_count: 4}}
  rw: {{kind: rw, prompts: "@prompts/train.jsonl", shortest_of: 2}}
  sft: {{kind: sft, data: "@rw", max_steps: 1, batch_size: 2, precision: fp32}}
  srpo:
    kind: srpo
    model: "@sft"
    prompts: "@prompts/dev.jsonl"
    limit: 3
    samples: 2
    branches: 1
    max_new_tokens: 12
    precision: fp32
  dpo: {{kind: dpo, model: "@sft", data: "@srpo", max_steps: 1, batch_size: 2, precision: fp32}}
  eval:
    kind: eval
    model: "@dpo"
    use_tools: false
    limit: 2
    max_new_tokens: 8
    precision: fp32
    benches: ["dev:custom=@prompts/dev.jsonl"]
"""


@pytest.mark.slow
def test_saro_pipeline_on_a_tiny_model(tmp_path, tiny_checkpoint):
    recipe = load_recipe(_write(tmp_path, TINY_SARO.format(model=tiny_checkpoint)))
    outcomes = {o.name: o for o in run_recipe(recipe, out=tmp_path / "run")}
    assert all(o.status == "ran" for o in outcomes.values())
    stats = json.loads((tmp_path / "run" / "srpo" / "stats.json").read_text())
    assert stats["prompts"] == 3 and stats["model_right_share"] is not None
    pairs = [json.loads(line) for line in (tmp_path / "run" / "srpo" / "data.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)  # a random model gets everything wrong
    assert (tmp_path / "run" / "dpo" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())["run"]["items"] == 2


@pytest.mark.slow
def test_a_stage_with_a_launcher_runs_as_an_accelerate_job(tmp_path, tiny_checkpoint):
    text = GOOD.replace("model: default", f"model: {tiny_checkpoint}") + (
        "    batch_size: 2\n    precision: fp32\n    launcher: {num_processes: 1}\n"
    )
    recipe = load_recipe(_write(tmp_path, text), overrides=["stages.prompts.math_count=2"])
    run_recipe(recipe, out=tmp_path / "run")
    written = (tmp_path / "run" / "sft.sft.yaml").read_text()
    assert f"data: {tmp_path / 'run' / 'bc' / 'data.jsonl'}" in written
    assert (tmp_path / "run" / "sft" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "sft" / "log_history.jsonl").is_file()


def test_pipeline_eta_rescales_smoothly():
    from rulewise.pipeline.runner import _ETA

    eta = _ETA({"prompts": 2.0, "sft": 600.0, "eval": 300.0})
    assert eta.remaining(["sft", "eval"]) == 900.0  # nothing measured: the reference timings
    eta.finish("prompts", 0.1)  # a near-instant first stage barely moves it
    assert 880 < eta.remaining(["sft", "eval"]) < 900
    eta.finish("sft", 1200.0)  # this machine trains at half the reference speed
    assert 500 < eta.remaining(["eval"]) < 600


def test_an_input_file_edited_in_place_is_named_not_reused(tmp_path, monkeypatch):
    """Fingerprints cover input *contents*: the same path with new contents is a changed input."""
    from rulewise.pipeline import runner

    ran: list[str] = []
    monkeypatch.setattr(runner, "run_stage", lambda ctx, name: ran.append(name))
    prompts = tmp_path / "my_prompts.jsonl"
    prompts.write_text('{"prompt": "How do I bake bread?", "label": "benign"}\n')
    path = _write(tmp_path, GOOD.replace('prompts: "@prompts/train.jsonl"', f"prompts: {prompts}"))
    out = tmp_path / "run"
    run_recipe(load_recipe(path), out=out)
    state = json.loads((out / STATE_FILE).read_text())
    assert str(prompts) in state["stages"]["bc"]["inputs"] and str(prompts) in state["files"]
    ran.clear()
    assert {o.status for o in run_recipe(load_recipe(path), out=out)} == {"cached"} and ran == []
    prompts.write_text(
        '{"prompt": "How do I bake bread?", "label": "BENIGN"}\n'
    )  # same path and size, new contents
    with pytest.raises(
        RulewiseError, match=f"stage 'bc': input file\\(s\\) changed since it ran: {prompts}"
    ) as info:
        run_recipe(load_recipe(path), out=out)
    assert "--redo bc" in info.value.hint
    outcomes = {o.name: o.status for o in run_recipe(load_recipe(path), out=out, redo=["bc"])}
    assert outcomes == {"prompts": "cached", "bc": "ran", "sft": "ran"}


def test_a_state_file_from_before_input_hashing_stays_valid(tmp_path, monkeypatch):
    from rulewise.pipeline import runner

    monkeypatch.setattr(runner, "run_stage", lambda ctx, name: None)
    path = _write(tmp_path, GOOD)
    out = tmp_path / "run"
    run_recipe(load_recipe(path), out=out)
    state = json.loads((out / STATE_FILE).read_text())
    legacy = fingerprints(load_recipe(path), with_inputs=False)
    for name, stage in state["stages"].items():  # as an older version wrote it
        stage.pop("inputs")
        stage["fingerprint"] = legacy[name]
    (out / STATE_FILE).write_text(json.dumps(state))
    assert {o.status for o in run_recipe(load_recipe(path), out=out)} == {"cached"}


def test_the_documented_new_stage_kind_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    """docs/architecture.md's example kind, executed as written: registered with one line, it
    validates, dry-runs and runs inside a recipe like a built-in kind."""
    import re

    from rulewise.pipeline.stages import STAGE_KINDS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    code = re.search(r"## Adding a stage kind.*?```python\n(.*?)```", doc, re.DOTALL).group(1)
    namespace: dict = {"__name__": "filter_stage"}
    exec(compile(code, "architecture.md", "exec", dont_inherit=True), namespace)  # noqa: S102 - the documented example, run as written
    monkeypatch.setitem(STAGE_KINDS, "filter", namespace["FilterStage"])
    path = _write(
        tmp_path,
        "name: f\nstages:\n  prompts:\n    kind: prompts\n    math_count: 0\n"
        "  filter:\n    kind: filter\n    prompts: '@prompts/train.jsonl'\n    categories: [privacy]\n",
    )
    recipe = load_recipe(path)
    assert any("reads" in line for line in dry_run(recipe, out=tmp_path / "run"))
    run_recipe(recipe, out=tmp_path / "run")
    kept = [
        json.loads(line) for line in (tmp_path / "run" / "filter" / "train.jsonl").read_text().splitlines()
    ]
    assert kept and {p["category"] for p in kept} == {"privacy"}


def test_the_ifpo_ablation_benchmark_is_a_valid_recipe(tmp_path, tiny_checkpoint):
    """benchmarks/ifpo_ablation.py builds its runs as a recipe; it validates and dry-runs."""
    import argparse
    import importlib.util

    import yaml

    from rulewise.data.prompt_set import write_prompt_set

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ifpo_ablation.py"
    spec = importlib.util.spec_from_file_location("ifpo_ablation", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_prompt_set(tmp_path / "prompts", math_count=2)
    args = argparse.Namespace(
        sft=tiny_checkpoint, seeds=2, steps=2, prompts_per_step=2, group=2, top_layers=1,
        learning_rate=1e-5, alpha=1.0, reward=[("benign_consult", 0.3)], eval_limit=4, max_new_tokens=8,
    )  # fmt: skip
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(module.ablation_recipe(args, tmp_path / "prompts"), sort_keys=False))
    recipe = load_recipe(path)
    assert [s for s in recipe.stages if s.startswith("rl-")] == [
        "rl-grpo-seed0", "rl-ifpo-seed0", "rl-grpo-seed1", "rl-ifpo-seed1"
    ]  # fmt: skip
    assert recipe.stages["rl-ifpo-seed1"].rewards.benign_consult == 0.3
    assert dry_run(recipe, out=tmp_path / "run")
