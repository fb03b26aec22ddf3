"""Processing algorithms that learn from a corrected map: ``geovlm:train``, ``geovlm:evaluate``.

``geovlm:train`` takes a classify layer the analyst corrected (labels fixed in the attribute
table, untrusted chips deleted), turns it into a dataset with ``geovlm dataset from-map`` and
fine-tunes with ``geovlm train``; its OUTPUT folder is a model ``geovlm:classify`` takes as
MODEL, so the two chain in the Graphical Modeler. ``geovlm:evaluate`` scores a model on a
dataset folder or a corrected layer and reports accuracy and calibration.
"""

from __future__ import annotations

import json
import os
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
)

from .base import EngineAlgorithm, layer_file, tr
from .raster_algorithm import DEFAULT_MODEL, raster_problem

__all__ = ["EvaluateAlgorithm", "TrainAlgorithm", "corrected_map"]

#: Share of the progress bar for building the dataset; training fills the rest.
DATASET_SHARE = 20.0
DEFAULT_RECIPE = "qwen3vl_8b_xview2_4bit"
SPLITS = ("test", "train", "all")
EVAL_LANGUAGES = ("all", "en", "ja", "zh")


def corrected_map(layer: Any) -> str:
    """The GeoPackage behind a corrected classify layer.

    Raises
    ------
    QgsProcessingException
        The layer is not a GeoPackage's ``chips`` layer.
    """
    path, name = layer_file(layer)
    if not path.lower().endswith(".gpkg") or name not in ("", "chips"):
        raise QgsProcessingException(tr(
            "Layer {} is not the 'chips' layer of a geovlm:classify GeoPackage; choose the"
            " classified layer you corrected.").format(layer.name()))
    return path


class TrainAlgorithm(EngineAlgorithm):
    """``geovlm:train``: fine-tune a model on a corrected classify layer."""

    ALGORITHM_ID = "train"
    DISPLAY_NAME = "Train a model on a corrected classified layer"
    HELP = ("Fine-tunes a model on the chips of a geovlm:classify layer you corrected (labels"
            " fixed in the attribute table, chips you do not trust deleted; 'uncertain' chips"
            " are left out). Builds a dataset folder beside the output (OUTPUT-dataset, rebuilt"
            " every run) with 'geovlm dataset from-map', then trains with 'geovlm train'. The"
            " output folder is a model: give it to geovlm:classify as MODEL. Cancelling keeps"
            " the checkpoints saved so far; RESUME continues from the last one, on the same"
            " dataset.")

    INPUT = "INPUT"
    SCENE = "SCENE"
    CONFIG = "CONFIG"
    MODEL = "MODEL"
    LANGUAGES = "LANGUAGES"
    SETTINGS = "SETTINGS"
    DEVICE = "DEVICE"
    OVERWRITE = "OVERWRITE"
    RESUME = "RESUME"
    OUTPUT = "OUTPUT"
    DATASET = "DATASET"
    STATUS = "STATUS"
    STEPS = "STEPS"
    FINAL_LOSS = "FINAL_LOSS"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.INPUT, tr("Corrected classified layer (chips)"),
            [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.SCENE, tr("The classified raster, if it moved (empty: the recorded path)"),
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CONFIG, tr("Training recipe (a shipped name or a YAML file)"), DEFAULT_RECIPE))
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, tr("Base model: preset, Hugging Face id or folder (empty: the"
                           " recipe's)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.LANGUAGES, tr("Question languages"), "en,ja,zh"))
        self.addParameter(QgsProcessingParameterString(
            self.SETTINGS, tr("Recipe overrides, KEY=VALUE separated by spaces"),
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.DEVICE, tr("Device, e.g. cuda:0 or cpu (empty: CUDA when present)"),
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, tr("Replace a training run already in the output folder"), False))
        self.addParameter(QgsProcessingParameterBoolean(
            self.RESUME, tr("Continue the run in the output folder from its last checkpoint"),
            False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, tr("Trained model folder")))
        self.addOutput(QgsProcessingOutputFolder(self.DATASET, tr("Dataset folder")))
        self.addOutput(QgsProcessingOutputString(
            self.STATUS, tr("Run status (complete or interrupted)")))
        self.addOutput(QgsProcessingOutputNumber(self.STEPS, tr("Training steps")))
        self.addOutput(QgsProcessingOutputNumber(self.FINAL_LOSS, tr("Final training loss")))

    def processAlgorithm(  # noqa: N802
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        classified = corrected_map(self.parameterAsVectorLayer(parameters, self.INPUT, context))
        output = self.parameterAsString(parameters, self.OUTPUT, context)
        dataset = output.rstrip("/\\") + "-dataset"
        model = self.parameterAsString(parameters, self.MODEL, context).strip()
        from_map = ["dataset", "from-map", classified, "-o", dataset, "--overwrite",
                    "--languages", self.parameterAsString(parameters, self.LANGUAGES, context)
                    .replace(" ", "") or "en,ja,zh", "--model", model or DEFAULT_MODEL]
        scene = self.parameterAsRasterLayer(parameters, self.SCENE, context)
        if scene is not None:
            problem = raster_problem(scene)
            if problem:
                raise QgsProcessingException(problem)
            from_map += ["--scene", scene.source()]
        train = ["train", "--config",
                 self.parameterAsString(parameters, self.CONFIG, context).strip()
                 or DEFAULT_RECIPE, "--data", dataset, "--output", output]
        if model:
            train += ["--model", model]
        for setting in self.parameterAsString(parameters, self.SETTINGS, context).split():
            train += ["--set", setting]
        device = self.parameterAsString(parameters, self.DEVICE, context).strip()
        if device:
            train += ["--device", device]
        for name, flag in ((self.OVERWRITE, "--overwrite"), (self.RESUME, "--resume")):
            if self.parameterAsBool(parameters, name, context):
                train.append(flag)
        if "--resume" in train and os.path.isdir(dataset):
            feedback.pushInfo(tr("Step 1 of 2: resuming on the dataset in {}").format(dataset))
            done = {"status": "complete"}
        else:
            feedback.pushInfo(tr("Step 1 of 2: dataset from the corrected layer into {}")
                              .format(dataset))
            done = self.run_step(from_map, feedback, (0.0, DATASET_SHARE))
        if done.get("status") == "complete" and not feedback.isCanceled():
            feedback.pushInfo(tr("Step 2 of 2: training into {}").format(output))
            done = self.run_step(train, feedback, (DATASET_SHARE, 100.0))
        if done.get("status") != "complete":
            feedback.pushInfo(tr("Cancelled: checkpoints saved so far stay in {}; RESUME"
                                 " continues from the last one.").format(output))
        return {self.OUTPUT: output, self.DATASET: dataset, self.STATUS: done.get("status", ""),
                self.STEPS: done.get("steps", 0), self.FINAL_LOSS: done.get("final_loss")}

    def done_message(self, event: dict[str, Any]) -> str:
        if "steps" in event:
            return tr("Trained {} steps in {} s, final loss {}.").format(
                event.get("steps"), event.get("seconds"), event.get("final_loss"))
        return tr("Dataset from {} chips in {} s.").format(event.get("written"),
                                                         event.get("seconds"))


class EvaluateAlgorithm(EngineAlgorithm):
    """``geovlm:evaluate``: accuracy, F1 and calibration of a model on labelled chips."""

    ALGORITHM_ID = "evaluate"
    DISPLAY_NAME = "Evaluate a model on labelled chips"
    HELP = ("Scores a model on a dataset folder (geovlm:train writes one beside its model) or"
            " on a corrected geovlm:classify layer, and writes a report folder: report.html,"
            " report.json, a confusion matrix and a reliability diagram. Accuracy, macro-F1"
            " and the expected calibration error (ECE) are shown in the log and returned.")

    INPUT = "INPUT"
    DATA = "DATA"
    SPLIT = "SPLIT"
    MODEL = "MODEL"
    LANGUAGE = "LANGUAGE"
    DEVICE = "DEVICE"
    FIT_CALIBRATION = "FIT_CALIBRATION"
    OVERWRITE = "OVERWRITE"
    OUTPUT = "OUTPUT"
    REPORT = "REPORT"
    ACCURACY = "ACCURACY"
    MACRO_F1 = "MACRO_F1"
    ECE = "ECE"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.INPUT, tr("Corrected classified layer (chips)"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.DATA, tr("Or: a dataset folder"), QgsProcessingParameterFile.Folder,
            optional=True))
        self.add_enum_parameter(self.SPLIT, tr("Samples of a dataset folder to score"), SPLITS)
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, tr("Model preset, Hugging Face id or folder"), DEFAULT_MODEL))
        self.add_enum_parameter(self.LANGUAGE, tr("Questions scored"), EVAL_LANGUAGES)
        self.addParameter(QgsProcessingParameterString(
            self.DEVICE, tr("Device, e.g. cuda:0 or cpu (empty: CUDA when present)"),
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.FIT_CALIBRATION, tr("Fit a calibration into the model folder"), False))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, tr("Replace an existing report folder"), False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, tr("Report folder")))
        self.addOutput(QgsProcessingOutputFile(self.REPORT, tr("Report (HTML)")))
        self.addOutput(QgsProcessingOutputNumber(self.ACCURACY, tr("Accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.MACRO_F1, tr("Macro-F1")))
        self.addOutput(QgsProcessingOutputNumber(self.ECE, tr("Expected calibration error")))

    def processAlgorithm(  # noqa: N802
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        folder = self.parameterAsFile(parameters, self.DATA, context)
        if (layer is None) == (not folder):
            raise QgsProcessingException(tr(
                "Give exactly one of a corrected classified layer and a dataset folder."))
        output = self.parameterAsString(parameters, self.OUTPUT, context)
        args = ["eval", "--data", corrected_map(layer) if layer is not None else folder,
                "--split", self.enum_value(parameters, self.SPLIT, context),
                "--model", self.parameterAsString(parameters, self.MODEL, context).strip()
                or DEFAULT_MODEL,
                "--language", self.enum_value(parameters, self.LANGUAGE, context),
                "--output", output]
        device = self.parameterAsString(parameters, self.DEVICE, context).strip()
        if device:
            args += ["--device", device]
        for name, flag in ((self.FIT_CALIBRATION, "--fit-calibration"),
                           (self.OVERWRITE, "--overwrite")):
            if self.parameterAsBool(parameters, name, context):
                args.append(flag)
        done = self.run_step(args, feedback)
        if done.get("status") != "complete":
            return {self.OUTPUT: output}
        with open(os.path.join(output, "report.json"), encoding="utf-8") as stream:
            report = json.load(stream)
        scores = report["classification"]
        ece = report["calibration"]["ece"]
        feedback.pushInfo(tr("{} samples: accuracy {:.3f}, macro-F1 {:.3f}, ECE {:.3f}.").format(
            report["samples"], scores["accuracy"], scores["macro_f1"], ece))
        return {self.OUTPUT: output, self.REPORT: os.path.join(output, "report.html"),
                self.ACCURACY: scores["accuracy"], self.MACRO_F1: scores["macro_f1"],
                self.ECE: ece}

    def done_message(self, event: dict[str, Any]) -> str:
        return tr("Scored {} samples in {} s.").format(event.get("samples"),
                                                       event.get("seconds"))
