"""Model backends behind one `Backend` protocol: transformers in-process (`hf`), servers (`openai`).

`HFBackend`, `Quantization` and `PromptTemplate` are imported lazily, so importing this package
(e.g. for the `Backend` protocol) does not import torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from geovlm.backends.base import Backend, ModelRun

__all__ = ["Backend", "HFBackend", "ModelRun", "PromptTemplate", "Quantization"]

_LAZY = {
    "HFBackend": "geovlm.backends.hf",
    "PromptTemplate": "geovlm.backends.chat",
    "Quantization": "geovlm.models.quantization",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
