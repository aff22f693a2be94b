"""Loading weights from the Hugging Face Hub without waiting on a network that is not there.

Any backbone that loads a Hub id goes through :func:`load_from_hub`::

    unet = load_from_hub(model_id, lambda local_only: UNet2DConditionModel.from_pretrained(
        model_id, subfolder="unet", local_files_only=local_only), revision=revision)

1. The local Hugging Face cache is tried first (``local_only=True``): no
   network at all when the weights are there.
2. If they are not: with ``HF_HUB_OFFLINE`` set, or when a quick probe of
   the Hub (one HEAD request, :data:`PROBE_TIMEOUT` seconds) fails, a
   :class:`HubUnavailableError` says so in one line, with commands that
   exist (``hf download ID --local-dir DIR``, then ``--model DIR``), instead
   of huggingface_hub's retries (about half a minute) and a misleading
   "no file named config.json".
3. Otherwise the loader runs again, allowed to download.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, TypeVar

from vidprop.errors import ModelLoadError

__all__ = [
    "PROBE_TIMEOUT",
    "HubUnavailableError",
    "hub_offline",
    "probe_hub",
    "hub_cache_dir",
    "is_cached",
    "download_hint",
    "hub_cli",
    "load_from_hub",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds the connectivity probe waits for the Hub.
PROBE_TIMEOUT = 2.0

_TRUE = {"1", "on", "yes", "true"}


class HubUnavailableError(ModelLoadError):
    """The weights are not in the local cache and cannot be downloaded (offline, or the Hub is unreachable)."""


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (now, or when huggingface_hub was imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - huggingface_hub missing or changed
        return False


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except Exception:  # noqa: BLE001
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def probe_hub(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when the Hub answers (any HTTP status) within ``timeout`` seconds, else why not (one line).

    One HEAD request with the standard library; the usual proxy variables
    (``HTTPS_PROXY``...) are honoured.
    """
    import urllib.error
    import urllib.request

    url = endpoint or _endpoint()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            pass
    except urllib.error.HTTPError:  # an HTTP answer, even an error status: the Hub is reachable
        return None
    except Exception as exc:  # noqa: BLE001 - DNS, connect, TLS, timeout, proxy errors
        reason = getattr(exc, "reason", None) or exc
        text = str(reason).strip().splitlines()
        return f"{url}: {text[0] if text else type(exc).__name__}"
    return None


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder in use (``HF_HUB_CACHE``, ``HF_HOME``/hub, ...)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001
        return Path("~/.cache/huggingface/hub").expanduser()


def is_cached(repo_id: str, revision: str | None = None) -> bool:
    """True when the local cache holds a snapshot of ``repo_id`` at ``revision`` (default main)."""
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, revision=revision, local_files_only=True, allow_patterns=["model_index.json"])
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and friends
        return False
    return True


def hub_cli() -> str:
    """The installed huggingface_hub's command-line tool: ``hf`` (since 0.34), else ``huggingface-cli``."""
    try:
        from importlib import metadata

        names = {ep.name for ep in metadata.distribution("huggingface_hub").entry_points
                 if ep.group == "console_scripts"}
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        return "hf"
    return "hf" if "hf" in names or "huggingface-cli" not in names else "huggingface-cli"


def download_hint(repo_id: str, revision: str | None = None) -> str:
    """How to get ``repo_id`` onto an offline machine, with commands that exist."""
    folder = repo_id.rstrip("/").rsplit("/", 1)[-1]
    rev = f" --revision {revision}" if revision else ""
    return (f"on a machine with network access run `{hub_cli()} download {repo_id}{rev} --local-dir {folder}`, "
            f"copy that folder here and pass --model /path/to/{folder}")


def load_from_hub(
    repo_id: str,
    load: Callable[[bool], T],
    *,
    revision: str | None = None,
    what: str = "model",
    suggest: str | None = None,
) -> T:
    """``load(local_only)`` from the local cache if it can, else from the Hub when it is reachable.

    Args:
        repo_id: the Hub id (named in errors).
        load: loads everything needed; ``local_only=True`` must not touch the network.
        revision: the revision asked for (named in the hint).
        what: what is loaded, for messages ("Stable Diffusion model", ...).
        suggest: the id to suggest downloading (default ``repo_id``; e.g. a mirror of a withdrawn id).

    Raises :class:`HubUnavailableError` (one line) when the cache cannot
    serve it and downloading is impossible; errors of the downloading load
    propagate unchanged.
    """
    try:
        return load(True)
    except Exception as exc:  # noqa: BLE001 - not (completely) in the cache, or unreadable there
        first = str(exc).strip().splitlines()
        log.debug("loading %s from the local cache failed: %s", repo_id, first[0] if first else type(exc).__name__)
    cache = hub_cache_dir()
    where = (f"is only partly in the local Hugging Face cache ({cache})" if is_cached(repo_id, revision)
             else f"is not in the local Hugging Face cache ({cache})")
    hint = download_hint(suggest or repo_id, revision)
    if hub_offline():
        raise HubUnavailableError(
            f"{what} '{repo_id}' {where} and HF_HUB_OFFLINE=1 is set, so nothing is downloaded; {hint}"
        )
    reason = probe_hub()
    if reason is not None:
        raise HubUnavailableError(f"{what} '{repo_id}' {where} and the Hub cannot be reached ({reason}); {hint}")
    log.info("downloading %s '%s' from the Hugging Face Hub into %s", what, repo_id, cache)
    return load(False)
