"""GRPO vs IFPO on the two-mode bandit of ``rulewise.rl.simulation`` (known optimum), plotted.

    .venv/bin/python benchmarks/ifpo_simulation.py [--seeds 20] [--steps 300] [--out runs/ifpo_simulation]

Two scenarios: *under-consulting* (the policy starts consulting 20% of the time; a consult on
a benign prompt costs 0.1 of reward) and *over-consulting* (it starts at 80%, as a BC student
that learnt to consult by reflex; a benign consult costs 0.3). For each, GRPO and IFPO at
alpha 0.5 / 1.0 with group and batch scope, averaged over seeds. Prints a table (consult
rates at steps 100 and the last, and the benign consult rate at the first step whose
simulated safety reaches 0.85) and writes ``ifpo_simulation.png`` and ``table.md``. About a
minute on one core.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SCENARIOS = {
    "under-consulting (start 20%, benign consult costs 0.1)": {
        "start_consult": 0.2,
        "benign_consult_reward": 0.8,
    },
    "over-consulting (start 80%, benign consult costs 0.3)": {
        "start_consult": 0.8,
        "benign_consult_reward": 0.6,
    },
}
SAFETY_LEVEL = 0.85


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/ifpo_simulation"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from rulewise.rl.advantages import IFPOSettings
    from rulewise.rl.simulation import SimulationConfig, at_safety, mean_traces, simulate

    torch.set_num_threads(1)
    variants = {
        "GRPO": None,
        "IFPO α=0.5 batch": IFPOSettings(alpha=0.5),
        "IFPO α=1 batch": IFPOSettings(alpha=1.0),
        "IFPO α=0.5 group": IFPOSettings(alpha=0.5, scope="group"),
        "IFPO α=1 group": IFPOSettings(alpha=1.0, scope="group"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(SCENARIOS), 2, figsize=(11, 4 * len(SCENARIOS)), squeeze=False)
    lines = [
        f"{args.seeds} seeds × {args.steps} steps, 8 prompts × 8 rollouts per step, lr 0.5.",
        "",
        "| scenario | estimator | consult harmful @100 / end | consult benign @100 / end | step safety ≥ 0.85 | benign consult there |",
        "|---|---|---|---|---|---|",
    ]
    mid = min(100, args.steps)
    for row, (scenario, overrides) in enumerate(SCENARIOS.items()):
        for name, settings in variants.items():
            configs = [SimulationConfig(steps=args.steps, seed=s, **overrides) for s in range(args.seeds)]
            trace = mean_traces([simulate(c, settings) for c in configs])
            reached = at_safety(trace, SAFETY_LEVEL)
            style = {"color": "black", "linewidth": 2} if settings is None else {}
            axes[row][0].plot(trace.consult_harmful, label=name, **style)
            axes[row][1].plot(trace.consult_benign, label=name, **style)
            lines.append(
                f"| {scenario} | {name} | {trace.consult_harmful[mid]:.2f} / {trace.consult_harmful[-1]:.2f} "
                f"| {trace.consult_benign[mid]:.2f} / {trace.consult_benign[-1]:.2f} "
                f"| {reached[0] if reached else '–'} | {f'{reached[1]:.2f}' if reached else '–'} |"
            )
        for col, split in enumerate(("harmful (optimum 1.0)", "benign look-alike (optimum 0.0)")):
            axes[row][col].set_title(f"{scenario}\nconsult rate on {split}", fontsize=9)
            axes[row][col].set_xlabel("step")
            axes[row][col].set_ylim(0, 1)
            axes[row][col].grid(alpha=0.3)
    axes[0][1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "ifpo_simulation.png", dpi=110)
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"wrote {args.out / 'ifpo_simulation.png'} and {args.out / 'table.md'}")


if __name__ == "__main__":
    main()
