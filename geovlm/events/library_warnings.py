"""Keep known-harmless library warnings off stderr, so that an error is one line.

Each entry names one warning precisely (category, message, module or logger) and says why it is
harmless; everything else a library says still reaches the user.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["LOG_FORMAT", "silence_harmless_warnings"]

#: geovlm's log lines on stderr: the CLI's, and those of geovlm serve's model process.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

#: ``(category, message regex, module regex)`` of `warnings` that ask nothing of a geovlm user.
_HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # transformers 5.2x renames forward's `past_key_values` to `cache` (removal in 5.40, beyond
    # the tested range); scoring passes the name every supported 5.x release accepts.
    (FutureWarning, r"`past_key_values` is deprecated", r"transformers\."),
    # peft asks transformers for the old name of a gradient-checkpointing flag while loading.
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\."),
    # The same rename for enabling it (activation_checkpointing_enable, from 5.2x only), which
    # peft's prepare_model_for_kbit_training and geovlm train call by the name 5.0 knows.
    (FutureWarning, r"`gradient_checkpointing_enable` is deprecated", r"transformers\."),
)

#: Logger name -> start of the log messages from it that ask nothing of a geovlm user.
_HARMLESS_LOGS: dict[str, tuple[str, ...]] = {
    # Optional faster CPU 4-bit kernels from the `kernels` package: bitsandbytes falls back to
    # its own, with the same results.
    "bitsandbytes.backends.cpu.ops": (
        "Failed to load CPU gemm_4bit_forward from kernels-community",
    ),
    # 8-bit matmuls on the CPU compute in float16, as they do on a GPU.
    "bitsandbytes.autograd._functions": ("MatMul8bitLt: inputs will be cast",),
}


class _DropMessages(logging.Filter):
    """Drops log records whose message template starts with one of `starts`."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def silence_harmless_warnings() -> None:
    """Filter the known-harmless warnings and log lines of torch's libraries, once per process.

    The command line calls it first; library users decide for themselves.
    """
    for category, message, module in _HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, starts in _HARMLESS_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(starts))
