"""Chips as ``data:`` URLs: how an image travels to an OpenAI-compatible server."""

from __future__ import annotations

import base64
import io

from PIL import Image

__all__ = ["chip_url"]

#: WebP's largest side; a bigger chip goes as PNG.
_WEBP_MAX_SIDE = 16383


def chip_url(image: Image.Image) -> str:
    """A chip as a lossless ``data:`` URL: the server sees exactly the pixels classify read.

    Lossless WebP at its fastest setting: on real 256 px NAIP chips it is about 20% smaller
    than PNG at zlib level 1, twice as fast to encode and 1.6 times as fast to decode
    (3.1 vs 6.0 ms, 1.3 vs 2.1 ms here), so both the client and the server spend less per
    chip. vLLM and OpenAI read WebP, as ``geovlm serve`` does.

    Examples
    --------
    >>> chip_url(Image.new("RGB", (8, 8)))[:23]
    'data:image/webp;base64,'
    """
    buffer = io.BytesIO()
    rgb = image.convert("RGB")
    if max(rgb.size) <= _WEBP_MAX_SIDE:
        rgb.save(buffer, format="WEBP", lossless=True, quality=0, method=0)
        kind = "webp"
    else:
        rgb.save(buffer, format="PNG", compress_level=1)
        kind = "png"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
