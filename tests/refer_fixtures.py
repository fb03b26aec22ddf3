"""Session fixtures for ``geovlm refer``: the real xBD post tiles, georeferenced once."""

from __future__ import annotations

from pathlib import Path

import pytest

from geovlm.events.progress import ProgressMode
from geovlm.tasks.xbd_georef import georeference_xbd


@pytest.fixture(scope="session")
def real_xbd_georef(real_xbd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`geovlm xbd georef` output of the real post-disaster tiles (images/*.tif); read only."""
    out = tmp_path_factory.mktemp("xbd-georef") / "out"
    georeference_xbd(real_xbd, out, phase="post", progress=ProgressMode.NONE)
    return out
