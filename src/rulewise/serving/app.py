"""The HTTP server: OpenAI's ``/v1/chat/completions`` (streaming or not), ``/v1/models``,
``/health`` and ``/admin/reload``, on FastAPI.

A client sends plain chat messages; the ``consult_safety_rules`` loop runs here, and the reply
carries what the decision rested on: ``rulewise.consulted_rules`` in the body (and the
``x-rulewise-rules`` header when not streaming), the rulebook version, and the model's
reasoning as ``reasoning_content`` (as vLLM and DeepSeek return it; ``show_reasoning: false``
omits it). Streaming is per turn: each turn's reasoning is sent when the turn ends, the answer
once it is known to be the answer (a turn may still become a tool call until it ends).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rulewise.generation.trajectory import Trajectory, message_reasoning
from rulewise.serving import protocol
from rulewise.serving.audit import AuditLog
from rulewise.serving.engine import ServingEngine, Ticket
from rulewise.serving.live_rules import LiveRulebook
from rulewise.serving.protocol import APIError

LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
#: An oversized body is read (and dropped) up to this many times the limit before the 413.
DRAIN_FACTOR = 16

#: How often a waiting non-streaming request checks whether its client is still there.
DISCONNECT_POLL_SECONDS = 0.25


@dataclass
class ServerLimits:
    max_concurrent: int = 32  # requests generating or queued; one more gets 429
    max_body_bytes: int = 1_000_000  # larger request bodies get 413
    max_new_tokens: int = 256  # per assistant turn, and the most a request's max_tokens may ask
    context_length: int = 8192  # prompt + max_new_tokens must fit
    show_reasoning: bool = True
    admin_token: str | None = None  # required by /admin/reload when set; else loopback only


class _Exchange:
    """One request's events, from the worker thread into this request's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the server's loop has closed (shutting down): nobody is listening
            pass


def create_app(
    engine: ServingEngine,
    rules: LiveRulebook,
    audit: AuditLog,
    *,
    model_name: str,
    limits: ServerLimits | None = None,
) -> FastAPI:
    limits = limits or ServerLimits()
    app = FastAPI(title="rulewise serve", docs_url=None, redoc_url=None)
    state = {"active": 0}

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = APIError(exc.status_code, str(exc.detail), type="invalid_request_error")
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        error = APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")
        return JSONResponse(error.body(), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "rulebook_version": rules.current.version,
            "in_flight": engine.in_flight,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "rulewise"}]}

    @app.post("/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        if limits.admin_token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given, limits.admin_token):
                raise APIError(401, "a valid admin token is required", type="authentication_error")
        elif (request.client.host if request.client else "") not in LOOPBACK:
            raise APIError(
                403,
                "the admin endpoint only answers loopback callers (set an admin token)",
                type="permission_error",
            )
        ok, message = await asyncio.to_thread(rules.reload)
        if not ok:
            return JSONResponse(
                APIError(422, f"rulebook rejected, the old one keeps serving: {message}").body(),
                status_code=422,
            )
        return JSONResponse({"ok": True, "rulebook_version": message})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        too_large = APIError(
            413, f"request body over {limits.max_body_bytes} bytes", code="request_too_large"
        )
        drain = DRAIN_FACTOR * limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > drain:
            raise too_large
        # Read past the limit (keeping nothing) up to ``drain``: a reply sent while the client is
        # still writing can reach it as a reset connection instead of the 413.
        body, size = bytearray(), 0
        async for part in request.stream():
            size += len(part)
            if size <= limits.max_body_bytes:
                body += part
            elif size > drain:
                break
        if size > limits.max_body_bytes:
            raise too_large
        chat = protocol.parse_request(bytes(body))
        if chat.model != model_name:
            raise APIError(
                404,
                f"model '{chat.model}' is not served here; this server has '{model_name}'",
                param="model",
                code="model_not_found",
            )
        conversation = protocol.to_conversation(chat)
        limit = chat.token_limit
        if limit is not None and limit > limits.max_new_tokens:
            raise APIError(
                400, f"max_tokens may be at most {limits.max_new_tokens} on this server", param="max_tokens"
            )
        prompt_tokens = engine.prompt_tokens(conversation, chat.tools or ())
        if prompt_tokens + (limit or limits.max_new_tokens) > limits.context_length:
            raise APIError(
                400,
                f"the prompt has {prompt_tokens} tokens; with {limit or limits.max_new_tokens} "
                f"new tokens it exceeds the model's context of {limits.context_length}",
                param="messages",
                code="context_length_exceeded",
            )
        if state["active"] >= limits.max_concurrent:
            raise APIError(
                429,
                f"{limits.max_concurrent} requests are already in flight; retry later",
                type="rate_limit_error",
                code="too_many_requests",
            )

        request_id = protocol.new_id()
        exchange = _Exchange(asyncio.get_running_loop())
        version = rules.current.version
        started = time.monotonic()
        state["active"] += 1
        try:
            ticket = engine.submit(
                conversation,
                on_turn=lambda traj: exchange.put("turn", list(traj.messages)),
                on_finished=lambda traj: exchange.put("done", traj),
                on_error=lambda message: exchange.put("error", message),
                max_new_tokens=limit,
                client_tools=chat.tools or (),
                request_id=request_id,
                on_text=(lambda text: exchange.put("text", text)) if chat.stream else None,
            )
        except RuntimeError as exc:
            state["active"] -= 1
            raise APIError(503, str(exc), type="server_error") from None

        def record(traj: Trajectory | None, end: str = "done") -> dict[str, Any]:
            """Write the audit line; ``end``: done, disconnected (the client left) or error."""
            extension = {
                "request_id": request_id,
                "consulted_rules": list(traj.consulted_rules) if traj else [],
                "rulebook_version": version,
                "tool_calls": traj.num_tool_calls if traj else 0,
            }
            audit.write(
                {
                    "request_id": request_id,
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "model": model_name,
                    "rulebook_version": version,
                    "rules_retrieved": extension["consulted_rules"],
                    "rules_cited": protocol.cited_rules(traj, rules.current.rulebook) if traj else [],
                    "rule_verdict": protocol.rule_verdict(traj) if traj else None,
                    "verdict": protocol.answer_verdict(traj) if traj else "none",
                    "tool_calls": extension["tool_calls"],
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": traj.generated_tokens if traj else 0,
                    "latency_s": round(time.monotonic() - started, 3),
                    "finish_reason": protocol.finish_reason(traj) if traj else end,
                    "stream": chat.stream,
                }
            )
            return extension

        headers = {"x-request-id": request_id, "x-rulewise-rulebook-version": version}
        if chat.ignored_fields:
            headers["x-rulewise-ignored"] = ",".join(chat.ignored_fields)
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            stream = _stream(
                exchange,
                ticket,
                request_id,
                model_name,
                prompt_tokens,
                record,
                limits.show_reasoning,
                include_usage,
                state,
            )
            return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
        try:
            traj = await _wait(exchange, ticket, request)
        except APIError:
            record(None, "error")
            raise
        finally:
            state["active"] -= 1
        if traj is None:  # the client left; nobody reads a reply
            record(None, "disconnected")
            return Response(status_code=499)
        extension = record(traj)
        headers["x-rulewise-rules"] = ",".join(traj.consulted_rules)
        body_out = protocol.completion_body(
            request_id=request_id,
            model=model_name,
            traj=traj,
            prompt_tokens=prompt_tokens,
            extension=extension,
            show_reasoning=limits.show_reasoning,
        )
        return JSONResponse(body_out, headers=headers)

    return app


async def _wait(exchange: _Exchange, ticket: Ticket, request: Request) -> Trajectory | None:
    """The finished conversation, or None when the client disconnected first (then cancelled)."""
    while True:
        try:
            kind, value = await asyncio.wait_for(exchange.events.get(), DISCONNECT_POLL_SECONDS)
        except TimeoutError:
            if await request.is_disconnected():
                ticket.cancel()
                return None
            continue
        if kind == "done":
            return value
        if kind == "error":
            raise APIError(500, value, type="server_error")


async def _stream(
    exchange: _Exchange,
    ticket: Ticket,
    request_id: str,
    model: str,
    prompt_tokens: int,
    record,
    show_reasoning: bool,
    include_usage: bool,
    state: dict[str, int],
) -> AsyncIterator[str]:
    """Server-sent events: the role, then reasoning and answer token by token as they are written
    (per turn with a backend that generates whole turns), then a last chunk with the finish reason
    and the ``rulewise`` extension. Tool calls and results stay on the server. A client that
    leaves cancels the ticket."""
    finished = False
    sent_messages = 0
    turn = protocol.TurnStream()  # the turn being written
    answer_sent = ""  # the answer text the last finished turn streamed
    reasoning_sent = False  # turns' reasoning joins with a blank line, as in the full reply

    def reasoning_chunk(delta: str, first_of_turn: bool) -> str:
        nonlocal reasoning_sent
        joined = "\n\n" + delta if first_of_turn and reasoning_sent else delta
        reasoning_sent = True
        return protocol.chunk(request_id, model, {"reasoning_content": joined})

    try:
        yield protocol.chunk(request_id, model, {"role": "assistant", "content": ""})
        while True:
            kind, value = await exchange.events.get()
            if kind == "error":
                error = APIError(500, value, type="server_error")
                yield f"data: {json.dumps(error.body())}\n\n"
                finished = True
                record(None, "error")
                break
            if kind == "text":
                first_of_turn = not turn.sent["reasoning_content"]
                for key, delta in turn.update(value).items():
                    if key == "content":
                        yield protocol.chunk(request_id, model, {key: delta})
                    elif show_reasoning:
                        yield reasoning_chunk(delta, first_of_turn)
                continue
            if kind == "turn":
                new, sent_messages = value[sent_messages:], len(value)
                for message in new:
                    if message["role"] != "assistant":
                        continue
                    streamed = turn.sent["reasoning_content"]
                    reasoning = protocol.remainder(message_reasoning(message), streamed)
                    if show_reasoning and reasoning:
                        yield reasoning_chunk(reasoning, not streamed)
                    answer_sent, turn = turn.sent["content"], protocol.TurnStream()
                continue
            traj: Trajectory = value
            finished = True
            answer, _ = protocol.answer_and_reasoning(traj)
            rest = protocol.remainder(answer, answer_sent)
            if rest:
                yield protocol.chunk(request_id, model, {"content": rest})
            calls = protocol.client_tool_calls(traj)
            if calls:
                yield protocol.chunk(
                    request_id, model, {"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}
                )
            extension = record(traj)
            extra: dict[str, Any] = {"rulewise": extension}
            if include_usage:
                extra["usage"] = protocol.usage(prompt_tokens, traj)
            yield protocol.chunk(request_id, model, {}, protocol.finish_reason(traj), **extra)
            break
        yield "data: [DONE]\n\n"
    finally:
        state["active"] -= 1
        if not finished:  # the client went away mid-stream: free its batch slot
            ticket.cancel()
            record(None, "disconnected")
