"""A small client for OpenAI-compatible chat endpoints (vLLM, TGI, hosted APIs).

Shared by the LLM judge and the endpoint teachers. Standard library only; retries transient
failures (connection errors, timeouts, HTTP 429 and 5xx) with exponential backoff and turns
everything else into one clear RulewiseError.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from rulewise.errors import RulewiseError


def parse_endpoint_spec(spec: str, prefix: str) -> tuple[str, str] | None:
    """``PREFIX:MODEL@URL`` → ``(model, url)``, or None if ``spec`` is not of that form."""
    if not spec.startswith(f"{prefix}:") or "@" not in spec:
        return None
    model, _, url = spec.removeprefix(f"{prefix}:").rpartition("@")
    if not model or not url.startswith(("http://", "https://")):
        return None
    return model, url


class ChatClient:
    """POST ``{base_url}/chat/completions`` with retries; returns the reply message dict."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(api_key_env, "")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds

    def chat(self, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        body = json.dumps({"model": self.model, "messages": messages, **params}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return json.loads(reply.read())["choices"][0]["message"]
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:300]
                if exc.code != 429 and exc.code < 500:  # our request is wrong: retrying will not help
                    raise RulewiseError(
                        f"endpoint {self.url} rejected the request: HTTP {exc.code} {detail}"
                    ) from None
                last_error = f"HTTP {exc.code} {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last_error = str(getattr(exc, "reason", exc))
            except (KeyError, IndexError, json.JSONDecodeError) as exc:
                last_error = f"unexpected reply ({exc})"
        raise RulewiseError(
            f"endpoint {self.url} failed after {self.max_retries + 1} attempts: {last_error}",
            hint="is the server running? check the MODEL@URL you passed",
        )
