"""What the ``runs`` ledger says about the runs that wrote a layer: model, scenes, times."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunProvenance", "read_runs"]


@dataclass(frozen=True, slots=True)
class RunProvenance:
    """One run of a layer, as its ``runs`` row records it.

    Attributes
    ----------
    run_id, command, status, started, ended, written
        The row's own columns (``ended`` is None while a run is running or was killed).
    parameters
        The command's parameters (model choices, scenes, settings).
    versions
        The libraries' versions (``geovlm`` among them).
    """

    run_id: str
    command: str
    status: str
    started: str
    ended: str | None
    written: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunProvenance:
        """A run from its ``runs`` row."""
        return cls(row["run_id"], row["command"], row["status"], row["started"], row["ended"],
                   int(row["written"]), json.loads(row["parameters"]),
                   json.loads(row["versions"]))

    @property
    def model(self) -> str:
        """The weights or server the run used (model id, else preset and served model).

        Examples
        --------
        >>> RunProvenance("r", "damage", "complete", "t", None, 0, {"model": "Qwen/x"}).model
        'Qwen/x'
        >>> RunProvenance("r", "damage", "complete", "t", None, 0,
        ...               {"preset": "p", "served_model": "m"}).model
        'p (served as m)'
        """
        found = self.parameters.get("model")
        if found:
            return str(found)
        preset, served = self.parameters.get("preset"), self.parameters.get("served_model")
        return f"{preset} (served as {served})" if served else str(preset or "unknown")

    @property
    def calibrated(self) -> bool:
        """Whether a calibration was applied to the probabilities (it is recorded if so)."""
        return bool(self.parameters.get("calibration"))

    @property
    def scenes(self) -> list[str]:
        """The scene or scenes the run read."""
        if "scenes" in self.parameters:
            return [str(scene) for scene in self.parameters["scenes"]]
        return [str(self.parameters["scene"])] if "scene" in self.parameters else []


def read_runs(path: str | Path, layer: str) -> list[RunProvenance]:
    """The runs that wrote `layer` of a GeoPackage, oldest first; none without a ledger.

    Parameters
    ----------
    path
        A geovlm output.
    layer
        The feature layer, e.g. ``buildings``.

    Returns
    -------
    list of RunProvenance
    """
    with closing(sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM runs WHERE layer = ? ORDER BY id", (layer,))
            return [RunProvenance.from_row(row) for row in rows]
        except sqlite3.OperationalError:
            return []
