"""The results file: one JSON line per finished item, appended as items finish.

Appending with a flush per line means an interrupted run loses only the conversations that
were in flight. A kill in the middle of a write can leave one partial last line; reading
drops it (and says so) so the item is simply generated again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from rulewise.errors import RulewiseError


def read_records(path: Path, *, console: Console | None = None) -> list[dict[str, Any]]:
    """All complete records; a torn final line is removed from the file."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                path.write_text("".join(lines[:-1]), encoding="utf-8")
                if console is not None:
                    console.print(
                        f"[yellow]dropped a partial last line of {path} (interrupted write); it will be redone[/yellow]"
                    )
                break
            raise RulewiseError("invalid JSON in results file", path=path, line=number) from None
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
