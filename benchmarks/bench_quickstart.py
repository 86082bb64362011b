"""The quickstart's targets: wall time, peak memory, and what its models learnt.

    .venv/bin/python benchmarks/bench_quickstart.py [--out runs/bench_quickstart] [--budget fast]
    .venv/bin/python benchmarks/bench_quickstart.py --analyse runs/quickstart   # figures of a finished run

Runs ``rulewise quickstart`` as a child process in a fresh output directory, samples the
resident memory of the whole process tree every half second, and prints:

* wall time (target for ``--budget fast`` on 2 CPU cores: ≤ 15 minutes) and peak memory (≤ 8 GiB);
* refusal of harmful dev prompts, base vs RL model (target: clearly more for RL);
* compliance with benign look-alike dev prompts, SFT vs RL model (target: RL ≥ SFT).

Figures only — nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def share(records: list[dict], kind_prefix: str, key: str) -> tuple[int, int]:
    """How many dev records of a prompt kind (ids look like 'dev-lookalike-0042') have ``key`` true."""
    chosen = [r for r in records if r["id"].removeprefix("dev-").startswith(kind_prefix)]
    return sum(bool(r[key]) for r in chosen), len(chosen)


def dev_records(run: Path) -> list[dict]:
    lines = (run / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["benchmark"] == "dev"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_quickstart"))
    parser.add_argument("--budget", default="fast", choices=["fast", "full"])
    parser.add_argument(
        "--keep", action="store_true", help="continue an existing --out instead of starting over"
    )
    parser.add_argument(
        "--analyse", type=Path, help="only print the model figures of a finished quickstart directory"
    )
    args = parser.parse_args()
    if args.analyse is not None:
        print_outcomes(args.analyse)
        return
    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)

    command = [
        sys.executable,
        "-m",
        "rulewise.cli.main",
        "quickstart",
        "--out",
        str(args.out),
        "--budget",
        args.budget,
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command)
    watched = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        peak = max(peak, tree_rss(watched))
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"quickstart failed with exit code {child.returncode}")

    print(
        f"\nquickstart --budget {args.budget}: {seconds / 60:.1f} min wall, peak memory {peak / 2**30:.2f} GiB"
    )
    print_outcomes(args.out)


def print_outcomes(out: Path) -> None:
    runs = {name: out / f"eval-{name}" for name in ("base", "sft", "rl")}
    refused = {name: share(dev_records(run), "harmful", "refused") for name, run in runs.items()}
    jailbreaks = {name: share(dev_records(run), "jailbreak", "refused") for name, run in runs.items()}
    lookalikes = {name: share(dev_records(run), "lookalike", "complied") for name, run in runs.items()}
    for name in runs:
        (r, n), (j, m), (c, k) = refused[name], jailbreaks[name], lookalikes[name]
        print(
            f"{name:>4}: refused {r}/{n} direct + {j}/{m} jailbreak harmful dev prompts; "
            f"complied with {c}/{k} benign look-alikes"
        )
    harmful = {name: refused[name][0] + jailbreaks[name][0] for name in runs}
    print(f"target RL refuses more harmful than base: {harmful['rl']} vs {harmful['base']}")
    print(f"target RL look-alike compliance ≥ SFT: {lookalikes['rl'][0]} vs {lookalikes['sft'][0]}")


if __name__ == "__main__":
    main()
