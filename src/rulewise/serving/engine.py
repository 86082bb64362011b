"""Requests from many HTTP clients, one generation loop: a worker thread owns the model.

The tool-use loop (:meth:`ToolUseGenerator.drive`) asks for a new conversation whenever a batch
slot is free, so a request that arrives while others are generating joins the running batch at
the next decode step (continuous batching), and the ``consult_safety_rules`` turns run here,
server-side, between decode steps. HTTP handlers never touch the model: they submit a
:class:`Ticket` and receive its turns through callbacks that the handler bridges into its own
event loop. A ticket whose client went away is cancelled: its row ends at the next token and
its slot goes to the next request.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rulewise.generation.engine import Job, ToolUseGenerator
from rulewise.generation.trajectory import Trajectory


@dataclass
class Ticket:
    """One request in flight. The callbacks run on the worker thread."""

    job: Job
    on_turn: Callable[[Trajectory], None]
    on_finished: Callable[[Trajectory], None]
    on_error: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class ServingEngine:
    """Runs submitted conversations through one :class:`ToolUseGenerator` on a worker thread."""

    def __init__(self, generator: ToolUseGenerator) -> None:
        self.generator = generator
        # HTTP handlers count prompt tokens with their own copy: a Rust tokenizer used from two
        # threads at once can fail ("Already borrowed") when a call adjusts its settings.
        self._tokenizer = copy.deepcopy(generator.tokenizer)
        self._pending: deque[Ticket] = deque()
        self._running: dict[object, Ticket] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._keys = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="rulewise-generation", daemon=True)

    # -- the HTTP side ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            for ticket in [*self._pending, *self._running.values()]:
                ticket.cancel()
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def submit(
        self,
        messages: list[dict[str, Any]],
        *,
        on_turn: Callable[[Trajectory], None],
        on_finished: Callable[[Trajectory], None],
        on_error: Callable[[str], None],
        max_new_tokens: int | None = None,
        client_tools: Sequence[dict[str, Any]] = (),
        request_id: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Ticket:
        """Queue a conversation; it starts at the next free batch slot. ``on_text`` receives the
        current turn's text after every token (a streaming client's per-token deltas)."""
        trajectory = Trajectory(id=request_id, messages=self.generator.start(messages))
        ticket = Ticket(
            Job(next(self._keys), trajectory, max_new_tokens, tuple(client_tools), on_text=on_text),
            on_turn,
            on_finished,
            on_error,
        )
        ticket.job.cancelled = ticket.cancel_event.is_set
        with self._cond:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._pending.append(ticket)
            self._cond.notify()
        return ticket

    def prompt_tokens(
        self, messages: list[dict[str, Any]], client_tools: Sequence[dict[str, Any]] = ()
    ) -> int:
        """Tokens of the first turn's prompt (what must fit the model's context)."""
        text = self.generator.render(self.generator.start(messages), client_tools)
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._pending) + len(self._running)

    # -- the worker ------------------------------------------------------------------------------

    def _next_job(self) -> Job | None:
        with self._cond:
            while self._pending:
                ticket = self._pending.popleft()
                if ticket.cancelled:
                    continue  # its client left before it started
                self._running[ticket.job.key] = ticket
                return ticket.job
            return None

    def _turn(self, job: Job) -> None:
        self._running[job.key].on_turn(job.trajectory)

    def _finished(self, job: Job) -> None:
        with self._cond:
            ticket = self._running.pop(job.key)
        ticket.on_finished(job.trajectory)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                self.generator.drive(self._next_job, self._finished, self._turn)
            except Exception as exc:  # noqa: BLE001 - one failed batch must not stop the server
                with self._cond:
                    failed, self._running = list(self._running.values()), {}
                for ticket in failed:
                    ticket.on_error(f"generation failed: {type(exc).__name__}: {exc}")
