"""Model backends: in-process transformers (`hf`) behind one `Backend` protocol."""

from geovlm.backends.base import Backend

__all__ = ["Backend"]
