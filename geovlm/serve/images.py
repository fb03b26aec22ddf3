"""Client images from base64 or ``data:`` URLs, checked before they reach the model.

The server never opens a path or fetches a URL a client names: only inline bytes are accepted.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image

from geovlm.errors import InputError

__all__ = ["ImageRejected", "decode_image"]


class ImageRejected(InputError):
    """A client image that cannot be used (answered 400 with the reason)."""


def decode_image(data: str, max_pixels: int, where: str = "image") -> Image.Image:
    """Decode one image sent inline, as plain base64 or a ``data:image/...;base64,`` URL.

    Parameters
    ----------
    data
        The base64 text or data URL.
    max_pixels
        Largest ``width * height`` accepted, checked from the header before decoding pixels.
    where
        Names the image in messages (e.g. ``images[3]``).

    Returns
    -------
    PIL.Image.Image
        Decoded, in RGB.

    Raises
    ------
    ImageRejected
        A URL or path instead of inline bytes, bad base64, bytes no image decoder reads, or an
        image over `max_pixels`.
    """
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.endswith(";base64"):
            raise ImageRejected(f"{where}: a data URL must be base64 (data:image/png;base64,...).")
    elif data.startswith(("http://", "https://", "file:", "/", ".")):
        raise ImageRejected(
            f"{where}: send the image inline as base64 or a data: URL; the server opens no"
            " URLs or paths."
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected(f"{where}: not valid base64.") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"{where}: {width}x{height} pixels is over the server's limit of"
                    f" {max_pixels}; send a smaller chip."
                )
            image.load()
    except ImageRejected:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"{where}: not a readable image ({exc}).") from None
    return image if image.mode == "RGB" else image.convert("RGB")
