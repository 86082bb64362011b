"""A rulebook that can be replaced while the server runs: the policy lives in a file, not in
the weights, so a deployer edits the file and the next tool call reads the new rules.

The consult tool holds this object instead of a fixed retriever. A reload builds the new
retriever completely, then swaps one attribute: a tool call in flight reads either the old or
the new rulebook, never half of each, and no request is dropped. A file that fails validation
changes nothing: the error is returned (and logged by the caller) and the old rules keep serving.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from rulewise.errors import RulewiseError
from rulewise.rules.loading import DEFAULT_RULEBOOK, default_rulebook_path, load_rulebook
from rulewise.rules.retrieval import RetrieverKind, RuleMatch, RuleRetriever, build_retriever
from rulewise.rules.schema import Rulebook


@dataclass(frozen=True)
class RulebookVersion:
    """What is serving: the rulebook, its retriever, and the hash of the file's bytes (the
    version an audit line names, so a decision can be traced to the exact rule text)."""

    rulebook: Rulebook
    retriever: RuleRetriever
    sha256: str
    mtime_ns: int

    @property
    def version(self) -> str:
        return self.sha256[:12]


class LiveRulebook:
    """A retriever over the rulebook at ``path`` that :meth:`reload` replaces atomically."""

    def __init__(self, path: str | Path = DEFAULT_RULEBOOK, retriever: RetrieverKind = "bm25") -> None:
        self.path = default_rulebook_path() if str(path) == DEFAULT_RULEBOOK else Path(path)
        self.retriever_kind = retriever
        self._lock = threading.Lock()  # one reload at a time; readers never wait
        self.current = self._load()

    def _load(self, attempts: int = 3) -> RulebookVersion:
        """Parse the file and hash its bytes. The parser reads the file itself, so the bytes are
        read before and after it: if an editor's write lands in between, the two hashes differ
        and the file is read again — an audit line never names a hash of other text."""
        for _ in range(attempts):
            mtime = self.path.stat().st_mtime_ns
            before = hashlib.sha256(self.path.read_bytes()).hexdigest()
            rulebook = load_rulebook(self.path)
            if hashlib.sha256(self.path.read_bytes()).hexdigest() == before:
                return RulebookVersion(
                    rulebook, build_retriever(rulebook, self.retriever_kind), before, mtime
                )
        raise RulewiseError(f"the file changed during each of {attempts} reads", path=self.path)

    @property
    def rulebook(self) -> Rulebook:
        return self.current.rulebook

    def search(self, query: str, k: int = 3) -> list[RuleMatch]:
        """The retriever interface the consult tool calls."""
        return self.current.retriever.search(query, k=k)

    def reload(self) -> tuple[bool, str]:
        """Re-read the file: ``(True, version)`` when the new rules serve now, ``(False, error)``
        when the file is unreadable or invalid (the old rules keep serving)."""
        with self._lock:
            try:
                new = self._load()
            except (RulewiseError, OSError) as exc:
                return False, str(exc)
            self.current = new
            return True, new.version

    def changed_on_disk(self) -> bool:
        """The file's modification time differs from the serving version's."""
        try:
            return self.path.stat().st_mtime_ns != self.current.mtime_ns
        except OSError:
            return False


class RulebookWatcher:
    """Polls the rulebook's modification time and reloads on change (a daemon thread)."""

    def __init__(self, rules: LiveRulebook, interval: float, on_reload) -> None:
        self.rules = rules
        self.interval = interval
        self.on_reload = on_reload  # (ok, version or error) -> None, e.g. a log line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rulebook-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failed_mtime = None  # do not log the same broken file every interval
        while not self._stop.wait(self.interval):
            if not self.rules.changed_on_disk():
                continue
            mtime = self.rules.path.stat().st_mtime_ns if self.rules.path.exists() else None
            if mtime == failed_mtime:
                continue
            ok, message = self.rules.reload()
            failed_mtime = None if ok else mtime
            self.on_reload(ok, message)
