"""Offline mode and reachability of the Hugging Face hub, shared by every command that loads a model.

`go_offline()` is what `--offline` does: the hub's offline switches are set in the environment before
any hub-aware library (huggingface_hub, transformers, diffusers, peft) is imported, and patched into
their constants when one already is, so nothing tries the network: no model lookup, no retried
`adapter_config.json` lookup, no user-agent registry fetch, no telemetry.

Without the flag, `check_hub_reachable` probes the hub once, with a short timeout, before the first
model given as a hub id is resolved. Unreachable, it turns offline mode on: a model already in the
local cache still loads, and one that is not fails at once with one line, instead of minutes of retries.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

from .logs import get_logger

log = get_logger(__name__)

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DISABLE_TELEMETRY": "1",
}
PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE or \
        os.environ.get("TRANSFORMERS_OFFLINE", "").strip().lower() in _TRUE


def go_offline() -> None:
    """Turn the hub's offline mode on for this process (and its children)."""
    os.environ.update(OFFLINE_ENV)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported already: its module-level switches were read from the old environment
        constants.HF_HUB_OFFLINE = True
        constants.HF_HUB_DISABLE_TELEMETRY = True
        if hasattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
            constants.HF_HUB_DISABLE_IMPLICIT_TOKEN = True
    for name in ("diffusers.utils.hub_utils", "diffusers.utils.constants"):  # `from ... import HF_HUB_OFFLINE`
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "HF_HUB_OFFLINE"):
            module.HF_HUB_OFFLINE = True
    tf_hub = sys.modules.get("transformers.utils.hub")
    if tf_hub is not None and hasattr(tf_hub, "_is_offline_mode"):
        tf_hub._is_offline_mode = True


def looks_like_hub_id(name) -> bool:
    """'owner/name' that is not an existing path: what the hub would be asked for."""
    name = str(name)
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))
            and not os.path.exists(name))


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def check_hub_reachable(names) -> bool:
    """Before resolving any of `names` that is a hub id (None and local paths are skipped): unless offline,
    try one TCP connection to the hub; when it fails, go offline (cached models still load). Returns
    whether the hub is used."""
    if is_offline():
        go_offline()
        return False
    if not any(n and looks_like_hub_id(n) for n in names):
        return False
    try:
        socket.create_connection(_endpoint(), timeout=PROBE_TIMEOUT_S).close()
        return True
    except OSError as e:
        log.warning(f"the model hub is not reachable ({e}); using only models already downloaded")
        go_offline()
        return False
