import json
import struct
from pathlib import Path

import pytest

from rulewise.errors import RulewiseError
from rulewise.evaluation.report import compare_runs
from rulewise.evaluation.runner import BenchSpec, EvalConfig, run_eval
from rulewise.fileio import read_records
from rulewise.generation import Completion, LoopConfig, ToolUseGenerator
from rulewise.rules import build_retriever, load_rulebook, make_consult_tool

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
CALL = '<tool_call>\n{"name": "consult_safety_rules", "arguments": {"query": "%s"}}\n</tool_call>'


class PolicyBackend:
    """A deterministic 'model': consults and refuses on harmful-sounding prompts, answers maths."""

    def __init__(self, interrupt_on_call=None):
        self.prompts_seen = []
        self.calls = 0
        self.interrupt_on_call = interrupt_on_call

    def complete(self, prompts, max_new_tokens, stop_at_tool_call):
        self.calls += 1
        if self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt
        out = []
        for prompt in prompts:
            user = prompt.rsplit("<|im_start|>user\n", 1)[-1]
            self.prompts_seen.append(user)
            if "<tool_response>" in user:
                out.append(Completion("I can't help with that. I can explain safety instead.", 12, "eos"))
            elif any(w in user for w in ("hurt", "handgun", "weapon", "break into")):
                out.append(Completion(CALL % "harm", 20, "tool_call"))
            elif "apples" in user:
                out.append(Completion("<think>3 + 4</think>\nTom has 7 apples.", 9, "eos"))
            else:
                out.append(Completion("Here is a helpful answer.", 6, "eos"))
        return out


def make_generator(tokenizer, backend, batch_size=2):
    tool = make_consult_tool(build_retriever(load_rulebook()))
    return ToolUseGenerator(backend, tokenizer, tools=[tool], config=LoopConfig(batch_size=batch_size))


def config(**overrides):
    benches = [
        BenchSpec(name="strongreject", source=str(FIXTURES / "strongreject.csv")),
        BenchSpec(name="advbench", source=str(FIXTURES / "advbench.csv")),
        BenchSpec(name="xstest", source=str(FIXTURES / "xstest.csv")),
        BenchSpec(name="gsm8k", source=str(FIXTURES / "gsm8k.jsonl")),
    ]
    return EvalConfig(**{"model": "scripted", "benches": benches, **overrides})


def test_eval_writes_records_metrics_and_report(tmp_path, tiny_tokenizer):
    metrics = run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, PolicyBackend()))
    records = read_records(tmp_path / "results.jsonl")
    assert len(records) == 9 and len({r["id"] for r in records}) == 9
    by_id = {r["id"]: r for r in records}
    hurt = by_id["strongreject-1"]
    assert (
        hurt["consulted"]
        and hurt["consulted_rules"]
        and hurt["refused"]
        and hurt["verdict"] == "full_refusal"
    )
    assert [m["role"] for m in hurt["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert by_id["xstest-1"]["complied"] and not by_id["xstest-1"]["consulted"]
    assert by_id["gsm8k-1"]["correct"] is True and by_id["gsm8k-2"]["correct"] is False
    overall = metrics["overall"]
    # Harmful: 2 strongreject + 2 advbench ("weapon", "break into") + xstest-2 ("kill my neighbour": answered).
    assert overall["safety"]["value"] == pytest.approx(4 / 5)
    assert overall["compliance"]["value"] == 1.0 and overall["utility"]["value"] == 0.5
    assert overall["consult_rate_harmful"]["value"] == pytest.approx(4 / 5)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["overall"]["safety"] == overall["safety"] and saved["run"]["items"] == 9
    report = (tmp_path / "report.md").read_text()
    assert "| strongreject | 2 | 100.0%" in report and "| **all** | 9 |" in report
    assert json.loads((tmp_path / "run.json").read_text())["model"] == "scripted"


def test_interrupted_eval_resumes_without_losing_or_repeating_items(tmp_path, tiny_tokenizer):
    first = PolicyBackend(interrupt_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, first))
    assert not (tmp_path / "results.jsonl").exists()  # judging waits for the generation pass
    done_before = {r["id"] for r in read_records(tmp_path / "generations.jsonl")}
    assert 0 < len(done_before) < 9
    second = PolicyBackend()
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, second))
    records = read_records(tmp_path / "results.jsonl")
    assert len(records) == 9 and len({r["id"] for r in records}) == 9
    prompts_redone = {p.split("<|im_end|>")[0] for p in second.prompts_seen}
    finished_prompts = {r["prompt"] for r in records if r["id"] in done_before}
    assert not prompts_redone & finished_prompts  # nothing finished was generated again
    third = PolicyBackend()
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, third))
    assert third.calls == 0  # all done: no generation at all


def _tear_last_line(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:25])  # a write cut off by a kill


def test_torn_last_line_is_dropped_and_redone(tmp_path, tiny_tokenizer):
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, PolicyBackend()))
    results = tmp_path / "results.jsonl"
    _tear_last_line(results)
    backend = PolicyBackend()
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, backend))
    assert len(read_records(results)) == 9 and backend.calls == 0  # judged again from its generation
    _tear_last_line(tmp_path / "generations.jsonl")
    results.unlink()
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, backend))
    assert len(read_records(results)) == 9 and backend.calls >= 1  # the torn one generated again


def test_the_judge_is_not_called_while_conversations_are_generated(tmp_path, tiny_tokenizer, monkeypatch):
    from rulewise.evaluation import runner

    backend = PolicyBackend()
    calls_when_judged = []
    original = runner.judge_item

    def judge_item(item, traj, judge):
        calls_when_judged.append(backend.calls)
        return original(item, traj, judge)

    monkeypatch.setattr(runner, "judge_item", judge_item)
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, backend))
    assert len(calls_when_judged) == 9 and set(calls_when_judged) == {backend.calls}


def test_changed_configuration_is_refused(tmp_path, tiny_tokenizer):
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, PolicyBackend()))
    with pytest.raises(RulewiseError, match=r"different configuration \(max_new_tokens, use_tools\)"):
        run_eval(
            config(use_tools=False, max_new_tokens=5),
            tmp_path,
            generator=make_generator(tiny_tokenizer, PolicyBackend()),
        )


def test_a_run_from_before_a_setting_existed_resumes_while_that_setting_is_default(tmp_path, tiny_tokenizer):
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, PolicyBackend()))
    path = tmp_path / "run.json"
    written = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in written.items() if k != "backend"}))  # an older run
    run_eval(config(), tmp_path, generator=make_generator(tiny_tokenizer, PolicyBackend()))
    with pytest.raises(RulewiseError, match=r"different configuration \(backend\)"):
        run_eval(config(backend="vllm"), tmp_path, generator=make_generator(tiny_tokenizer, PolicyBackend()))


def test_a_retrained_model_is_not_resumed_from_old_results(tmp_path, tiny_checkpoint, tiny_tokenizer):
    import shutil

    from conftest import build_tiny_model

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model_dir)
    settings = config(model=str(model_dir), max_new_tokens=2, max_tool_calls=0)
    run_eval(settings, tmp_path / "run", batch_size=4, precision="fp32")
    run_eval(settings, tmp_path / "run", batch_size=4, precision="fp32")  # same weights: resumes
    retrained = build_tiny_model(len(tiny_tokenizer), seed=1)
    retrained.save_pretrained(model_dir)  # as `rulewise train sft` would after more steps
    with pytest.raises(RulewiseError, match="model_fingerprint"):
        run_eval(settings, tmp_path / "run", batch_size=4, precision="fp32")


def test_bad_benchmark_fails_before_anything_is_written(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("wrong,columns\n1,2\n")
    with pytest.raises(RulewiseError, match="missing column"):
        run_eval(EvalConfig(benches=[BenchSpec(name="advbench", source=str(bad))]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_cli_eval_and_report_on_a_tiny_model(tmp_path, tiny_checkpoint, cli):
    benches = [
        "-b",
        f"strongreject={FIXTURES / 'strongreject.csv'}",
        "-b",
        f"xstest={FIXTURES / 'xstest.csv'}",
        "-b",
        f"gsm8k={FIXTURES / 'gsm8k.jsonl'}",
    ]
    common = ["--model", str(tiny_checkpoint), "--max-new-tokens", "4", "--precision", "fp32", *benches]
    code, out, _ = cli("eval", *common, "--out", str(tmp_path / "tools"))
    assert code == 0 and "wrote" in out and "| **all** | 7 |" in out
    assert json.loads((tmp_path / "tools" / "run.json").read_text())["repetition_penalty"] == 1.0
    no_tools = ["--no-tools", "--repetition-penalty", "1.2", "--out", str(tmp_path / "no-tools")]
    assert cli("eval", *common, *no_tools)[0] == 0
    assert json.loads((tmp_path / "no-tools" / "run.json").read_text())["repetition_penalty"] == 1.2
    code, out, _ = cli(
        "report", str(tmp_path / "tools"), str(tmp_path / "no-tools"), "--out", str(tmp_path / "cmp")
    )
    assert code == 0 and "| tools | 7 |" in out and "| no-tools | 7 |" in out
    cmp = tmp_path / "cmp"
    width, height = png_size(cmp / "safety_utility.png")
    assert width > 300 and height > 300
    png_size(cmp / "consult_rate.png")
    assert (cmp / "safety_utility.svg").read_text().lstrip().startswith("<?xml")
    html = (cmp / "viewer.html").read_text()
    assert html.startswith("<!doctype html>") and 'id="verdict"' in html and 'id="consulted"' in html
    data = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert len(data) == 14 and {r["run"] for r in data} == {"tools", "no-tools"}
    assert "## strongreject" in (cmp / "report.md").read_text()


def test_report_rejects_unfinished_runs(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(RulewiseError, match="no metrics.json"):
        compare_runs([tmp_path / "run"], tmp_path / "out")


def test_viewer_escapes_script_tags(tmp_path):
    from rulewise.evaluation.report import write_viewer

    write_viewer(tmp_path / "v.html", [{"prompt": "</script><script>alert(1)</script>", "messages": []}])
    html = (tmp_path / "v.html").read_text()
    payload = html.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(payload)[0]["prompt"] == "</script><script>alert(1)</script>"


def test_samples_need_a_temperature_and_give_k_records_per_prompt(tmp_path, tiny_tokenizer):
    with pytest.raises(RulewiseError, match="at temperature 0 would be 3 copies"):
        run_eval(
            config(samples=3), tmp_path / "greedy", generator=make_generator(tiny_tokenizer, PolicyBackend())
        )
    metrics = run_eval(
        config(samples=2, temperature=0.7),
        tmp_path,
        generator=make_generator(tiny_tokenizer, PolicyBackend()),
    )
    records = read_records(tmp_path / "results.jsonl")
    assert len(records) == 18 and {r["sample"] for r in records} == {0, 1}
    assert {r["id"] for r in records if r["item_id"] == "strongreject-1"} == {
        "strongreject-1#s0",
        "strongreject-1#s1",
    }
    # the scripted model answers the same way every time: avg@2 = worst-of-2
    overall = metrics["overall"]
    assert overall["safety"]["value"] == pytest.approx(4 / 5) and overall["safety"]["n"] == 10
    assert (
        overall["safety_worst_of_k"]["value"] == pytest.approx(4 / 5)
        and overall["safety_worst_of_k"]["n"] == 5
    )
    assert "safety worst@k" in (tmp_path / "report.md").read_text()
    compared = compare_runs([tmp_path], tmp_path / "compare")["report"].read_text()
    assert "paired discr." in compared and "Consultation by category" in compared
    assert "answer follows stated verdict" in compared
