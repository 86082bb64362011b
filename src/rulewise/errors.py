"""The one exception type users see.

Every error caused by input a user can fix (a file, a flag, a config) is raised as a
:class:`RulewiseError` that names *where* (file, line, field) and *what*, so the CLI can print
it as one line instead of a traceback from deep inside a library.
"""

from __future__ import annotations

from pathlib import Path


class RulewiseError(Exception):
    """A user-fixable error, located as precisely as the input allows."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"field '{self.field}': " if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{field}{self.message}{hint}"
