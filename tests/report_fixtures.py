"""A ``buildings`` layer as `geovlm damage` writes it, over real footprints of a real scene.

The grades are made up (the worse the nearer a corner of the scene, with noise), the rest is
real: the solaris footprints over their Atlanta scene, written by `GeoPackageWriter` with a
``runs`` row of the shape the damage command records.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from rasterio.crs import CRS

from geovlm.output.fields import FieldType
from geovlm.output.geopackage import GeoPackageWriter
from geovlm.output.runs import RunRecord
from geovlm.output.styles import DAMAGE_COLOURS, categorized_style
from geovlm.output.versions import library_versions

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCENE = SHARED / "geotiff" / "solaris" / "sample_geotiff.tif"
FOOTPRINTS = SHARED / "vector" / "solaris" / "geotiff_labels.geojson"
GRADES = ("no-damage", "minor-damage", "major-damage", "destroyed")

BUILDING_FIELDS = {
    "object_id": FieldType.STRING, "damage": FieldType.STRING, "confidence": FieldType.REAL,
    "runner_up": FieldType.STRING, "runner_up_confidence": FieldType.REAL,
    "probs": FieldType.STRING, "answer": FieldType.STRING, "language": FieldType.STRING,
    "scene": FieldType.STRING, "run_id": FieldType.STRING,
}


def made_up_probs(footprints: np.ndarray, seed: int = 0) -> np.ndarray:
    """Grade probabilities per building: more damage towards the scene's north-east."""
    centres = shapely.get_coordinates(shapely.centroid(footprints))
    corner = centres.max(axis=0)
    distance = np.hypot(*(centres - corner).T)
    severity = 3.2 * (1 - distance / distance.max())
    logits = -((np.arange(4)[None, :] - severity[:, None]) ** 2)
    logits += np.random.default_rng(seed).normal(0, 0.8, logits.shape)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def write_buildings(path: Path, *, min_confidence: float = 0.5, calibrated: bool = False,
                    footprints_file: Path = FOOTPRINTS, scene: Path = SCENE,
                    crs: str | None = None, repeat: int = 1) -> Path:
    """Write a ``buildings`` layer at `path` (`repeat` copies of each footprint, shifted)."""
    frame = pyogrio.read_dataframe(footprints_file)
    if crs is not None:
        frame = frame.to_crs(crs)
    geoms = frame.geometry.to_numpy()
    if repeat > 1:
        step = 0.3 * (shapely.bounds(geoms)[:, 2] - shapely.bounds(geoms)[:, 0]).mean()
        geoms = np.concatenate([shapely.transform(geoms, lambda xy, k=k: xy + k * step / 10)
                                for k in range(repeat)])
    probs = made_up_probs(geoms)
    order = np.argsort(-probs, axis=1)
    parameters = {"scene": str(scene), "model": "Qwen/Qwen3-VL-8B-Instruct",
                  "adapter": "geovlm/xview2-qwen3vl-damage", "quantize": "4bit",
                  "language": "en", "min_confidence": min_confidence, "pre": None,
                  **({"calibration": {"temperature": 1.3}} if calibrated else {})}
    run = RunRecord("damage", parameters, versions=library_versions())
    rows = []
    for i, (p, (best, second)) in enumerate(zip(probs, order[:, :2], strict=True)):
        rows.append({
            "object_id": str(i), "damage": GRADES[best] if p[best] >= min_confidence
            else "uncertain", "confidence": float(p[best]), "runner_up": GRADES[second],
            "runner_up_confidence": float(p[second]),
            "probs": json.dumps(dict(zip(GRADES, p.round(4).tolist(), strict=True))),
            "answer": None, "language": "en", "scene": scene.name, "run_id": "",
        })
    with GeoPackageWriter(path, layer="buildings", fields=BUILDING_FIELDS,
                          crs=CRS.from_user_input(frame.crs), run=run,
                          style_qml=categorized_style("damage", DAMAGE_COLOURS),
                          id_field="object_id") as writer:
        writer.begin()
        for row in rows:
            row["run_id"] = writer.run_id
        writer.write(rows, list(geoms))
    return path
