"""Before a model loads: check that its weights are on disk, or that they can be downloaded.

Without this check, a machine without the weights and without a network spends half a minute in
huggingface_hub's retries before transformers gives up. `check_downloads` answers in at most a
few seconds, before torch or transformers are imported: a local folder or a hub id already in the
Hugging Face cache needs nothing (and nothing touches the network); any other hub id needs the
hub, so ``HF_HUB_OFFLINE`` or an endpoint that does not answer within `PROBE_SECONDS` ends in one
sentence that says how to get the weights.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from geovlm.errors import ModelNotFoundError
from geovlm.models import availability

__all__ = ["PROBE_SECONDS", "HubWeights", "check_downloads", "hub_unreachable"]

log = logging.getLogger(__name__)

#: The longest wait for the hub endpoint to answer, name lookup and connection included.
PROBE_SECONDS = 2.5


@dataclass(frozen=True, slots=True)
class HubWeights:
    """A model or adapter to be loaded, and the option that names it."""

    #: A hub id or a local folder.
    ident: str
    #: The command-line option that chooses it (``--model`` or ``--adapter``).
    option: str


def check_downloads(*weights: HubWeights) -> list[str]:
    """The hub ids that must be downloaded before loading, after checking that they can be.

    Parameters
    ----------
    *weights
        The model and adapter about to be loaded.

    Returns
    -------
    list of str
        The hub ids not in the Hugging Face cache; empty when everything is local, in which
        case nothing touched the network.

    Raises
    ------
    ModelNotFoundError
        If some are missing and ``HF_HUB_OFFLINE`` is set, or the hub endpoint is unreachable.

    Examples
    --------
    >>> check_downloads(HubWeights("/", "--model"))
    []
    """
    missing = [item for item in weights if _needs_download(item.ident)]
    if not missing:
        return []
    from huggingface_hub import constants  # read now: tests and users may switch it at run time

    if constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(
            f"{_names(missing)} not in the Hugging Face cache and HF_HUB_OFFLINE is set:"
            f" download {_them(missing)} on a machine with a network ({_commands(missing)}) and"
            f" copy the cache over to {constants.HF_HUB_CACHE}, pass {_local_copies(missing)},"
            " or unset HF_HUB_OFFLINE."
        )
    if (problem := hub_unreachable(constants.ENDPOINT)) is not None:
        raise ModelNotFoundError(
            f"{_names(missing)} not in the Hugging Face cache and {constants.ENDPOINT} cannot be"
            f" reached ({problem}): connect to a network and rerun to download {_them(missing)}"
            f" once, download {_them(missing)} elsewhere ({_commands(missing)}) and copy the"
            f" cache over to {constants.HF_HUB_CACHE}, or pass {_local_copies(missing)}."
        )
    ids = [item.ident for item in missing]
    log.info("downloading %s from %s", ", ".join(ids), constants.ENDPOINT)
    return ids


def hub_unreachable(endpoint: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why the hub endpoint cannot be reached, or None when it answers.

    One HEAD request through huggingface_hub's own HTTP session (so its proxy settings apply),
    on a daemon thread: a name lookup that hangs cannot hold the caller, or the exit, longer
    than `timeout`.

    Parameters
    ----------
    endpoint
        The hub's URL (``huggingface_hub.constants.ENDPOINT``, set by ``HF_ENDPOINT``).
    timeout
        Seconds to wait for an answer.

    Returns
    -------
    str or None
        The reason in a few words, e.g. ``"no answer within 2.5 s"``; None if it answered
        without a server error.
    """
    from huggingface_hub.utils import get_session, httpx  # imported here, not on the clock

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            response = get_session().head(endpoint, timeout=timeout)
        except (httpx.HTTPError, ConnectionError) as exc:  # ConnectionError: HF_HUB_OFFLINE
            outcome.append(" ".join(str(exc).split()) or type(exc).__name__)
            return
        error = response.status_code >= 500
        outcome.append(f"it answers HTTP {response.status_code}" if error else None)

    thread = threading.Thread(target=probe, name="geovlm-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _needs_download(ident: str) -> bool:
    """Whether `ident` is a well-formed hub id missing from the cache (folders never are)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(ident).expanduser().exists():
        return False
    try:
        validate_repo_id(ident)
    except HFValidationError:  # a path or a typo: the loader says what is wrong with it
        return False
    return not availability(ident)


def _names(missing: list[HubWeights]) -> str:
    verb = "is" if len(missing) == 1 else "are"
    return f"{' and '.join(item.ident for item in missing)} {verb}"


def _them(missing: list[HubWeights]) -> str:
    return "it" if len(missing) == 1 else "them"


def _commands(missing: list[HubWeights]) -> str:
    return ", ".join(f"`hf download {item.ident}`" for item in missing)


def _local_copies(missing: list[HubWeights]) -> str:
    options = " and ".join(f"{item.option} PATH" for item in missing)
    return f"{'a local copy' if len(missing) == 1 else 'local copies'} with {options}"
