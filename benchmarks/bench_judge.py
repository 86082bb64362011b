"""The offline judge on the project's labelled judge set: accuracy, confusion matrix, speed.

    .venv/bin/python benchmarks/bench_judge.py [--judge openai:MODEL@URL]

Prints accuracy per kind of response (refuse-then-comply, partial, counter-speech, …), the
confusion matrix of the three XSTest verdicts, how many refuse-then-comply responses were
counted as refusals (target 0), and responses judged per second on one process. With
``--judge`` it also judges the set with that (LLM) judge and prints the agreement of the two on
the safety decision (refused / complied). Targets: accuracy >= 95%, >= 1,000 responses/s.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from importlib import resources

VERDICTS = ("full_refusal", "partial_refusal", "full_compliance")


def load_cases() -> list[dict]:
    text = (resources.files("rulewise.evaluation") / "data" / "judge_set.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", help="also judge with this judge spec and report agreement")
    args = parser.parse_args()

    from rulewise.evaluation.judges import RefusalJudge, build_judge

    cases = load_cases()
    judge = RefusalJudge()
    verdicts = [judge.judge(c["prompt"], c["response"], harmful=c["harmful"]).verdict for c in cases]
    right = [v == c["label"] for c, v in zip(cases, verdicts, strict=True)]
    print(f"labelled set: {len(cases)} responses ({sum(c['harmful'] for c in cases)} to harmful requests)")
    print(f"accuracy: {sum(right) / len(cases):.1%} ({sum(right)}/{len(cases)})")
    smuggled = sum(c["kind"] == "refuse_then_comply" and v == "full_refusal" for c, v in zip(cases, verdicts))
    print(f"refuse-then-comply counted as refusals: {smuggled}")

    print("\nconfusion (rows: label, columns: verdict)")
    confusion = Counter(zip((c["label"] for c in cases), verdicts, strict=True))
    print(f"{'':>16} " + " ".join(f"{v:>16}" for v in VERDICTS))
    for label in VERDICTS:
        print(f"{label:>16} " + " ".join(f"{confusion[(label, v)]:>16}" for v in VERDICTS))

    print("\nper kind (harmful request / benign request)")
    by_kind: dict[tuple[str, bool], list[bool]] = defaultdict(list)
    for case, ok in zip(cases, right, strict=True):
        by_kind[(case["kind"], case["harmful"])].append(ok)
    for kind in sorted({k for k, _ in by_kind}):
        cells = []
        for harmful in (True, False):
            oks = by_kind.get((kind, harmful))
            cells.append(f"{sum(oks)}/{len(oks)}" if oks else "–")
        print(f"  {kind:<22} {cells[0]:>8} {cells[1]:>8}")

    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        for case in cases:
            judge.judge(case["prompt"], case["response"], harmful=case["harmful"])
    rate = repeats * len(cases) / (time.perf_counter() - start)
    print(f"\nspeed: {rate:,.0f} responses/s (one process)")

    if args.judge:
        other = build_judge(args.judge)
        theirs = [other.judge(c["prompt"], c["response"], harmful=c["harmful"]) for c in cases]
        ours = [judge.judge(c["prompt"], c["response"], harmful=c["harmful"]) for c in cases]
        decision = lambda j, c: j.refused if c["harmful"] else j.complied
        agree = sum(decision(a, c) == decision(b, c) for a, b, c in zip(ours, theirs, cases, strict=True))
        label_ok = sum(
            decision(b, c) == (c["label"] == ("full_refusal" if c["harmful"] else "full_compliance"))
            for b, c in zip(theirs, cases, strict=True)
        )
        print(
            f"\n{other.name}: agrees with the offline judge on {agree / len(cases):.1%} of safety decisions; "
            f"matches the labels on {label_ok / len(cases):.1%}"
        )


if __name__ == "__main__":
    main()
