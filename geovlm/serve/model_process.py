"""The served model in a process of its own, beside the HTTP server's.

One Python process serving HTTP and running the model shares one interpreter lock between the
event loop, the image decoding and the model's feeding loop, so each slows the others (vLLM
runs its engine core in its own process for the same reason). Here the HTTP process keeps the
queue and the batching (`geovlm.serve.batcher.Batcher`); each batch goes to the model process
through a pipe as prompts and images, and comes back as results. The model process encodes one
batch while its model runs the previous one, as in-process classify does.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from geovlm.errors import GeovlmError
from geovlm.events.library_warnings import LOG_FORMAT, silence_harmless_warnings
from geovlm.prefetch import prepared_ahead

if TYPE_CHECKING:
    from geovlm.backends.chat import ChatFormat
    from geovlm.backends.choice import ModelChoice
    from geovlm.serve.engine import GenerateKey, Prompt, ScoreKey

__all__ = ["ModelProcess", "ModelProcessExited"]

log = logging.getLogger(__name__)

#: Batches sent to the model process and not yet answered, at most (more wait in the queue,
#: where they can still be cancelled).
IN_FLIGHT = 2


class ModelProcessExited(GeovlmError):
    """The model process is gone (killed, out of memory): nothing more can be answered."""


@dataclass(frozen=True, slots=True)
class _Ready:
    """What the model process says once the model is loaded: what the HTTP side needs of it."""

    supports_images: bool
    chat: ChatFormat


class ModelProcess:
    """A model loaded and run in a child process; `prepare` and `run` are a Batcher's stages.

    `prepare` sends a batch (it returns at once unless `IN_FLIGHT` batches are unanswered);
    `run` waits for the oldest batch's results. Batches are answered in the order sent.

    Parameters
    ----------
    choice
        The model to load, as ``--model`` and its options resolved it.

    Raises
    ------
    GeovlmError
        Whatever loading the model raised in the child (missing weights, a bad device, ...).
    ModelProcessExited
        If the child died while loading.
    """

    def __init__(self, choice: ModelChoice) -> None:
        context = multiprocessing.get_context("spawn")  # no forked CUDA or thread state
        # One-way pipes, (receiving end, sending end): batches go down one, results come up
        # the other.
        requests_in, self._requests = context.Pipe(duplex=False)
        self._results, results_out = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve_model,
            args=(choice, requests_in, results_out, logging.getLogger().getEffectiveLevel()),
            name="geovlm-serve-model", daemon=True,
        )
        self._process.start()
        # Without the child's ends here, each side sees EOF when the other goes.
        requests_in.close()
        results_out.close()
        self._slots = threading.BoundedSemaphore(IN_FLIGHT)
        try:
            ready = self._receive()
        except BaseException:  # died loading, or Ctrl-C meanwhile: nothing worth waiting for
            self._process.kill()
            self._process.join()
            raise
        if isinstance(ready, BaseException):
            self.close()
            raise ready
        self.supports_images: bool = ready.supports_images
        self.chat: ChatFormat = ready.chat

    @property
    def alive(self) -> bool:
        """Whether the model process still runs."""
        return self._process.is_alive()

    def prepare(self, key: ScoreKey | GenerateKey, payloads: list[Prompt]) -> None:
        """Send one batch to the model process (the batcher's first stage)."""
        self._slots.acquire()
        try:
            self._requests.send((key, payloads))
        except BaseException as exc:  # nothing was sent: the slot is free again
            self._slots.release()
            if isinstance(exc, OSError):
                raise self._exited() from None
            raise

    def run(self, key: ScoreKey | GenerateKey, inputs: None) -> Sequence[Any]:
        """The oldest sent batch's results (the batcher's second stage).

        Raises
        ------
        Exception
            What the batch raised in the model process, or `ModelProcessExited`.
        """
        try:
            results = self._receive()
        finally:
            self._slots.release()
        if isinstance(results, BaseException):
            raise results
        return results

    def close(self) -> None:
        """Stop the model process after the batches it was sent."""
        with contextlib.suppress(OSError):
            self._requests.send(None)
        self._requests.close()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._results.close()

    def _receive(self) -> Any:
        """The next answer; one that does not unpickle here becomes that answer's error."""
        try:
            return self._results.recv()
        except (EOFError, OSError):
            raise self._exited() from None
        except Exception as exc:
            return RuntimeError(f"an answer of the model process could not be read: {exc}")

    def _exited(self) -> ModelProcessExited:
        self._process.join(timeout=5)
        code = self._process.exitcode
        log.error("the model process exited (code %s)", code)
        return ModelProcessExited(
            f"the server's model process exited (code {code}): restart geovlm serve."
        )


def _serve_model(choice: ModelChoice, requests: Connection, results: Connection,
                 log_level: int) -> None:
    """The child: load the model, then answer batches until told to stop or orphaned."""
    # Signals to the whole process group (Ctrl-C, systemd's SIGTERM) reach this process too;
    # the HTTP process finishes its requests first, then closes the pipe, which ends this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    silence_harmless_warnings()
    from geovlm.backends.hf import HFBackend
    from geovlm.serve.engine import ModelEngine

    try:
        backend = choice.load_backend()
    except Exception as exc:  # sent back: the HTTP process reports it as the CLI would
        results.send(_sendable(exc))
        return
    assert isinstance(backend, HFBackend), "geovlm serve runs local weights"
    engine = ModelEngine(backend)
    results.send(_Ready(backend.supports_images, backend.chat))

    def received() -> Iterator[tuple[Any, list[Any]] | Exception]:
        """The batches sent, until the HTTP process says stop or is gone."""
        while True:
            try:
                request = requests.recv()
            except (EOFError, OSError):
                return
            except Exception as exc:  # a batch that does not unpickle: it fails alone
                yield exc
                continue
            if request is None:
                return
            yield request

    def prepared(request: tuple[Any, list[Any]] | Exception) -> Any:
        """The batch's model inputs, or what went wrong (answered in its turn)."""
        if isinstance(request, Exception):
            return request
        try:
            return engine.prepare(*request)
        except Exception as exc:
            return exc

    # The next batch is received and encoded while the model runs this one.
    with contextlib.closing(prepared_ahead(received(), prepared)) as batches:
        for request, inputs in batches:
            answer: Any = inputs
            if not isinstance(inputs, Exception):
                try:
                    answer = list(engine.run(request[0], inputs))  # type: ignore[index]
                except Exception as exc:
                    answer = exc
            try:
                results.send(_sendable(answer) if isinstance(answer, Exception) else answer)
            except OSError:  # the HTTP process is gone
                return


def _sendable(exc: Exception) -> Exception:
    """`exc` if it survives the pipe (pickled and unpickled), else an error with its words."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
