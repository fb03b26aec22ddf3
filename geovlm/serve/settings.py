"""What a server accepts and how it batches: limits, the API key, and the bind check."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from geovlm.errors import ParameterError

__all__ = ["API_KEY_ENV", "ServeSettings", "is_loopback"]

#: The environment variable read when ``--api-key`` is not given.
API_KEY_ENV = "GEOVLM_API_KEY"


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address.

    Parameters
    ----------
    host
        An IP address or a host name (resolved).

    Returns
    -------
    bool
        False for wildcard addresses (``0.0.0.0``, ``::``) and for names that do not resolve.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """How the server listens, whom it answers and how much it takes.

    Attributes
    ----------
    host, port
        Where to listen.
    api_key
        The key clients send as ``Authorization: Bearer KEY``, or None (loopback only).
    max_batch
        Most chips or prompts run through the model together.
    max_wait_ms
        Longest a request waits for others to fill its batch.
    max_queue
        Most chips or prompts waiting; beyond it requests get 503 with ``Retry-After``.
    max_body_bytes
        Largest request body (413 beyond).
    max_images
        Most images in one request (413 beyond).
    max_image_pixels
        Largest ``width * height`` of one image (400 beyond).
    timeout_s
        Longest a request may wait and run (504 beyond).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 256
    max_body_bytes: int = 32 * 1024 * 1024
    max_images: int = 64
    max_image_pixels: int = 4096 * 4096
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not (self.api_key or is_loopback(self.host)):
            raise ParameterError(
                f"--host {self.host} is reachable from other machines: pass --api-key KEY"
                f" (or set {API_KEY_ENV}), or bind 127.0.0.1."
            )
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_images",
                     "max_image_pixels"):
            if getattr(self, name) < 1:
                raise ParameterError(f"--{name.replace('_', '-')} must be at least 1.")
        if self.timeout_s <= 0 or self.max_wait_ms < 0:
            raise ParameterError("--timeout must be positive and --max-wait-ms not negative.")

    @classmethod
    def from_options(
        cls, api_key: str | None = None, **options: float | int | str
    ) -> ServeSettings:
        """Settings from command-line options, the key falling back to ``GEOVLM_API_KEY``.

        Parameters
        ----------
        api_key
            ``--api-key``; None or empty reads the environment.
        **options
            The other attributes.

        Returns
        -------
        ServeSettings

        Raises
        ------
        ParameterError
            A non-loopback host without a key, or a limit below 1.
        """
        key = api_key or os.environ.get(API_KEY_ENV) or None
        return cls(api_key=key, **options)  # type: ignore[arg-type]
