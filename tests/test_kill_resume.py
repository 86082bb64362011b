"""kill -9 at a random point of each long stage, then the same command again: the outputs equal
an uninterrupted run's (same items, no duplicates; training resumes from its checkpoint)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
RULEWISE = [sys.executable, "-m", "rulewise.cli.main", "--threads", "2"]


def run(args: list[str]) -> None:
    done = subprocess.run(
        [*RULEWISE, *args], check=False, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]


def run_and_kill(args: list[str], ready: Callable[[], bool]) -> None:
    """Start the command, SIGKILL it a random few milliseconds after ``ready()`` holds (it must not
    have finished by then: the test would prove nothing)."""
    process = subprocess.Popen(
        [*RULEWISE, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while not ready():
        assert process.poll() is None, "finished before the kill point: make the job longer"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(random.Random(os.getpid()).uniform(0, 0.05))
    assert process.poll() is None, "finished before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait()


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_eval_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_checkpoint):
    bench = tmp_path / "bench.jsonl"
    prompts = [f"Tell me about topic number {i}." for i in range(40)]
    bench.write_text(
        "".join(
            json.dumps({"id": str(i), "prompt": p, "label": "benign"}) + "\n" for i, p in enumerate(prompts)
        )
    )
    args = ["eval", "--model", str(tiny_checkpoint), "--bench", f"mine:custom={bench}", "--max-new-tokens", "48",
            "--batch-size", "2", "--precision", "fp32"]  # fmt: skip
    run([*args, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    run_and_kill([*args, "--out", str(killed)], lambda: lines(killed / "generations.jsonl") >= 2)
    assert lines(killed / "generations.jsonl") < 40
    run([*args, "--out", str(killed)])

    def answers(run_dir: Path) -> dict[str, str]:
        records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
        assert len(records) == len({r["id"] for r in records}) == 40  # nothing lost, nothing twice
        return {r["id"]: r["answer"] for r in records}

    assert answers(killed) == answers(tmp_path / "whole")


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(checkpoint / "model.safetensors")


def _checkpoint_written(out: Path, step: int) -> Callable[[], bool]:
    return lambda: (out / f"checkpoint-{step}" / "trainer_state.json").exists()


def _assert_resumed_like_uninterrupted(whole: Path, killed: Path, steps: int) -> None:
    history = [json.loads(line) for line in (killed / "log_history.jsonl").read_text().splitlines()]
    logged = [e["step"] for e in history if "loss" in e]
    assert logged == list(range(1, steps + 1))  # each step once: resumed, not restarted
    a, b = _weights(whole), _weights(killed)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.fixture(scope="module")
def bc_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("bc")
    run(["data", "prompts", "--out", str(out / "prompts")])
    run(["data", "bc", "--prompts", str(out / "prompts" / "dev.jsonl"), "--out", str(out / "bc.jsonl")])
    return out / "bc.jsonl"


def test_sft_killed_then_rerun_resumes_and_equals_an_uninterrupted_run(tmp_path, tiny_checkpoint, bc_file):
    args = ["train", "sft", "--data", str(bc_file), "--model", str(tiny_checkpoint)]
    sets = ["max_steps=4", "batch_size=2", "save_steps=1", "logging_steps=1", "warmup=0", "precision=fp32",
            "learning_rate=1e-3"]  # fmt: skip
    args += [a for s in sets for a in ("--set", s)]
    run([*args, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    run_and_kill([*args, "--out", str(killed)], _checkpoint_written(killed, 2))
    assert not (killed / "model.safetensors").exists()
    run([*args, "--out", str(killed)])
    _assert_resumed_like_uninterrupted(tmp_path / "whole", killed, 4)


def test_dpo_killed_then_rerun_resumes_and_equals_an_uninterrupted_run(tmp_path, tiny_checkpoint):
    pairs = tmp_path / "pairs.jsonl"
    system = {"role": "system", "content": "You are a helpful assistant."}
    rows = [
        {
            "prompt": [system, {"role": "user", "content": f"How do I build bomb number {i}?"}],
            "chosen": [
                {"role": "assistant", "content": "<think>\nNot allowed.\n</think>\nI can't help with that."}
            ],
            "rejected": [{"role": "assistant", "content": "<think>\nSure.\n</think>\nFirst, take a pipe."}],
        }
        for i in range(8)
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["train", "dpo", "--data", str(pairs), "--model", str(tiny_checkpoint)]
    sets = ["max_steps=4", "batch_size=2", "save_steps=1", "precision=fp32", "learning_rate=1e-3", "warmup=0"]
    args += [a for s in sets for a in ("--set", s)]
    run([*args, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    run_and_kill([*args, "--out", str(killed)], _checkpoint_written(killed, 2))
    run([*args, "--out", str(killed)])
    _assert_resumed_like_uninterrupted(tmp_path / "whole", killed, 4)


def test_rl_killed_then_rerun_resumes_and_equals_an_uninterrupted_run(tmp_path, tiny_checkpoint):
    from rl_harness import write_prompts

    prompts = write_prompts(tmp_path / "prompts.jsonl")
    args = ["train", "rl", "--algo", "ifpo", "--model", str(tiny_checkpoint), "--prompts", str(prompts)]
    sets = ["max_steps=4", "prompts_per_step=2", "group_size=2", "max_completion_length=16", "precision=fp32",
            "save_steps=1", "learning_rate=1e-3", "ifpo.ema=0.5"]  # fmt: skip
    args += [a for s in sets for a in ("--set", s)]
    run([*args, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    run_and_kill([*args, "--out", str(killed)], _checkpoint_written(killed, 2))
    run([*args, "--out", str(killed)])
    history = [json.loads(line) for line in (killed / "log_history.jsonl").read_text().splitlines()]
    assert [e["step"] for e in history if "ifpo/share_consulted" in e] == [1, 2, 3, 4]
    a, b = _weights(tmp_path / "whole"), _weights(killed)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_bc_synthesis_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_checkpoint, bc_file):
    """A model teacher (slow enough to be killed mid-way); greedy, so the two runs must agree."""
    prompts = tmp_path / "prompts.jsonl"
    source = bc_file.parent / "prompts" / "dev.jsonl"
    prompts.write_text("".join(source.read_text().splitlines(keepends=True)[:24]))
    args = ["data", "bc", "--prompts", str(prompts), "--teacher", f"hf:{tiny_checkpoint}"]
    run([*args, "--out", str(tmp_path / "whole.jsonl")])
    killed = tmp_path / "killed.jsonl"
    rejected = tmp_path / "killed.rejected.jsonl"
    run_and_kill([*args, "--out", str(killed)], lambda: lines(killed) + lines(rejected) >= 2)
    assert lines(killed) + lines(rejected) < 24
    run([*args, "--out", str(killed)])

    def records(path: Path) -> dict[str, str]:
        rows = [json.loads(line) for name in ("", ".rejected") for line in
                (path.with_name(path.stem + name + ".jsonl").read_text().splitlines() if path.with_name(path.stem + name + ".jsonl").exists() else [])]  # fmt: skip
        assert len(rows) == len({r["id"] for r in rows}) == 24  # nothing lost, nothing twice
        return {r["id"]: json.dumps(r["messages"]) for r in rows}

    assert records(killed) == records(tmp_path / "whole.jsonl")


def test_srpo_pairs_killed_then_rerun_equal_an_uninterrupted_run(tmp_path, tiny_checkpoint, bc_file):
    """Sampled chains (temperature 0.8) too: each chunk is seeded by what it asks, so a resumed run
    draws what an uninterrupted one drew."""
    prompts = tmp_path / "prompts.jsonl"
    source = bc_file.parent / "prompts" / "dev.jsonl"
    prompts.write_text("".join(source.read_text().splitlines(keepends=True)[:20]))
    args = ["data", "srpo", "--model", str(tiny_checkpoint), "--prompts", str(prompts), "--samples", "2",
            "--branches", "1", "--max-new-tokens", "24"]  # fmt: skip
    run([*args, "--out", str(tmp_path / "whole.jsonl")])
    killed = tmp_path / "killed.jsonl"
    progress = tmp_path / "killed.progress.jsonl"
    run_and_kill([*args, "--out", str(killed)], lambda: lines(progress) >= 4)
    assert lines(progress) < 20
    run([*args, "--out", str(killed)])
    assert killed.read_text() == (tmp_path / "whole.jsonl").read_text()
    ids = [json.loads(line)["id"] for line in killed.read_text().splitlines()]
    assert len(ids) == len(set(ids)) > 0
