"""The eval report of a building-damage set, from grade probabilities (no model): the damage
section, the xView2 rasters and their score in report.json and report.html."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from geovlm.datasets.samples import Sample, Task
from geovlm.evaluation.damage_metrics import GRADE_LABELS, damage_metrics
from geovlm.evaluation.report_folder import REPORT_HTML, REPORT_JSON, write_report
from geovlm.evaluation.scoring import ScoredSamples, evaluate_scores
from geovlm.evaluation.xview2_rasters import write_xview2
from geovlm.evaluation.xview2_score import score_folders
from geovlm.labels.building_damage import GRADES, grade_answer
from geovlm.labels.prompts import Language
from geovlm.sources.xbd import Phase, read_xbd
from tests.test_xview2 import OFFICIAL


@pytest.fixture(scope="module")
def scored(real_xbd: Path) -> tuple[ScoredSamples, list[str]]:
    """Every graded building of the real tiles, its true grade the argmax of noisy probs."""
    samples, truth, uids = [], [], []
    for tile in read_xbd(real_xbd, Phase.POST):
        for building in tile.buildings:
            if building.damage not in GRADES:
                continue
            grade = GRADES.index(building.damage)
            samples.append(Sample(
                image=f"images/{building.uid}.png", question="?",
                answer=grade_answer(building.damage), label=building.damage.value,
                language=Language.EN, task=Task.DAMAGE, tile=tile.name, event=tile.disaster,
            ))
            truth.append(grade)
            uids.append(building.uid)
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(4), size=len(truth)) * 0.5
    probs[np.arange(len(truth)), truth] += 0.5
    return ScoredSamples(tuple(samples), np.array(truth), probs, GRADE_LABELS), uids


def test_damage_report_from_predictions(scored, real_xbd: Path, tmp_path: Path):
    samples, uids = scored
    report = evaluate_scores(samples, min_confidence=0.7)
    assert report.damage == damage_metrics(samples.truth, samples.probs, 0.7)
    assert report.damage.classification.accuracy == 1.0
    assert 0 < report.damage.uncertain < len(uids)
    assert report.classification.labels == GRADE_LABELS
    grades = {uid: GRADE_LABELS[int(k)] for uid, k in
              zip(uids, samples.probs.argmax(axis=1), strict=True)}
    folder = write_xview2(real_xbd, tmp_path / "xview2", grades)
    report = replace(report, xview2=score_folders(folder.predictions, folder.targets))
    html = write_report(tmp_path / "report", report, samples.records())

    data = json.loads((tmp_path / "report" / REPORT_JSON).read_text(encoding="utf-8"))
    assert data["damage"]["xview2_f1"] == pytest.approx(4 / (4 / (1 + 1e-6)))
    assert data["damage"]["uncertain"] == report.damage.uncertain
    assert [c["label"] for c in data["classification"]["per_class"]] == list(GRADE_LABELS)
    official = dict(zip(("score", "damage_f1", "localization_f1"), OFFICIAL["truth"],
                        strict=False))
    for key, value in official.items():
        assert data["xview2"][key] == pytest.approx(value, abs=1e-9, rel=0)
    page = html.read_text(encoding="utf-8")
    assert "Building damage" in page and "xView2 score (pixels)" in page
    assert html == tmp_path / "report" / REPORT_HTML
    first = (tmp_path / "report" / "predictions.jsonl").read_text().splitlines()[0]
    assert set(json.loads(first)["probs"]) == set(GRADE_LABELS)


def test_disaster_reports_have_no_damage_section(scored):
    samples, _ = scored
    disaster = ScoredSamples(samples.samples, samples.truth,
                             np.pad(samples.probs, ((0, 0), (0, 2))))
    report = evaluate_scores(disaster)
    assert report.damage is None and report.xview2 is None
    assert report.to_dict()["damage"] is None
