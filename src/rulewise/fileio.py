"""Loading YAML/JSON/JSONL files into typed models with errors that point at the line.

Pydantic knows *which field* is wrong but not *where in the file* it is. YAML's composer keeps
the position of every node, and JSON is (almost) YAML, so both formats are composed into a node
tree once and a pydantic error location such as ``("rules", 3, "allowed")`` is mapped back to
the line of that node. JSONL is validated line by line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml
from rich.console import Console

from rulewise.errors import RulewiseError

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
Loc = Sequence[str | int]


class LocatedDocument:
    """Parsed data plus the YAML node tree it came from, to look up line numbers."""

    def __init__(self, path: Path, data: Any, root: yaml.Node | None) -> None:
        self.path = path
        self.data = data
        self._root = root

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the deepest node on ``loc`` that exists in the file."""
        node = self._root
        line = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                node = None
            if node is None:
                break
            line = node.start_mark.line + 1
        return line


def decode_utf8(data: bytes, path: Path, *, first_line: int = 1) -> str:
    """``data`` (the file from line ``first_line`` on) as text; a byte-order mark at the start of
    the file is dropped, any other encoding is an error naming the line and the byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise RulewiseError(
            f"not UTF-8 text (byte {column} of the line)",
            path=path,
            line=first_line + data.count(b"\n", 0, exc.start),
            hint="re-save the file as UTF-8",
        ) from None
    return text.removeprefix("\ufeff") if first_line == 1 else text


def read_text(path: Path) -> str:
    """A UTF-8 text file's contents (see :func:`decode_utf8`)."""
    return decode_utf8(path.read_bytes(), path)


def load_document(path: str | Path) -> LocatedDocument:
    """Read a YAML or JSON file; syntax errors are raised with the file and line."""
    path = Path(path)
    if not path.is_file():
        raise RulewiseError("file not found", path=path)
    text = read_text(path)
    if not text.strip():
        raise RulewiseError("the file is empty", path=path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RulewiseError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:  # valid JSON that YAML cannot compose (e.g. tabs): lose only line numbers
            root = None
        return LocatedDocument(path, data, root)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise RulewiseError(f"invalid YAML: {exc.problem}", path=path, line=line) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a control character
        raise RulewiseError(
            f"invalid YAML: {exc.reason} {chr(exc.character) if isinstance(exc.character, int) else exc.character!r}",
            path=path,
            line=text.count("\n", 0, exc.position) + 1,
            hint="remove the character, or quote the text that contains it with an escape",
        ) from None
    return LocatedDocument(path, data, root)


def format_loc(loc: Loc) -> str:
    """``("rules", 3, "allowed")`` -> ``rules[3].allowed``."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def validation_error(
    exc: pydantic.ValidationError,
    *,
    path: Path | str,
    line_of: Callable[[Loc], int | None] | None = None,
    describe: Callable[[Loc], str] | None = None,
    prefix: Loc = (),
) -> RulewiseError:
    """Turn pydantic's error into a RulewiseError naming file, line and field.

    ``describe`` may add context to a location (e.g. the id of the rule that is wrong). With
    several problems, all are listed, each with its own line; the first sets the error's line.
    ``prefix`` places a model validated on its own inside the file (e.g. ``("stages", "sft")``).
    """
    problems = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        problems.append(
            (loc, line_of(loc) if line_of else None, (describe(loc) if describe else "") + err["msg"])
        )
    loc0, line0, message0 = problems[0]
    if len(problems) == 1:
        return RulewiseError(message0, path=path, line=line0, field=format_loc(loc0) or None)
    listed = [
        (f"line {line}: " if line is not None else "") + f"field '{format_loc(loc) or '<root>'}': {message}"
        for loc, line, message in problems
    ]
    return RulewiseError(f"{len(problems)} problems:\n  " + "\n  ".join(listed), path=path, line=line0)


def validate_document(
    model: type[ModelT], doc: LocatedDocument, *, describe: Callable[[Any, Loc], str] | None = None
) -> ModelT:
    """Validate parsed data against ``model``; any problem is a located RulewiseError.

    ``describe(data, loc)`` may name the offending item (it receives the raw parsed data).
    """
    try:
        return model.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        raise validation_error(
            exc,
            path=doc.path,
            line_of=doc.line_of,
            describe=(lambda loc: describe(doc.data, loc)) if describe else None,
        ) from None


def load_model_file(
    model: type[ModelT], path: str | Path, *, describe: Callable[[Any, Loc], str] | None = None
) -> ModelT:
    """Load a YAML/JSON file into ``model`` (see :func:`validate_document`)."""
    return validate_document(model, load_document(path), describe=describe)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON names the line."""
    path = Path(path)
    if not path.is_file():
        raise RulewiseError("file not found", path=path)
    # bytes, so a bad byte is reported with its line, not as a decode traceback
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            raw = decode_utf8(data, path, first_line=number)
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RulewiseError(f"invalid JSON: {exc.msg}", path=path, line=number) from None
            if not isinstance(obj, dict):
                raise RulewiseError("each line must be a JSON object", path=path, line=number)
            yield number, obj


def load_jsonl_models(model: type[ModelT], path: str | Path) -> list[ModelT]:
    """Validate every line of a JSONL file against ``model``; errors name line and field."""
    items = []
    for number, obj in iter_jsonl(path):
        try:
            items.append(model.model_validate(obj))
        except pydantic.ValidationError as exc:
            raise validation_error(exc, path=path, line_of=lambda _loc, n=number: n) from None
    return items


# --- append-only JSONL record files (results, synthesised data) ------------------------------
#
# Appending with a flush per line means an interrupted run loses only the work in flight. A
# kill in the middle of a write can leave one partial last line; reading drops it (and says
# so), so that item is simply redone.


def read_records(path: Path, *, console: Console | None = None) -> list[dict[str, Any]]:
    """All complete records; a torn final line is cut off the file.

    The file is read as bytes: a kill can tear the last line inside a multibyte character, and
    decoding the whole file as text would fail on it before it could be recognised as torn. The
    repair truncates the file to the end of the last complete line, so a second kill during the
    repair cannot lose the lines before it.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    records = []
    offset = 0
    for number, line in enumerate(lines, start=1):
        # a last line without its newline is torn, even if it parses: the next append would join it
        if number == len(lines) and not line.endswith(b"\n"):
            os.truncate(path, offset)
            if console is not None and line.strip():
                console.print(
                    f"[yellow]dropped a partial last line of {path} (interrupted write); it will be redone[/yellow]"
                )
            break
        try:
            if line.strip():
                records.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RulewiseError("invalid JSON in results file", path=path, line=number) from None
        offset += len(line)
    return records


def keep_first_records(path: Path, count: int) -> None:
    """Cut ``path`` after its first ``count`` complete lines (torn or extra lines after them go).

    For files whose tail is only valid once a companion record confirms it (a prompt's pairs,
    confirmed by its progress line): the unconfirmed tail is cut, never rewritten, so a kill
    during the cut loses nothing that was confirmed.
    """
    if not path.exists():
        return
    offset = 0
    with path.open("rb") as handle:
        for _ in range(count):
            line = handle.readline()
            if not line.endswith(b"\n"):
                raise RulewiseError(
                    f"holds fewer complete lines than the {count} its progress file confirms",
                    path=path,
                    hint="delete it and its .progress.jsonl to start over",
                )
            offset += len(line)
    if path.stat().st_size > offset:
        os.truncate(path, offset)


def append_record(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
