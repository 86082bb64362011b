"""Fast, clear failure when the Hugging Face Hub cannot be reached.

Without this, transformers and datasets retry for about a minute before failing with a
message about network settings; here an offline machine is the normal case.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from rulewise.errors import RulewiseError


def check_hub_reachable(spec: str, *, what: str, hint: str) -> None:
    """Raise a RulewiseError at once if ``spec`` would need the Hub and the Hub is unavailable."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    reason = "HF_HUB_OFFLINE is set" if offline else None
    if reason is None:
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            reason = f"{host} cannot be reached (no network?)"
    if reason is not None:
        raise RulewiseError(
            f"'{spec}' is {what}, and the Hugging Face Hub is unavailable: {reason}", hint=hint
        )
