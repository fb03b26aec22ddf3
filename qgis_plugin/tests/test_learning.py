"""geovlm:refer, geovlm:train and geovlm:evaluate against the real engine, in real QGIS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import processing
import pytest
from qgis.core import (
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
    QgsVectorLayer,
)

from .conftest import PLUGIN_ROOT

DATA = PLUGIN_ROOT.parents[1] / "shared/data"


def test_refer_writes_the_objects_layer_styled(plugin, engine, tmp_path):
    out = tmp_path / "objects.gpkg"
    result = processing.run("geovlm:refer", {
        "INPUT": str(DATA / "geotiff/opengeos/dsm.tif"),
        "FOOTPRINTS": str(DATA / "vector/opengeos/buildings.shp"),
        "CHIP_SIZE": 128, "OUTPUT": str(out)})
    assert result["STATUS"] == "complete" and result["WRITTEN"] == 84
    assert result["OUTPUT"] == f"{out}|layername=objects"
    layer = QgsVectorLayer(result["OUTPUT"], "objects", "ogr")
    assert layer.isValid() and layer.featureCount() == 84
    assert layer.renderer().type() == "categorizedSymbol"
    assert all(f["expression"] for f in layer.getFeatures())


def test_refer_in_the_scene_context_labels_each_object_apart(plugin, engine, tmp_path):
    out = tmp_path / "scene.gpkg"
    result = processing.run("geovlm:refer", {
        "INPUT": str(DATA / "geotiff/opengeos/dsm.tif"),
        "FOOTPRINTS": str(DATA / "vector/opengeos/buildings.shp"),
        "CHIP_SIZE": 128, "CONTEXT": "scene", "OUTPUT": str(out)})
    assert result["STATUS"] == "complete" and result["WRITTEN"] == 84
    layer = QgsVectorLayer(result["OUTPUT"], "objects", "ogr")
    assert {f["context"] for f in layer.getFeatures()} == {"scene"}
    texts = [f["expression"] for f in layer.getFeatures() if not f["ambiguous"]]
    assert len(texts) > 60 and len(set(texts)) == len(texts)
    with pytest.raises(QgsProcessingException, match="with detection use the chip context"):
        processing.run("geovlm:refer", {"INPUT": str(DATA / "geotiff/opengeos/dsm.tif"),
                                        "DETECT": True, "CONTEXT": 1,
                                        "OUTPUT": str(tmp_path / "d.gpkg")})


def test_refer_wants_exactly_one_source_of_objects(plugin, engine, scene, tmp_path):
    with pytest.raises(QgsProcessingException, match="exactly one source"):
        processing.run("geovlm:refer", {"INPUT": str(scene), "DETECT": True,
                                        "XBD_LABELS": str(tmp_path / "x.json"),
                                        "OUTPUT": str(tmp_path / "o.gpkg")})


def _train_then_classify(base: str) -> QgsProcessingModelAlgorithm:
    """A Graphical Modeler model: train on a corrected layer, classify with the result."""
    model = QgsProcessingModelAlgorithm("retrain", "geovlm")
    model.addModelParameter(QgsProcessingParameterVectorLayer("corrected", "Corrected"),
                            QgsProcessingModelParameter("corrected"))
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"),
                            QgsProcessingModelParameter("scene"))

    def child(algorithm, child_id, sources, outputs):
        step = QgsProcessingModelChildAlgorithm(algorithm)
        step.setChildId(child_id)
        for name, source in sources.items():
            if isinstance(source, QgsProcessingModelChildParameterSource):
                step.addParameterSources(name, [source])
            else:
                step.addParameterSources(
                    name, [QgsProcessingModelChildParameterSource.fromStaticValue(source)])
        exposed = {}
        for name in outputs:
            output = QgsProcessingModelOutput(name)
            output.setChildId(child_id)
            output.setChildOutputName("OUTPUT")
            exposed[name] = output
        step.setModelOutputs(exposed)
        model.addChildAlgorithm(step)

    child("geovlm:train", "train", {
        "INPUT": QgsProcessingModelChildParameterSource.fromModelParameter("corrected"),
        "CONFIG": "tiny-cpu", "MODEL": base, "LANGUAGES": "en",
        "SETTINGS": "num_train_epochs=1", "DEVICE": "cpu"}, ["model"])
    child("geovlm:classify", "classify", {
        "INPUT": QgsProcessingModelChildParameterSource.fromModelParameter("scene"),
        "MODEL": QgsProcessingModelChildParameterSource.fromChildOutput("train", "OUTPUT"),
        "QUANTIZE": 4, "DEVICE": "cpu", "CHIP_SIZE": 256}, ["chips"])
    return model


@pytest.fixture(scope="module")
def trained(classified, scene, tiny_model, tmp_path_factory):
    """A copy of the classified map, two chips corrected; the model above trains on it."""
    root = tmp_path_factory.mktemp("train")
    shutil.copy(classified["OUTPUT"].split("|")[0], root / "first.gpkg")
    first = f"{root / 'first.gpkg'}|layername=chips"
    corrected = QgsVectorLayer(first, "chips", "ogr")
    fids = sorted(f.id() for f in corrected.getFeatures())
    label = corrected.fields().indexOf("label")
    corrected.startEditing()
    corrected.changeAttributeValue(fids[0], label, "Flood")
    corrected.deleteFeature(fids[1])
    assert corrected.commitChanges()
    model = _train_then_classify(tiny_model)
    feedback = QgsProcessingFeedback()
    percents = []
    feedback.progressChanged.connect(percents.append)
    result = processing.run(model, {
        "corrected": first, "scene": str(scene),
        "train:model": str(root / "model"), "classify:chips": str(root / "again.gpkg")},
        feedback=feedback)
    return root, result, percents


def test_train_on_a_corrected_layer_feeds_classify_in_a_model(trained):
    root, result, percents = trained
    assert Path(result["train:model"]) == root / "model"
    assert (root / "model" / "geovlm-preset.yaml").is_file()
    dataset = json.loads((root / "model-dataset" / "geovlm-dataset.json").read_text())
    assert dataset  # the dataset the training read lies beside the model
    train_samples = json.loads((root / "model-dataset" / "train.json").read_text())
    assert len(train_samples) == 15  # 16 chips, one deleted, one language
    # Both steps reported: the dataset below 20 %, training above it.
    assert any(0 < p <= 20 for p in percents) and any(20 < p < 100 for p in percents)
    again = QgsVectorLayer(result["classify:chips"], "chips", "ogr")
    assert again.isValid() and again.featureCount() == 16
    assert again.renderer().classAttribute() == "label"


def test_evaluate_reports_accuracy_and_calibration(trained, tmp_path):
    root, _, _ = trained
    logged = []

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            logged.append(info)

    feedback = Feedback()
    result = processing.run("geovlm:evaluate", {
        "DATA": str(root / "model-dataset"), "SPLIT": 2, "MODEL": str(root / "model"),
        "DEVICE": "cpu", "OUTPUT": str(tmp_path / "report")}, feedback=feedback)
    assert 0 <= result["ACCURACY"] <= 1 and 0 <= result["ECE"] <= 1
    assert Path(result["REPORT"]).is_file()
    assert any("accuracy" in line and "ECE" in line for line in logged)


def test_train_refuses_a_layer_that_is_not_a_classify_output(plugin, engine, tmp_path):
    with pytest.raises(QgsProcessingException, match="not the 'chips' layer"):
        processing.run("geovlm:train", {
            "INPUT": str(DATA / "vector/opengeos/buildings.shp"),
            "OUTPUT": str(tmp_path / "model")})


def test_resume_reuses_the_dataset_and_passes_the_engine_refusal(trained, tiny_model):
    root, _, _ = trained
    built = (root / "model-dataset" / "geovlm-dataset.json").stat().st_mtime_ns
    with pytest.raises(QgsProcessingException, match="finished run, with nothing left to resume"):
        processing.run("geovlm:train", {
            "INPUT": f"{root / 'first.gpkg'}|layername=chips", "CONFIG": "tiny-cpu",
            "MODEL": tiny_model, "LANGUAGES": "en", "SETTINGS": "num_train_epochs=1",
            "DEVICE": "cpu", "RESUME": True,
            "OUTPUT": str(root / "model")})
    assert (root / "model-dataset" / "geovlm-dataset.json").stat().st_mtime_ns == built
