"""The ablation that motivates IFPO: GRPO vs IFPO from the same SFT checkpoint, same steps, several seeds.

    .venv/bin/python benchmarks/ifpo_ablation.py --sft runs/quickstart/sft [--out runs/ifpo_ablation] [--seeds 3]

It writes a recipe (``OUT/ablation.yaml``: one ``rl`` stage per algorithm and seed, one
``eval`` stage per model, a ``report``) and runs it with ``rulewise run``'s runner, so every
stage is cached and resumes after an interruption. For each seed both runs use the same
prompts, seed, rewards and number of steps; they differ only in ``algo``. Reported per run:
the consultation rate over training on harmful and on benign prompts, IFPO's mode weights,
and safety / compliance / paired discrimination / consultation rates on a seeded sample of
the dev split's safety prompts (harmful, jailbreak, look-alike and plain benign, twins kept
together; maths is left out); then per algorithm the pooled figures over seeds with bootstrap
intervals. Writes ``ablation.md`` and ``ablation.png`` under --out. The SFT checkpoint is an
input: train it first (the quickstart's ``OUT/sft``, or ``rulewise run ascl``'s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

ALGOS = ("grpo", "ifpo")


def safety_split(prompts: Path) -> Path:
    """The dev prompts without the maths problems (long answers, and not what IFPO is about)."""
    path = prompts / "dev_safety.jsonl"
    lines = (prompts / "dev.jsonl").read_text(encoding="utf-8").splitlines()
    path.write_text(
        "".join(line + "\n" for line in lines if json.loads(line)["kind"] != "math"), encoding="utf-8"
    )
    return path


def ablation_recipe(args: argparse.Namespace, prompts: Path) -> dict:
    """GRPO and IFPO runs per seed, an evaluation of each and of the SFT model, one report."""
    runs = {f"{algo}-seed{seed}": (algo, seed) for seed in range(args.seeds) for algo in ALGOS}
    stages: dict[str, dict] = {}
    for name, (algo, seed) in runs.items():  # training first: a failure shows before evaluation time is spent
        stages[f"rl-{name}"] = {
            "kind": "rl", "algo": algo, "model": str(args.sft), "prompts": str(prompts / "train.jsonl"),
            "max_steps": args.steps, "prompts_per_step": args.prompts_per_step, "group_size": args.group,
            "train_top_layers": args.top_layers, "learning_rate": args.learning_rate,
            "ifpo": {"alpha": args.alpha}, "rewards": dict(args.reward or {}),
            "save_steps": max(1, args.steps // 2), "seed": seed,
        }  # fmt: skip
    bench = [f"dev:custom@{args.eval_limit}={safety_split(prompts)}"]
    stages["eval-sft"] = {"kind": "eval", "label": "sft", "model": str(args.sft), "benches": bench,
                          "max_new_tokens": args.max_new_tokens}  # fmt: skip
    for name in runs:
        stages[f"eval-{name}"] = {"kind": "eval", "label": name, "model": f"@rl-{name}", "benches": bench,
                                  "max_new_tokens": args.max_new_tokens}  # fmt: skip
    stages["report"] = {
        "kind": "report",
        "runs": [f"@{stage}" for stage in stages if stage.startswith("eval-")],
    }
    return {"name": "ifpo-ablation", "description": "GRPO vs IFPO from one SFT model", "stages": stages}


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log_history.jsonl").read_text().splitlines()]


def plot(out: Path, histories: dict[str, list[dict]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = [
        ("consult_rate/harmful", "consultation rate, harmful prompts"),
        ("consult_rate/benign", "consultation rate, benign prompts"),
        ("reward", "mean reward"),
    ]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for name, entries in histories.items():
            points = [(e["step"], e[key]) for e in entries if key in e]
            algo = name.split("-")[0]
            ax.plot(
                [s for s, _ in points], [v for _, v in points], marker="o", markersize=3,
                color="tab:blue" if algo == "grpo" else "tab:orange", alpha=0.8, label=name.upper(),
            )  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out / "ablation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(
    out: Path, evals: dict[str, Path], histories: dict[str, list[dict]], seconds: dict[str, float]
) -> str:
    """One row per run, then one per algorithm pooled over seeds (bootstrap CIs over the pooled records)."""
    from rulewise.evaluation.metrics import compute_metrics
    from rulewise.evaluation.report import format_estimate
    from rulewise.fileio import read_records

    def mean(entries: list[dict], key: str) -> str:
        values = [e[key] for e in entries if key in e]
        return f"{sum(values) / len(values):.2f}" if values else "–"

    keys = ("safety", "compliance", "paired_discrimination", "consult_rate_harmful", "consult_rate_benign")
    header = (
        "| run | safety | compliance | paired discr. | consults, harmful | consults, benign "
        "| train consult rate harmful / benign (mean over steps) | IFPO weight consulted / direct | RL minutes |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]

    def row(name: str, overall: dict, entries: list[dict] | None, minutes: float | None) -> str:
        cells = [name] + [
            format_estimate(overall[key], "rate±n" if key == "paired_discrimination" else "rate±")
            for key in keys
        ]
        if entries:
            cells.append(f"{mean(entries, 'consult_rate/harmful')} / {mean(entries, 'consult_rate/benign')}")
            cells.append(f"{mean(entries, 'ifpo/weight/consulted')} / {mean(entries, 'ifpo/weight/direct')}")
            cells.append(f"{minutes:.1f}" if minutes is not None else "–")
        else:
            cells += ["–", "–", "–"]
        return "| " + " | ".join(cells) + " |"

    for name, run in evals.items():
        overall = json.loads((run / "metrics.json").read_text())["overall"]
        lines.append(
            row(name, overall, histories.get(name), seconds.get(name, 0) / 60 if name in seconds else None)
        )
    for algo in ALGOS:
        runs = [name for name in evals if name.startswith(f"{algo}-seed")]
        if len(runs) > 1:
            pooled = [r for name in runs for r in read_records(evals[name] / "results.jsonl")]
            overall = compute_metrics(pooled)["overall"]
            entries = [e for name in runs for e in histories[name]]
            minutes = sum(seconds[name] for name in runs) / len(runs) / 60
            lines.append(row(f"**{algo}, {len(runs)} seeds pooled**", overall, entries, minutes))
    text = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sft", type=Path, required=True, help="the SFT checkpoint both algorithms start from"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/ifpo_ablation"))
    parser.add_argument("--seeds", type=int, default=1, help="RL seeds per algorithm (0, 1, …)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument(
        "--top-layers", type=int, default=4, help="train only the last N blocks (CPU speed-up)"
    )
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument(
        "--reward", type=lambda s: (s.split("=")[0], float(s.split("=")[1])), action="append",
        help="a reward weight, e.g. --reward benign_consult=0.3 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--eval-limit", type=int, default=32, help="dev safety prompts per evaluation")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="per turn, in the evaluations")
    args = parser.parse_args()
    if not (args.sft / "config.json").is_file():
        parser.error(f"--sft {args.sft}: no checkpoint there (train one first, e.g. rulewise quickstart)")

    from rulewise.data.prompt_set import write_prompt_set
    from rulewise.pipeline.recipe import load_recipe
    from rulewise.pipeline.runner import STATE_FILE, run_recipe

    out = args.out
    prompts = out / "data" / "prompts"
    if not (prompts / "train.jsonl").is_file():
        write_prompt_set(prompts)
    recipe_path = out / "ablation.yaml"
    recipe_path.write_text(yaml.safe_dump(ablation_recipe(args, prompts), sort_keys=False), encoding="utf-8")
    run_recipe(load_recipe(recipe_path), out=out)
    state = json.loads((out / STATE_FILE).read_text())["stages"]
    runs = [name.removeprefix("rl-") for name in state if name.startswith("rl-")]
    histories = {name: history(out / f"rl-{name}") for name in runs}
    seconds = {name: state[f"rl-{name}"]["seconds"] for name in runs}
    evals = {name: out / f"eval-{name}" for name in ("sft", *runs)}
    print(table(out, evals, histories, seconds))
    print(f"plot: {plot(out, histories)}")


if __name__ == "__main__":
    main()
