"""How model weights are held in memory: one choice shared by presets, CLI and backends.

Kept free of torch so presets and the CLI can name it without importing the model stack.
"""

from __future__ import annotations

from geovlm.enums import CheckedEnum

__all__ = ["Quantization"]


class Quantization(CheckedEnum):
    """Weight quantization: ``auto`` (4bit on CUDA, else none), ``4bit``, ``8bit`` or ``none``.

    Examples
    --------
    >>> Quantization("4BIT").resolve("cuda:0")
    <Quantization.NF4: '4bit'>
    >>> Quantization("auto").resolve("cpu")
    <Quantization.NONE: 'none'>
    """

    #: 4bit on CUDA, none elsewhere.
    AUTO = "auto"
    #: bitsandbytes NF4 with double quantization and bfloat16 compute.
    NF4 = "4bit"
    #: bitsandbytes LLM.int8().
    INT8 = "8bit"
    #: The model's own precision: bfloat16 on a GPU, float32 on a CPU.
    NONE = "none"

    def resolve(self, device: str) -> Quantization:
        """Replace `AUTO` by the choice for `device` (4bit on CUDA, none elsewhere).

        Parameters
        ----------
        device
            A torch device string such as ``"cuda"``, ``"cuda:1"`` or ``"cpu"``.

        Returns
        -------
        Quantization
            Never `AUTO`.
        """
        if self is not Quantization.AUTO:
            return self
        return Quantization.NF4 if device.startswith("cuda") else Quantization.NONE
