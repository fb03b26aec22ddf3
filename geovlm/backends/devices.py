"""Where a model runs: a torch device string checked against this machine before any load.

`check_device_name` needs no torch, so the CLI can refuse a typo before importing the model stack.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from geovlm.enums import CheckedEnum
from geovlm.errors import DeviceError, ParameterError

if TYPE_CHECKING:
    import torch

__all__ = ["DeviceType", "check_device_name", "resolve_device"]

#: A torch device string: a kind, optionally with an index (``cuda:1``).
_DEVICE_NAME = re.compile(r"(?P<kind>[a-z_]+)(?::(?P<index>[0-9]+))?")
_ACCEPTED = "use cpu, cuda, cuda:N (N a GPU number) or mps"


class DeviceType(CheckedEnum):
    """The kinds of torch device geovlm runs models on."""

    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


def check_device_name(device: str) -> DeviceType:
    """Check the form of a device string without torch: a kind geovlm runs on, maybe an index.

    Parameters
    ----------
    device
        E.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``.

    Returns
    -------
    DeviceType
        The device's kind; whether this machine has it is `resolve_device`'s check.

    Raises
    ------
    ParameterError
        If ``device`` is not a device string, or names a kind geovlm does not run on.

    Examples
    --------
    >>> check_device_name("cuda:1")
    <DeviceType.CUDA: 'cuda'>
    """
    match = _DEVICE_NAME.fullmatch(device)
    if match is None:
        raise ParameterError(f"--device {device!r} is not a device: {_ACCEPTED}.")
    try:
        return DeviceType(match["kind"])
    except ValueError:
        raise ParameterError(
            f"--device {device}: geovlm does not run on {match['kind']}; {_ACCEPTED}."
        ) from None


def resolve_device(device: str | None) -> torch.device:
    """The device to run on: ``device`` if given and present, else CUDA when available, else CPU.

    Parameters
    ----------
    device
        A torch device string (``cpu``, ``cuda``, ``cuda:N``, ``mps``), or None to choose.

    Returns
    -------
    torch.device

    Raises
    ------
    ParameterError
        If ``device`` is not a device string, or names a kind geovlm does not run on.
    DeviceError
        If the device is absent on this machine (no CUDA, no such GPU number, no MPS).

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = check_device_name(device)
    where = torch.device(device)
    if kind is DeviceType.CUDA:
        _check_cuda(where, device)
    elif kind is DeviceType.MPS and not torch.backends.mps.is_available():
        raise DeviceError(
            f"--device {device} asks for Apple's MPS, which this torch cannot use here;"
            " pass --device cpu or leave --device out."
        )
    return where


def _check_cuda(where: torch.device, device: str) -> None:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        built = "" if torch.version.cuda else ", a build without CUDA"
        raise DeviceError(
            f"--device {device} asks for a CUDA GPU but torch {torch.__version__}{built} finds"
            " none on this machine; pass --device cpu or leave --device out."
        )
    if where.index is not None and where.index >= count:
        last = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise DeviceError(
            f"--device {device} names GPU {where.index} but this machine has {count}"
            f" ({last}); pick one of those."
        )
