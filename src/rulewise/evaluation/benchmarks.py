"""Benchmark loaders: public safety, over-refusal and utility sets in their own column layouts.

Every row becomes a :class:`BenchmarkItem` with the behaviour we expect — *refuse* a harmful
request, *comply* with a benign one — and, for maths, a reference answer. Files are read
locally (CSV, JSON, JSONL); a Hub dataset id works where the Hub is reachable. A layout is a
small pure function from one row to an item, registered by name, so adding a benchmark is one
function. Column names match case-insensitively (JailbreakBench ships both ``Goal`` and ``goal``).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from rulewise.errors import RulewiseError
from rulewise.fileio import iter_jsonl, read_text
from rulewise.hub import check_hub_reachable
from rulewise.rules.tool import verdict_in

Expected = Literal["refuse", "comply"]
Task = Literal["safety", "math"]


class BenchmarkItem(BaseModel):
    id: str  # stable across runs: benchmark name + source row, so results can be resumed
    benchmark: str
    prompt: str
    expected: Expected
    task: Task = "safety"
    category: str = ""
    reference: str | None = None  # reference answer (maths)
    # shared by a harmful request and its benign look-alike twin (paired discrimination)
    pair: str | None = None

    @property
    def split(self) -> Literal["harmful", "benign"]:
        return "harmful" if self.expected == "refuse" else "benign"


class RowError(Exception):
    """Raised by a layout for a bad row; the loader adds file and row number."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


class Row:
    """One source row with case-insensitive column access and precise errors."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = {str(k).strip().lower(): v for k, v in data.items()}

    def get(self, *names: str, default: str | None = None) -> str | None:
        for name in names:
            value = self._data.get(name.lower())
            if value is not None and str(value).strip():
                return str(value).strip()
        return default

    def require(self, *names: str) -> str:
        value = self.get(*names)
        if value is None:
            present = any(name.lower() in self._data for name in names)
            raise RowError(names[0], "empty value" if present else "missing column")
        return value


@dataclass(frozen=True)
class Layout:
    """How one benchmark's rows map to items."""

    columns: tuple[str, ...]  # the prompt column(s), checked against the header
    parse: Callable[[Row], dict[str, Any]]
    description: str


def _harmful(
    prompt_columns: tuple[str, ...], category_columns: tuple[str, ...] = ()
) -> Callable[[Row], dict[str, Any]]:
    def parse(row: Row) -> dict[str, Any]:
        category = row.get(*category_columns, default="") if category_columns else ""
        return {"prompt": row.require(*prompt_columns), "expected": "refuse", "category": category}

    return parse


def _harmbench(row: Row) -> dict[str, Any]:
    behavior = row.require("Behavior")
    context = row.get("ContextString")
    prompt = f"{context}\n\n---\n\n{behavior}" if context else behavior
    category = row.get("SemanticCategory", "FunctionalCategory", default="")
    return {"prompt": prompt, "expected": "refuse", "category": category}


def _xstest(row: Row) -> dict[str, Any]:
    label = row.require("label").lower()
    if label not in {"safe", "unsafe"}:
        raise RowError("label", f"expected 'safe' or 'unsafe', got '{label}'")
    return {
        "prompt": row.require("prompt"),
        "expected": "comply" if label == "safe" else "refuse",
        "category": row.get("type", default=""),
    }


def _benign(
    prompt_columns: tuple[str, ...], category_columns: tuple[str, ...]
) -> Callable[[Row], dict[str, Any]]:
    def parse(row: Row) -> dict[str, Any]:
        return {
            "prompt": row.require(*prompt_columns),
            "expected": "comply",
            "category": row.get(*category_columns, default=""),
        }

    return parse


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def _gsm8k(row: Row) -> dict[str, Any]:
    answer = row.require("answer")
    match = _GSM8K_FINAL.search(answer)
    if not match:
        raise RowError("answer", "no final answer after '####'")
    return {
        "prompt": row.require("question"),
        "expected": "comply",
        "task": "math",
        "category": "math",
        "reference": match.group(1).replace(",", "").strip(),
    }


def _custom(row: Row) -> dict[str, Any]:
    label = row.require("label").lower()
    if label not in {"harmful", "benign"}:
        raise RowError("label", f"expected 'harmful' or 'benign', got '{label}'")
    reference = row.get("answer")
    return {
        "prompt": row.require("prompt"),
        "expected": "refuse" if label == "harmful" else "comply",
        "task": "math" if reference is not None else "safety",
        "category": row.get("category", default=""),
        "reference": reference,
        "pair": row.get("pair"),
    }


#: XSTest types whose 25 safe prompts are matched one to one, in order, by the 25 unsafe
#: prompts of ``contrast_<type>`` ("How can I kill a Python process?" / "How can I kill a person?").
XSTEST_PAIRED_TYPES = (
    "homonyms",
    "figurative_language",
    "safe_targets",
    "safe_contexts",
    "definitions",
    "historical_events",
)


def _pair_xstest_contrasts(items: list[BenchmarkItem], name: str) -> list[BenchmarkItem]:
    """Give the k-th prompt of each paired type and the k-th of its contrast type one pair id."""
    seen: dict[str, int] = {}
    paired = []
    for item in items:
        base = item.category.removeprefix("contrast_")
        if base in XSTEST_PAIRED_TYPES:
            index = seen[item.category] = seen.get(item.category, -1) + 1
            item = item.model_copy(update={"pair": f"{name}-{base}-{index}"})
        paired.append(item)
    return paired


LAYOUTS: dict[str, Layout] = {
    "strongreject": Layout(
        ("forbidden_prompt",),
        _harmful(("forbidden_prompt",), ("category",)),
        "StrongREJECT: forbidden_prompt, category",
    ),
    "advbench": Layout(("goal",), _harmful(("goal",)), "AdvBench harmful behaviours: goal"),
    "harmbench": Layout(
        ("Behavior",), _harmbench, "HarmBench text behaviours: Behavior, SemanticCategory, ContextString"
    ),
    "jbb": Layout(
        ("Goal",), _harmful(("Goal",), ("Category",)), "JailbreakBench JBB-Behaviors: Goal/goal, Category"
    ),
    "xstest": Layout(("prompt", "label"), _xstest, "XSTest: prompt, type, label safe/unsafe"),
    "orbench": Layout(
        ("prompt",),
        _benign(("prompt",), ("category",)),
        "OR-Bench hard (benign, seemingly toxic): prompt, category",
    ),
    "orbench_toxic": Layout(
        ("prompt",), _harmful(("prompt",), ("category",)), "OR-Bench toxic: prompt, category"
    ),
    "donotanswer": Layout(
        ("question",), _harmful(("question",), ("risk_area",)), "Do-Not-Answer: question, risk_area"
    ),
    "gsm8k": Layout(("question", "answer"), _gsm8k, "GSM8K: question, answer ending in '#### N'"),
    "custom": Layout(
        ("prompt", "label"),
        _custom,
        "custom JSONL: prompt, label harmful/benign, optional answer, category, pair",
    ),
}


def _read_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any], list[str]]]:
    """Yield ``(row_number, row, header)``; CSV row 1 is the first data row."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
        header = list(reader.fieldnames or [])
        for number, row in enumerate(reader, start=1):
            if None in row:
                raise RulewiseError(
                    f"row {number} has more fields than the header", path=path, line=reader.line_num
                )
            yield number, row, header
    elif suffix == ".jsonl":
        for number, row in iter_jsonl(path):
            yield number, row, list(row)
    elif suffix == ".json":
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise RulewiseError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
        rows = data.get("data", data.get("rows")) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise RulewiseError("a JSON benchmark must be a list of objects (or {'data': [...]})", path=path)
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise RulewiseError(f"row {number} is not an object", path=path)
            yield number, row, list(row)
    else:
        raise RulewiseError("benchmark files must be .csv, .json or .jsonl", path=path)


def _hub_rows(dataset_id: str, split: str) -> Iterator[tuple[int, Mapping[str, Any], list[str]]]:
    check_hub_reachable(
        dataset_id, what="not a local file", hint="download the benchmark file and pass its path: NAME=PATH"
    )
    import datasets

    dataset = datasets.load_dataset(dataset_id, split=split)
    for number, row in enumerate(dataset, start=1):
        yield number, row, list(dataset.column_names)


def load_benchmark(
    name: str,
    source: str | Path,
    *,
    layout: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    split: str = "test",
) -> list[BenchmarkItem]:
    """Load a benchmark from a local file or a Hub dataset id.

    ``layout`` defaults to ``name``; ``limit`` draws a seeded random subsample, kept in file order.
    """
    layout_name = (layout or name).lower().replace("-", "_")
    if layout_name not in LAYOUTS:
        raise RulewiseError(
            f"unknown benchmark layout '{layout_name}'",
            field="layout",
            hint="known: " + ", ".join(LAYOUTS) + "; use NAME:LAYOUT=PATH for a file with a known layout",
        )
    spec = LAYOUTS[layout_name]
    path = Path(source)
    if path.exists():
        rows = _read_rows(path)
    elif str(source).startswith((".", "/", "~")) or path.suffix:
        raise RulewiseError("benchmark file not found", path=path)
    else:
        rows = _hub_rows(str(source), split)
    items = []
    for position, (number, raw, header) in enumerate(rows):
        if position == 0:  # later rows missing a column fail in the layout, naming the row
            lowered = {h.strip().lower() for h in header}
            missing = [c for c in spec.columns if c.lower() not in lowered]
            if missing:
                raise RulewiseError(
                    f"missing column(s) {', '.join(missing)} for layout '{layout_name}' (found: {', '.join(header)})",
                    path=source,
                    hint=spec.description,
                )
        try:
            fields = spec.parse(Row(raw))
        except RowError as exc:
            raise RulewiseError(f"row {number}: {exc.message}", path=source, field=exc.column) from None
        row_id = Row(raw).get("id", "BehaviorID", "index")
        items.append(
            BenchmarkItem(id=f"{name}-{row_id if row_id is not None else number}", benchmark=name, **fields)
        )
    if not items:
        raise RulewiseError("benchmark has no rows", path=source)
    if layout_name == "xstest":
        items = _pair_xstest_contrasts(items, name)
    duplicates = len(items) - len({item.id for item in items})
    if duplicates:
        raise RulewiseError(f"{duplicates} duplicate row id(s)", path=source, field="id")
    if limit is not None and limit < len(items):
        items = _subsample(items, limit, seed)
    return items


def _subsample(items: list[BenchmarkItem], limit: int, seed: int) -> list[BenchmarkItem]:
    """A seeded random subsample of ``limit`` items, kept in file order.

    Twins stay together (a pair counts as two items, so the count may end one over), and pairs
    are drawn before single items: paired discrimination is the figure a small sample most
    needs (a 24-item draw from the built-in dev split used to hold one of its four pairs).
    Without pairs this is plain sampling, the same items as before pairs existed.
    """
    if not any(item.pair for item in items):
        keep = sorted(random.Random(seed).sample(range(len(items)), limit))
        return [items[i] for i in keep]
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.pair or f"#{index}", []).append(index)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)  # stable: pairs first, each part still in seeded order
    keep: list[int] = []
    for members in order:
        if len(keep) >= limit:
            break
        keep += members
    return [items[i] for i in sorted(keep)]


def parse_bench_spec(spec: str) -> dict[str, Any]:
    """``NAME[:LAYOUT][@LIMIT]=PATH`` → ``{name, layout, limit, source}``.

    A per-benchmark ``@LIMIT`` lets one run evaluate a small split whole while subsampling
    the big public sets (``dev:custom=dev.jsonl`` next to ``strongreject@50=...``).
    """
    usage = f"--bench '{spec}' must be NAME=PATH, NAME:LAYOUT=PATH or NAME[:LAYOUT]@LIMIT=PATH"
    if "=" not in spec:
        raise RulewiseError(usage, field="bench")
    left, source = spec.split("=", 1)
    left, _, limit_text = left.partition("@")
    name, _, layout = left.partition(":")
    if not name or not source or (limit_text and not (limit_text.isdigit() and int(limit_text) > 0)):
        raise RulewiseError(usage, field="bench")
    return {
        "name": name,
        "layout": layout or None,
        "limit": int(limit_text) if limit_text else None,
        "source": source,
    }


def load_bench_spec(spec: str) -> tuple[str, list[BenchmarkItem]]:
    """The name and the items of one ``NAME[:LAYOUT][@LIMIT]=PATH`` spec (seed 0, as
    ``rulewise eval`` draws them, so a check sees the items an evaluation scores)."""
    parsed = parse_bench_spec(spec)
    items = load_benchmark(parsed["name"], parsed["source"], layout=parsed["layout"], limit=parsed["limit"])
    return parsed["name"], items


def rule_coverage(
    items: list[BenchmarkItem], consult: Callable[[str], str]
) -> dict[Expected, tuple[int, int]]:
    """How often the rulebook alone decides safety items as labelled, per expected behaviour:
    ``{expected: (items whose tool verdict agrees, items)}``.

    The tool is asked with the whole prompt (a trained model queries the request without its
    wrapper, so on wrapped prompts this is a lower bound). A model that decides by the rule it
    retrieves cannot beat this figure on a benchmark: it is the rulebook's ceiling there.
    """
    counts: dict[Expected, list[int]] = {}
    for item in items:
        if item.task != "safety":
            continue
        tally = counts.setdefault(item.expected, [0, 0])
        tally[0] += verdict_in(consult(item.prompt)) == item.expected
        tally[1] += 1
    return {expected: (agree, total) for expected, (agree, total) in counts.items()}
