"""Is the Hugging Face hub reachable?

transformers and datasets retry for ~25-30 s before admitting they are offline. We probe once (TCP
connect to the hub or the configured proxy, 3 s) and, when offline, load with local files only, so an
unknown id fails at once with our own message instead of a long wait and a traceback.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

HUB_CHECK_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = HUB_CHECK_TIMEOUT_S) -> bool:
    """False if an offline variable is set or a TCP connect to the hub (or proxy) fails; probed once per process."""
    if any(_env_true(v) for v in _OFFLINE_VARS):
        return False
    proxy = next((os.environ[k] for k in _PROXY_VARS if os.environ.get(k)), "")
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout):
            return True
    except OSError:
        return False
