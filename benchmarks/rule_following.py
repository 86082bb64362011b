"""Does a model follow an edited rulebook without retraining? (rulewise.evaluation.rule_following)

Evaluates MODEL on the same prompts under the original rulebook and under each edit (a rule
removed, an allowed clause added, a new forbidden topic), then prints, per edit, how many
prompts the edit affects (the tool's verdict on them changes), the share of those whose answer
follows the new verdict, and the share of the unaffected ones whose answer changed anyway.
Every run is a resumable ``rulewise eval`` directory under --out.

    .venv/bin/python benchmarks/rule_following.py --model runs/quickstart/sft \\
        --bench dev:custom=runs/quickstart/data/prompts/dev.jsonl --out runs/rule-following
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rulewise.evaluation.benchmarks import parse_bench_spec
from rulewise.evaluation.rule_following import (
    answer_outcomes,
    edit_effect,
    load_edits,
    rulebook_verdicts,
    write_edited,
)
from rulewise.evaluation.runner import BenchSpec, EvalConfig, load_items, run_eval
from rulewise.fileio import read_records
from rulewise.rules.loading import default_rulebook_path


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="checkpoint directory or 'default'")
    parser.add_argument("--bench", action="append", required=True, help="as for rulewise eval --bench")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rules", default=str(default_rulebook_path()), help="the original rulebook")
    parser.add_argument(
        "--edits", help="YAML list of edits (default: src/rulewise/evaluation/data/rule_edits.yaml)"
    )
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    edits = load_edits(args.edits)
    benches = [BenchSpec(**parse_bench_spec(spec)) for spec in args.bench]
    base = EvalConfig(model=args.model, benches=benches, limit=args.limit, rulebook=args.rules)
    prompts = {item.id: item.prompt for item in load_items(base) if item.task != "math"}

    def answers(config: EvalConfig, name: str) -> dict[str, str]:
        run_eval(config, args.out / name)
        return answer_outcomes(read_records(args.out / name / "results.jsonl"))

    before_answers = answers(base, "original")
    before_verdicts = rulebook_verdicts(prompts, args.rules)
    rows = []
    for index, edit in enumerate(edits):
        path = write_edited(args.rules, edit, args.out / "rules" / f"edit{index}.yaml")
        config = base.model_copy(update={"rulebook": str(path)})
        effect = edit_effect(
            edit.name,
            before_verdicts,
            rulebook_verdicts(prompts, path),
            before_answers,
            answers(config, f"edit{index}"),
        )
        rows.append(effect)

    print(f"\nmodel {args.model} · {len(prompts)} prompts · benches {', '.join(args.bench)}\n")
    print("| edit | affected prompts | follow the edit | unaffected prompts that changed |")
    print("|---|---|---|---|")
    for e in rows:
        print(
            f"| {e.name} | {e.affected} | {share(e.followed, e.affected)} | {share(e.changed, e.unaffected)} |"
        )
    affected, followed = sum(e.affected for e in rows), sum(e.followed for e in rows)
    unaffected, changed = sum(e.unaffected for e in rows), sum(e.changed for e in rows)
    print(f"| all edits | {affected} | {share(followed, affected)} | {share(changed, unaffected)} |")


if __name__ == "__main__":
    main()
