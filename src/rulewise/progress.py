"""The progress bar every long job shows: count, elapsed time and ETA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def eta_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


@contextmanager
def job_progress(console: Console, label: str) -> Iterator[Callable[[int], Callable[[], None]]]:
    """A bar for one data job, in the shape ``rulewise.data.jobs`` takes (``ProgressHooks``):
    the job calls the hook with its item count and gets the per-item advance back."""
    with eta_progress(console) as progress:

        def hooks(total: int) -> Callable[[], None]:
            task = progress.add_task(label, total=total)
            return lambda: progress.advance(task)

        yield hooks
