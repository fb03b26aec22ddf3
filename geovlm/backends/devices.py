"""Where a model runs: a torch device string checked against this machine before any load."""

from __future__ import annotations

import torch

from geovlm.enums import CheckedEnum
from geovlm.errors import DeviceError, ParameterError

__all__ = ["DeviceType", "resolve_device"]


class DeviceType(CheckedEnum):
    """The kinds of torch device geovlm runs models on."""

    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


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
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accepted = "use cpu, cuda, cuda:N (N a GPU number) or mps"
    try:
        where = torch.device(device)
    except RuntimeError:  # torch: "Expected one of cpu, cuda, ... at start of device string"
        raise ParameterError(f"--device {device!r} is not a device: {accepted}.") from None
    try:
        kind = DeviceType(where.type)
    except ValueError:
        raise ParameterError(
            f"--device {device}: geovlm does not run on {where.type}; {accepted}."
        ) from None
    if kind is DeviceType.CUDA:
        _check_cuda(where, device)
    elif kind is DeviceType.MPS and not torch.backends.mps.is_available():
        raise DeviceError(
            f"--device {device} asks for Apple's MPS, which this torch cannot use here;"
            " pass --device cpu or leave --device out."
        )
    return where


def _check_cuda(where: torch.device, device: str) -> None:
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
