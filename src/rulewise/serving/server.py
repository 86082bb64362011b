"""``rulewise serve``: settings, wiring (model, live rulebook, engine, audit log, app) and
running under uvicorn, in the foreground or on a thread (tests, benchmarks, notebooks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rulewise.generation.backends import SamplingConfig
from rulewise.generation.engine import LoopConfig, ToolUseGenerator
from rulewise.rules.tool import RULES_PER_CALL
from rulewise.serving.app import ServerLimits, create_app
from rulewise.serving.audit import AuditLog
from rulewise.serving.engine import ServingEngine
from rulewise.serving.live_rules import LiveRulebook, RulebookWatcher


class ServeSettings(BaseModel):
    """Everything ``rulewise serve`` reads from its flags and ``--set``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="'default', a checkpoint directory or a Hub id")
    rules: str = Field(
        default="default", description="the rulebook the server-side tool reads (YAML/JSON path)"
    )
    name: str | None = Field(
        default=None, description="the model id clients send (default: the model argument as given)"
    )
    host: str = Field(default="127.0.0.1", description="address to bind; 0.0.0.0 exposes the server")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0: any free port)")
    audit_log: str = Field(
        default="rulewise-audit.jsonl", description="append-only JSONL, one line per request"
    )
    max_concurrent: int = Field(default=32, ge=1, description="requests in flight; one more gets 429")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="larger request bodies get 413")
    max_new_tokens: int = Field(
        default=256, ge=1, description="tokens per assistant turn (and max_tokens' cap)"
    )
    max_tool_calls: int = Field(default=2, ge=0, description="rule consultations per request")
    batch_size: int = Field(default=8, ge=1, description="conversations decoded together")
    top_k: int = Field(default=RULES_PER_CALL, ge=1, description="rules returned per tool call")
    temperature: float = Field(
        default=0.0, ge=0.0, description="sampling temperature of every request (0: greedy)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="'auto': bf16 weights where the hardware computes bf16 natively"
    )
    backend: Literal["auto", "hf", "vllm"] = Field(
        default="auto", description="'auto': vLLM when it is installed and a GPU is present, else ours"
    )
    reload_interval: float = Field(
        default=1.0, ge=0.0, description="seconds between checks of the rulebook file for changes (0: off)"
    )
    show_reasoning: bool = Field(default=True, description="return <think> content as reasoning_content")
    admin_token: str | None = Field(
        default=None,
        description="bearer token for /admin/reload; without one only loopback callers may reload",
    )


def pick_backend(choice: str) -> Literal["hf", "vllm"]:
    if choice != "auto":
        return choice  # type: ignore[return-value]
    import importlib.util

    import torch

    return "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"


@dataclass
class Server:
    """A wired server: its app and the parts a caller may want to reach."""

    settings: ServeSettings
    app: object
    engine: ServingEngine
    rules: LiveRulebook
    audit: AuditLog
    watcher: RulebookWatcher | None

    def start_background(self) -> None:
        self.engine.start()
        if self.watcher is not None:
            self.watcher.start()

    def stop_background(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.engine.stop()


def build_server(
    settings: ServeSettings,
    *,
    make_generator: Callable[[LiveRulebook], ToolUseGenerator] | None = None,
    log: Callable[[str], None] = print,
) -> Server:
    """Load the model and wire the app. ``make_generator(rules)`` replaces loading (tests, other
    backends): it must offer a consult tool that reads ``rules``, the live rulebook."""
    rules = LiveRulebook(settings.rules)
    if make_generator is not None:
        generator = make_generator(rules)
    else:
        from rulewise.generation.factory import build_generator, load_for_backend

        backend = pick_backend(settings.backend)
        generator = build_generator(
            load_for_backend(settings.model, backend),
            rules=rules,
            top_k=settings.top_k,
            sampling=SamplingConfig(temperature=settings.temperature),
            precision=settings.precision,
            loop=LoopConfig(settings.max_new_tokens, settings.max_tool_calls, settings.batch_size),
            backend=backend,
        )
    model = getattr(generator.backend, "model", None)
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None) or min(
        generator.tokenizer.model_max_length, 1 << 20
    )
    limits = ServerLimits(
        max_concurrent=settings.max_concurrent,
        max_body_bytes=settings.max_body_bytes,
        max_new_tokens=settings.max_new_tokens,
        context_length=context,
        show_reasoning=settings.show_reasoning,
        admin_token=settings.admin_token,
    )
    engine = ServingEngine(generator)
    audit = AuditLog(settings.audit_log)
    app = create_app(engine, rules, audit, model_name=settings.name or settings.model, limits=limits)

    def on_reload(ok: bool, message: str) -> None:
        if ok:
            log(f"rulebook reloaded: {rules.path} version {message}")
        else:
            log(f"rulebook change rejected, the old one keeps serving: {message}")

    watcher = (
        RulebookWatcher(rules, settings.reload_interval, on_reload) if settings.reload_interval > 0 else None
    )
    return Server(settings, app, engine, rules, audit, watcher)


def run_server(server: Server) -> None:
    """Serve in the foreground until interrupted."""
    import uvicorn

    server.start_background()
    try:
        uvicorn.run(server.app, host=server.settings.host, port=server.settings.port, log_level="info")
    finally:
        server.stop_background()


class ServerThread:
    """``with ServerThread(server) as url:`` serves on a thread; ``url`` is its base URL."""

    def __init__(self, server: Server) -> None:
        import uvicorn

        self.server = server
        config = uvicorn.Config(
            server.app, host=server.settings.host, port=server.settings.port, log_level="warning"
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, name="uvicorn", daemon=True)

    def __enter__(self) -> str:
        self.server.start_background()
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        port = self._uvicorn.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.server.settings.host}:{port}"

    def __exit__(self, *_: object) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self.server.stop_background()
