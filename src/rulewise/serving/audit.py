"""The audit trail: one JSON line per served request, append-only.

Why a file and not a log message: a deployer must be able to answer "which rule did this
refusal rest on, under which rulebook version" months later, and count decisions per rule.
Each line is written with one ``write`` on a file opened with ``O_APPEND`` (plus a lock within
the process), so concurrent requests never interleave inside a line; a kill can at worst leave
a torn last line, which :func:`summarize` skips (the server may still be appending to it).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rulewise.errors import RulewiseError


class AuditLog:
    """Appends request records to ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


@dataclass
class AuditSummary:
    requests: int = 0
    consulted: int = 0  # requests in which the rule tool was called
    retrieved: Counter = field(default_factory=Counter)  # rule id -> requests that retrieved it
    cited: Counter = field(default_factory=Counter)  # rule id -> requests whose reply named it
    verdicts: Counter = field(default_factory=Counter)  # refuse / comply / partial / tool_calls -> requests
    refused_by_rule: Counter = field(default_factory=Counter)  # rule id -> refusals that retrieved it
    versions: Counter = field(default_factory=Counter)  # rulebook version -> requests
    torn_last_line: bool = False


def summarize(path: str | Path) -> AuditSummary:
    """Per-rule counts over an audit log. Read as bytes: a torn last line may end inside a
    multibyte character. A bad line before the last is an error naming it."""
    path = Path(path)
    if not path.exists():
        raise RulewiseError("audit log not found", path=path)
    summary = AuditSummary()
    lines = path.read_bytes().splitlines(keepends=True)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if number == len(lines) and not raw.endswith(b"\n"):
            summary.torn_last_line = True
            break
        try:
            record = json.loads(raw.decode("utf-8"))
            retrieved, cited = list(record["rules_retrieved"]), list(record["rules_cited"])
            verdict, version = str(record["verdict"]), str(record["rulebook_version"])
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RulewiseError("invalid JSON in audit log", path=path, line=number) from None
        except (KeyError, TypeError) as exc:
            raise RulewiseError(f"audit record lacks {exc}", path=path, line=number) from None
        summary.requests += 1
        summary.consulted += bool(record.get("tool_calls"))
        summary.retrieved.update(set(retrieved))
        summary.cited.update(set(cited))
        summary.verdicts[verdict] += 1
        summary.versions[version] += 1
        if verdict == "refuse":
            summary.refused_by_rule.update(set(retrieved))
    return summary
