"""Fast, clear failure when the Hugging Face Hub cannot be reached.

Without this, transformers and datasets retry for about a minute before failing with a
message about network settings; here an offline machine is the normal case.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from rulewise.errors import RulewiseError


def in_local_cache(repo_id: str, *, probe: str = "config.json") -> bool:
    """Whether the Hub repo ``repo_id`` was downloaded before (its ``probe`` file is in the HF cache).

    ``HF_HUB_CACHE`` / ``HF_HOME`` are read now, not when huggingface_hub was imported.
    """
    from huggingface_hub import try_to_load_from_cache

    home = os.environ.get("HF_HOME")
    cache = os.environ.get("HF_HUB_CACHE") or (os.path.join(home, "hub") if home else None)
    try:
        found = try_to_load_from_cache(repo_id, probe, cache_dir=cache)
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def check_hub_reachable(spec: str, *, what: str, hint: str, cached_probe: str | None = None) -> None:
    """Raise a RulewiseError at once if ``spec`` would need the Hub and the Hub is unavailable.

    With ``cached_probe`` (a file every such repo has, e.g. ``config.json``), a repo already in
    the local Hugging Face cache passes: transformers loads it from there offline.
    """
    if cached_probe is not None and in_local_cache(spec, probe=cached_probe):
        return
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
