"""The client for OpenAI-compatible chat endpoints (vLLM, TGI, hosted APIs), on the ``openai`` library.

Shared by the LLM judge and the endpoint teachers. The ``openai`` client does the HTTP, the
timeouts and the parsing; this wrapper adds the retry policy (connection errors, timeouts,
HTTP 408/409/429 and 5xx, retried with exponential backoff; any other 4xx is our request's
fault and fails at once) and turns every failure into one RulewiseError naming the endpoint.
Each reply carries its ``finish_reason``: a teacher's answer cut off at ``max_tokens`` is not
training data (the teacher marks its trajectory unfinished, and synthesis rejects it).
"""

from __future__ import annotations

import os
import time
from typing import Any

from rulewise.errors import RulewiseError

RETRIED_STATUS = {408, 409, 429}  # and every 5xx


def parse_endpoint_spec(spec: str, prefix: str) -> tuple[str, str] | None:
    """``PREFIX:MODEL@URL`` → ``(model, url)``, or None if ``spec`` is not of that form."""
    if not spec.startswith(f"{prefix}:") or "@" not in spec:
        return None
    model, _, url = spec.removeprefix(f"{prefix}:").rpartition("@")
    if not model or not url.startswith(("http://", "https://")):
        return None
    return model, url


class ChatClient:
    """``chat.completions.create`` with retries; returns the reply message as a dict, plus its
    ``finish_reason``."""

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
        from openai import OpenAI

        self.model = model
        self.url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        # a local server needs no key; the library insists on one
        api_key = os.environ.get(api_key_env) or "none"
        self.client = OpenAI(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=0)

    def chat(self, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        import openai

        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                reply = self.client.chat.completions.create(model=self.model, messages=messages, **params)
                choice = reply.choices[0]
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRIED_STATUS and exc.status_code < 500:
                    raise RulewiseError(
                        f"endpoint {self.url} rejected the request: HTTP {exc.status_code} {str(exc.body)[:300]}",
                        hint="check the model name and the API key (OPENAI_API_KEY)",
                    ) from None
                last_error = f"HTTP {exc.status_code}"
            except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
                last_error = str(exc) or type(exc).__name__
            except (IndexError, TypeError, AttributeError) as exc:
                last_error = f"unexpected reply ({exc})"
            else:
                message = choice.message.model_dump(exclude_none=True)
                return {**message, "finish_reason": choice.finish_reason}
        raise RulewiseError(
            f"endpoint {self.url} failed after {self.max_retries + 1} attempts: {last_error}",
            hint="is the server running? check the MODEL@URL you passed",
        )
