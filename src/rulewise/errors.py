"""The one exception type users see.

Every error caused by input a user can fix (a file, a flag, a config) is raised as a
:class:`RulewiseError` that names *where* (file, line, field) and *what*, so the CLI can print
it as one line instead of a traceback from deep inside a library.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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


LOW_DISK_BYTES = 256 * 2**20  # below this a failed write is taken to be the disk's fault


def free_bytes(where: str | Path) -> int:
    """Free bytes on the disk that holds ``where`` (or its nearest existing parent)."""
    path = Path(where).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def disk_full(exc: BaseException, where: str | Path, *, doing: str) -> RulewiseError | None:
    """The error to show instead of ``exc`` when a full disk is why it happened, else ``None``.

    Why: a full disk surfaces deep inside a library — torch's checkpoint writer says
    ``basic_ios::clear: iostream error`` or ``PytorchStreamWriter failed writing file`` — naming
    neither the disk nor the fix; safetensors says it only in its message, after deleting the
    half-written file. ``exc`` counts as a full disk when it says so (``ENOSPC``, ``EDQUOT``, as
    an error number or in its text) or when, just after it, the disk holding ``where`` (or the
    file the error names) has less than :data:`LOW_DISK_BYTES` free. The original error stays in
    the message: nothing is hidden.
    """
    says_full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
        text in str(exc) for text in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
    )
    if isinstance(exc, OSError) and exc.filename:  # the file it failed to write says which disk
        where = exc.filename
    free = free_bytes(where)
    if not says_full and free >= LOW_DISK_BYTES:
        return None
    return RulewiseError(
        f"the disk filled up ({free / 2**20:.0f} MiB free now) — {doing} stopped: {type(exc).__name__}: {exc}",
        path=where,
        hint="free some space and rerun the same command; finished work is kept and training "
        "continues from its last checkpoint",
    )


@contextmanager
def full_disk_named(where: str | Path, doing: str) -> Iterator[None]:
    """Inside: an error caused by a full disk is raised as :func:`disk_full`'s one clear line."""
    try:
        yield
    except RulewiseError:
        raise
    except Exception as exc:
        full = disk_full(exc, where, doing=doing)
        if full is None:
            raise
        raise full from exc
