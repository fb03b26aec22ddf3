"""Before a model loads: check that its weights are on disk, or that they can be downloaded.

Without this check, a machine without the weights and without a network spends half a minute in
huggingface_hub's retries before transformers gives up. `check_downloads` answers in at most a
few seconds, before torch or transformers are imported: a local folder or a hub id complete in
the Hugging Face cache needs nothing (and nothing touches the network); any other hub id, one
that an interrupted download left incomplete included, needs the hub. ``HF_HUB_OFFLINE``, an
endpoint that does not answer within `PROBE_SECONDS`, or one that says the id does not exist or
is not open to this user ends in one sentence that says how to get the weights; otherwise
transformers downloads them (resuming what is cached).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from geovlm.errors import ModelNotFoundError
from geovlm.models.local_weights import Lack, find_folder, lack

__all__ = ["PROBE_SECONDS", "HubAnswer", "HubProbe", "HubWeights", "check_downloads", "probe_hub"]

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


class HubAnswer(Enum):
    """What the hub says about one repository id."""

    #: It answers 2xx or 3xx: the download can start.
    FOUND = "found"
    #: 404: no such repository, or a private one hidden from this user.
    ABSENT = "absent"
    #: 401 or 403: private or gated, and this user may not read it (or, without a token, absent).
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class HubProbe:
    """The hub's answers for some repository ids, or why it gave none."""

    #: The answer for each id it answered for, in the order asked.
    answers: dict[str, HubAnswer] = field(default_factory=dict)
    #: Why the hub cannot be reached, in a few words; None when it answered for every id.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class _Missing:
    """Weights to download, and what their cached snapshot lacks (None: nothing is cached)."""

    weights: HubWeights
    lack: Lack | None


def check_downloads(*weights: HubWeights) -> list[str]:
    """The hub ids that must be downloaded before loading, after checking that they can be.

    Parameters
    ----------
    *weights
        The model and adapter about to be loaded.

    Returns
    -------
    list of str
        The hub ids not complete in the Hugging Face cache; empty when everything is local, in
        which case nothing touched the network.

    Raises
    ------
    ModelNotFoundError
        If some are missing and ``HF_HUB_OFFLINE`` is set, the hub endpoint is unreachable, or
        it says an id does not exist or is not open to this user.

    Examples
    --------
    >>> check_downloads(HubWeights("/", "--model"))
    []
    """
    missing = [found for item in weights if (found := _needs_download(item)) is not None]
    if not missing:
        return []
    from huggingface_hub import constants  # read now: tests and users may switch it at run time

    items = [each.weights for each in missing]
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFoundError(
            f"{_state(missing)} and HF_HUB_OFFLINE is set: download {_them(items)} on a machine"
            f" with a network ({_commands(items)}) and copy the cache over to"
            f" {constants.HF_HUB_CACHE}, pass {_local_copies(items)}, or unset HF_HUB_OFFLINE."
        )
    probe = probe_hub(constants.ENDPOINT, [item.ident for item in items])
    if probe.problem is not None:
        raise ModelNotFoundError(
            f"{_state(missing)} and {constants.ENDPOINT} cannot be reached ({probe.problem}):"
            f" connect to a network and rerun to download {_them(items)} once, download"
            f" {_them(items)} elsewhere ({_commands(items)}) and copy the cache over to"
            f" {constants.HF_HUB_CACHE}, or pass {_local_copies(items)}."
        )
    for item in items:
        answer = probe.answers[item.ident]
        if answer is HubAnswer.ABSENT:
            raise ModelNotFoundError(
                f"{item.ident} does not exist on {constants.ENDPOINT} (or is private): check the"
                f" id given to {item.option}."
            )
        if answer is HubAnswer.REFUSED:
            raise ModelNotFoundError(
                f"{item.ident} is gated or private on {constants.ENDPOINT} (or does not exist):"
                " run `hf auth login` (or set HF_TOKEN) and accept its licence on its page, or"
                f" check the id given to {item.option}."
            )
    ids = [item.ident for item in items]
    log.info("downloading %s from %s", ", ".join(ids), constants.ENDPOINT)
    return ids


def probe_hub(
    endpoint: str, repo_ids: Sequence[str], timeout: float = PROBE_SECONDS
) -> HubProbe:
    """Ask the hub about each repository id, in at most `timeout` seconds all together.

    One ``HEAD {endpoint}/api/models/{id}`` per id, with the user's token if there is one,
    through huggingface_hub's own HTTP session (so its proxy and offline settings apply), on a
    daemon thread: a name lookup that hangs cannot hold the caller, or the exit, longer than
    `timeout`.

    Parameters
    ----------
    endpoint
        The hub's URL (``huggingface_hub.constants.ENDPOINT``, set by ``HF_ENDPOINT``).
    repo_ids
        Model repository ids.
    timeout
        Seconds to wait for all the answers.

    Returns
    -------
    HubProbe
        The answers, or the reason in a few words (``"no answer within 2.5 s"``, ``"it answers
        HTTP 503"``) when the hub cannot be reached, fails, or does not answer in time.
    """
    from huggingface_hub.utils import build_hf_headers, get_session, httpx  # not on the clock

    answers: dict[str, HubAnswer] = {}
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            headers = build_hf_headers()
            for repo_id in repo_ids:
                url = f"{endpoint.rstrip('/')}/api/models/{repo_id}"
                status = get_session().head(url, headers=headers, timeout=timeout).status_code
                if (answer := _answer(status)) is None:
                    outcome.append(f"it answers HTTP {status}")
                    return
                answers[repo_id] = answer
        except httpx.TimeoutException:  # the request's own timeout beat the join below
            outcome.append(f"no answer within {timeout:g} s")
            return
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:  # OSError: HF_HUB_OFFLINE too
            outcome.append(" ".join(str(exc).split()) or type(exc).__name__)
            return
        outcome.append(None)

    thread = threading.Thread(target=probe, name="geovlm-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return HubProbe(problem=f"no answer within {timeout:g} s")
    return HubProbe(answers=dict(answers), problem=outcome[0])


def _answer(status: int) -> HubAnswer | None:
    """What an HTTP status says about a repository; None for a hub that fails (5xx, 429...)."""
    if 200 <= status < 400:
        return HubAnswer.FOUND
    if status == 404:
        return HubAnswer.ABSENT
    return HubAnswer.REFUSED if status in (401, 403) else None


def _needs_download(item: HubWeights) -> _Missing | None:
    """Whether `item` is a well-formed hub id not complete in the cache (folders never are)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(item.ident).expanduser().exists():  # the loader checks a local folder
        return None
    try:
        validate_repo_id(item.ident)
    except HFValidationError:  # a path or a typo: the loader says what is wrong with it
        return None
    folder = find_folder(item.ident)
    if folder is None:
        return _Missing(item, None)
    missing = lack(folder)
    return None if missing is None else _Missing(item, missing)


def _state(missing: list[_Missing]) -> str:
    """``X is not in the Hugging Face cache``, or incomplete there (an interrupted download)."""
    absent = [each.weights for each in missing if each.lack is None]
    partial = [each for each in missing if each.lack is not None]
    clauses = [f"{_names(absent)} not in the Hugging Face cache"] if absent else []
    if partial:
        lacks = ", ".join(dict.fromkeys(f"no {each.lack.value}" for each in partial if each.lack))
        clauses.append(
            f"{_names([each.weights for each in partial])} incomplete in the Hugging Face cache"
            f" ({lacks}: an interrupted download)"
        )
    return " and ".join(clauses)


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
