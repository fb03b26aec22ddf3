"""Session fixtures for training: a held-out-event dataset from synthetic xBD and ONE training run.

Both are made the way a user makes them: `tests.synthetic_xbd.write_synthetic_xbd` writes an
xBD-format folder in which each disaster type has its own visual signature, ``geovlm dataset
from-xbd --split event --holdout ...`` holds one whole event of every type out (the honest test
of a new region), and ``geovlm train --config tiny-cpu`` trains the tiny random Qwen3-VL on the
rest, once per session; tests of eval, from-map and classify reuse its output folder.
Registered as a plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from tests.synthetic_xbd import DEFAULT_EVENTS, write_synthetic_xbd

#: Tiles per synthetic event: 6 training events x 4 tiles x 3 languages = 72 training samples,
#: and as many held out.
TILES_PER_EVENT = 4
#: The events held out for test: the second event of every disaster type.
HELD_OUT_EVENTS = tuple(event for event in DEFAULT_EVENTS if event.endswith("-b"))


def invoke(*args: str) -> str:
    """Run ``geovlm ARGS`` through click's test runner; return its output."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def disaster_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``geovlm dataset from-xbd`` of a synthetic xBD folder, the ``-b`` events held out.

    12 events (two per disaster type) of `TILES_PER_EVENT` 64-pixel post tiles, each asked in
    English, Japanese and Chinese; test holds the six `HELD_OUT_EVENTS` whole.
    """
    root = tmp_path_factory.mktemp("datasets")
    xbd = write_synthetic_xbd(root / "synthetic-xbd", tiles_per_event=TILES_PER_EVENT)
    invoke("dataset", "from-xbd", str(xbd), "-o", str(root / "held-out-events"),
           "--split", "event", "--holdout", ",".join(HELD_OUT_EVENTS), "--progress", "none")
    return root / "held-out-events"


@pytest.fixture(scope="session")
def trained_qwen3_vl(qwen3_vl_dir: Path, disaster_dataset: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of ``geovlm train --config tiny-cpu`` on the tiny Qwen3-VL (CPU, once).

    Read-only: tests that change it work on a copy.
    """
    output = tmp_path_factory.mktemp("training") / "tiny-run"
    invoke("train", "--config", "tiny-cpu", "--data", str(disaster_dataset),
           "--model", str(qwen3_vl_dir), "--output", str(output), "--device", "cpu",
           "--progress", "none")
    return output
