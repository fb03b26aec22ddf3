"""The errors a user can cause, each with a one-sentence message that says how to fix it.

The CLI prints a `GeovlmError`'s message and exits with status 2; anything else is a bug.
"""

__all__ = [
    "DatasetError",
    "DependencyError",
    "DeviceError",
    "EndpointError",
    "GeoreferenceError",
    "GeovlmError",
    "InputError",
    "ModelCapabilityError",
    "ModelFileError",
    "ModelNotFoundError",
    "OutputError",
    "ParameterError",
    "PresetError",
    "XbdError",
    "check_share",
    "first_line",
]


class GeovlmError(Exception):
    """Base class of every error caused by the user's input rather than by a bug."""


class InputError(GeovlmError):
    """An input scene or layer is missing, unreadable, corrupt or not georeferenced."""


class XbdError(InputError):
    """An xBD folder or label file is incomplete, malformed or inconsistent."""


class GeoreferenceError(InputError):
    """An image's control points (e.g. an xBD tile's building vertices) cannot fix its position."""


class ParameterError(GeovlmError, ValueError):
    """An option value is out of range or inconsistent with the input."""


class OutputError(GeovlmError):
    """The output path cannot be written, is not a GeoPackage, or belongs to another run."""


class ModelNotFoundError(GeovlmError):
    """A model or adapter id cannot be found locally or in the Hugging Face cache."""


class ModelFileError(GeovlmError):
    """A model or adapter folder is incomplete, corrupt, unknown to transformers, or mismatched."""


class DeviceError(GeovlmError):
    """The chosen device is absent on this machine, or ran out of memory."""


class DependencyError(GeovlmError):
    """A library that an option needs (e.g. bitsandbytes for ``--quantize 4bit``) does not work."""


class ModelCapabilityError(GeovlmError):
    """A model was asked for something it cannot do, e.g. a text-only model given images."""


class DatasetError(InputError):
    """A training or evaluation set is missing, malformed, or cannot be split as asked."""


class EndpointError(GeovlmError):
    """A remote model endpoint (geovlm serve, vLLM) does not answer, refuses the key, or errs."""


class PresetError(GeovlmError):
    """A model preset YAML file is malformed, has unknown or missing keys, or repeats a name."""


def first_line(exc: BaseException) -> str:
    r"""The first line of a library exception's message, to quote inside a one-sentence error.

    Of GDAL's messages joined by ``"; "`` (as pyogrio raises them) only the first is kept: the
    next is usually advice that does not fit (prefixing the path with a driver's name).

    Examples
    --------
    >>> first_line(ValueError("bad value\nthe details")), first_line(OSError())
    ('bad value', 'OSError')
    >>> first_line(OSError("'x.txt' not recognized as being in a supported file format.; It"
    ...                    " might help to specify the correct driver explicitly"))
    "'x.txt' not recognized as being in a supported file format"
    """
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return line.split(".; ")[0].removesuffix(".")



def check_share(option: str, value: float) -> None:
    """Refuse a share (a probability or a fraction of pixels) outside [0, 1], in one sentence.

    Examples
    --------
    >>> check_share("--min-valid", 0.5)
    >>> check_share("--min-confidence", 1.5)
    Traceback (most recent call last):
    ...
    geovlm.errors.ParameterError: --min-confidence 1.5 must lie between 0 and 1.
    """
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"{option} {value} must lie between 0 and 1.")
