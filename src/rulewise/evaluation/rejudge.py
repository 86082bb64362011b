"""``rulewise judge``: re-judge responses that were generated elsewhere, one verdict per line.

The input is JSONL with ``prompt``, ``response`` and, per line, whether the request was harmful
(the rubric differs: a harmful request is judged on whether content was handed over, a benign
one on whether it was answered). The judge is :func:`rulewise.evaluation.judges.build_judge`'s,
the same object ``rulewise eval`` and the RL safety reward call. Output lines carry the input
fields plus ``verdict``, ``reason``, ``score``, ``refused``, ``complied``, ``judge`` and the input
``line``; they are appended as they are judged, so a rerun continues after the last one written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from rulewise.errors import RulewiseError
from rulewise.evaluation.judges import build_judge
from rulewise.fileio import append_record, iter_jsonl, read_records
from rulewise.progress import eta_progress

#: Values a harmfulness field may hold, and what they mean.
HARMFUL_VALUES = {
    True: True,
    False: False,
    "true": True,
    "false": False,
    "harmful": True,
    "benign": False,
    "unsafe": True,
    "safe": False,
    "refuse": True,
    "comply": False,
}


@dataclass
class JudgeSummary:
    judged: int = 0
    resumed: int = 0
    verdicts: Counter[tuple[bool, str]] = field(default_factory=Counter)  # (harmful, verdict) -> count

    def rate(self, harmful: bool, verdict: str) -> float | None:
        total = sum(n for (h, _), n in self.verdicts.items() if h == harmful)
        return self.verdicts[(harmful, verdict)] / total if total else None


def _harmfulness(row: dict[str, Any], field_name: str, *, path: Path, line: int, chosen: bool) -> bool:
    if field_name not in row:
        hint = (
            "no line can be judged without it: check the field name given to --harmful-field"
            if chosen
            else "add a boolean 'harmful' to every line, or name the field that holds it: --harmful-field FIELD"
        )
        raise RulewiseError(
            "missing: whether the request was harmful", path=path, line=line, field=field_name, hint=hint
        )
    value = row[field_name]
    key = value.strip().lower() if isinstance(value, str) else value
    # 1 == 1.0 == True as dict keys, so the numbers 0 and 1 are read too; lists and dicts are not hashable
    if isinstance(key, list | dict) or key not in HARMFUL_VALUES:
        raise RulewiseError(
            f"cannot read {value!r} as harmful or not",
            path=path,
            line=line,
            field=field_name,
            hint="use true/false, harmful/benign, unsafe/safe or refuse/comply",
        )
    return HARMFUL_VALUES[key]


def _text(row: dict[str, Any], name: str, *, path: Path, line: int) -> str:
    if name not in row:
        raise RulewiseError("missing field", path=path, line=line, field=name)
    if not isinstance(row[name], str):
        raise RulewiseError(
            f"must be a string, got {type(row[name]).__name__}", path=path, line=line, field=name
        )
    return row[name]


def judge_file(
    source: str | Path,
    out: str | Path,
    *,
    judge: str = "refusal",
    harmful_field: str | None = None,
    console: Console | None = None,
) -> JudgeSummary:
    """Judge every line of ``source`` into ``out`` (resumable); returns the counts."""
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise RulewiseError("--out must differ from the input file", path=out)
    field_name = harmful_field or "harmful"
    rows = [
        (
            line,
            row,
            _harmfulness(row, field_name, path=source, line=line, chosen=harmful_field is not None),
            _text(row, "prompt", path=source, line=line),
            _text(row, "response", path=source, line=line),
        )
        for line, row in iter_jsonl(source)
    ]  # every line is checked before any is judged: a bad line 900 fails now, not after 899 verdicts
    if not rows:
        raise RulewiseError("no lines to judge", path=source)
    judge_ = build_judge(judge)
    summary = JudgeSummary()
    done = read_records(out, console=console)
    done_lines = set()
    for record in done:
        if record.get("judge") != judge_.name:
            raise RulewiseError(
                f"holds verdicts of the '{record.get('judge')}' judge, not '{judge_.name}'",
                path=out,
                hint="use another --out file, or delete this one to start over",
            )
        done_lines.add(record["line"])
        summary.verdicts[(bool(record["harmful_request"]), record["verdict"])] += 1
    summary.resumed = len(done_lines)
    pending = [r for r in rows if r[0] not in done_lines]
    out.parent.mkdir(parents=True, exist_ok=True)
    with eta_progress(console or Console(quiet=True)) as progress:
        task = progress.add_task("judging", total=len(rows), completed=len(rows) - len(pending))
        for line, row, harmful, prompt, response in pending:
            judgement = judge_.judge(prompt, response, harmful=harmful)
            append_record(
                out,
                {
                    **row,
                    "line": line,
                    "harmful_request": harmful,
                    "verdict": judgement.verdict,
                    "reason": judgement.reason,
                    "score": judgement.score,
                    "refused": judgement.refused,
                    "complied": judgement.complied,
                    "judge": judgement.judge,
                },
            )
            summary.verdicts[(harmful, judgement.verdict)] += 1
            summary.judged += 1
            progress.advance(task)
    return summary
