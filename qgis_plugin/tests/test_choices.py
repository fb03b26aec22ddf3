"""Choices (enum parameters) take their option's name, ``LANGUAGE=ja``, and still their index.

Most tests run a stub engine that records its command line: what the plugin passes the engine
is what they compare. Two run the real engine from the shell through qgis_process.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing

import processing
import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingParameterEnum,
)

from .conftest import PLUGIN_ROOT

FOOTPRINTS = PLUGIN_ROOT.parents[1] / "shared/data/vector/solaris/geotiff_labels.geojson"

#: Every choice of the provider and its default, as before static strings (index 0 each).
CHOICES = {
    ("geovlm:classify", "LANGUAGE"): ("en", "ja", "zh"),
    ("geovlm:classify", "MODE"): ("score", "generate"),
    ("geovlm:classify", "QUANTIZE"): ("preset", "auto", "4bit", "8bit", "none"),
    ("geovlm:refer", "CONTEXT"): ("chip", "scene"),
    ("geovlm:refer", "LANGUAGE"): ("en", "ja", "zh"),
    ("geovlm:refer", "QUANTIZE"): ("preset", "auto", "4bit", "8bit", "none"),
    ("geovlm:damage", "LANGUAGE"): ("en", "ja", "zh"),
    ("geovlm:damage", "QUANTIZE"): ("preset", "auto", "4bit", "8bit", "none"),
    ("geovlm:evaluate", "SPLIT"): ("test", "train", "all"),
    ("geovlm:evaluate", "LANGUAGE"): ("all", "en", "ja", "zh"),
}


def _inputs(algorithm, scene, tmp_path):
    """What `algorithm` needs besides its choices."""
    if algorithm == "geovlm:evaluate":
        return {"DATA": str(tmp_path), "OUTPUT": str(tmp_path / "report")}
    base = {"INPUT": str(scene), "OUTPUT": str(tmp_path / "out.gpkg")}
    if algorithm == "geovlm:damage":
        return {**base, "FOOTPRINTS": str(FOOTPRINTS)}
    return {**base, "DETECT": True} if algorithm == "geovlm:refer" else base


def _option(arguments, name):
    """The value after option `name` in an engine command line, or None."""
    return arguments[arguments.index(name) + 1] if name in arguments else None


def test_every_choice_uses_its_names_with_the_same_default(plugin):
    found = {}
    for algorithm in QgsApplication.processingRegistry().providerById("geovlm").algorithms():
        for definition in algorithm.parameterDefinitions():
            if isinstance(definition, QgsProcessingParameterEnum):
                assert definition.usesStaticStrings(), (algorithm.id(), definition.name())
                assert definition.defaultValue() == definition.options()[0]
                found[algorithm.id(), definition.name()] = tuple(definition.options())
    assert found == CHOICES


@pytest.mark.parametrize(("algorithm", "by_name", "by_index", "expected"), [
    ("geovlm:classify", {"LANGUAGE": "ja", "MODE": "generate", "QUANTIZE": "4bit"},
     {"LANGUAGE": 1, "MODE": 1, "QUANTIZE": 2},
     {"--language": "ja", "--mode": "generate", "--quantize": "4bit"}),
    ("geovlm:refer", {"LANGUAGE": "zh", "QUANTIZE": "none"}, {"LANGUAGE": 2, "QUANTIZE": 4},
     {"--language": "zh", "--quantize": "none"}),
    ("geovlm:damage", {"LANGUAGE": "ja", "QUANTIZE": "8bit"}, {"LANGUAGE": 1, "QUANTIZE": 3},
     {"--language": "ja", "--quantize": "8bit"}),
    ("geovlm:evaluate", {"SPLIT": "all", "LANGUAGE": "ja"}, {"SPLIT": 2, "LANGUAGE": 2},
     {"--split": "all", "--language": "ja"}),
])
def test_a_name_and_its_index_give_the_same_command_line(plugin, recorded, scene, tmp_path,
                                                         algorithm, by_name, by_index,
                                                         expected):
    inputs = _inputs(algorithm, scene, tmp_path)
    runs = []
    # An index as a number (processing.run, saved models) and as digits (qgis_process).
    for choices in (by_name, by_index, {k: str(v) for k, v in by_index.items()}):
        result = processing.run(algorithm, {**inputs, **choices})
        runs.append((recorded(), result))
    assert runs[0] == runs[1] == runs[2]
    arguments = runs[0][0]
    assert {option: _option(arguments, option) for option in expected} == expected


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("geovlm:classify", {"--language": "en", "--mode": "score", "--quantize": None}),
    ("geovlm:refer", {"--language": "en", "--quantize": None}),
    ("geovlm:damage", {"--language": "en", "--quantize": None}),
    ("geovlm:evaluate", {"--split": "test", "--language": "all"}),
])
def test_a_choice_left_out_is_its_old_default(plugin, recorded, scene, tmp_path, algorithm,
                                              expected):
    processing.run(algorithm, _inputs(algorithm, scene, tmp_path))
    arguments = recorded()
    assert {option: _option(arguments, option) for option in expected} == expected


def test_a_model_step_saved_with_an_index_still_runs_it(plugin, recorded, scene, tmp_path):
    """A model built before keeps the index; Processing does not check a step's values."""
    model = QgsProcessingModelAlgorithm("old", "geovlm")
    child = QgsProcessingModelChildAlgorithm("geovlm:classify")
    child.setChildId("classify")
    for name, value in (("INPUT", str(scene)), ("OUTPUT", str(tmp_path / "m.gpkg")),
                        ("LANGUAGE", 2), ("MODE", 1)):
        child.addParameterSources(
            name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    model.addChildAlgorithm(child)
    processing.run(model, {})
    arguments = recorded()
    assert (_option(arguments, "--language"), _option(arguments, "--mode")) == ("zh", "generate")


@pytest.mark.parametrize(("choices", "sentence"), [
    ({"LANGUAGE": "xx"}, "LANGUAGE must be one of en, ja, zh (or its index, 0 to 2), not 'xx'."),
    ({"LANGUAGE": "JA"}, "LANGUAGE must be one of en, ja, zh (or its index, 0 to 2), not 'JA'."),
    ({"MODE": 2}, "MODE must be one of score, generate (or its index, 0 to 1), not 2."),
    ({"QUANTIZE": "-1"}, "QUANTIZE must be one of preset, auto, 4bit, 8bit, none (or its index,"
                         " 0 to 4), not '-1'."),
])
def test_a_wrong_choice_is_a_processing_error_naming_the_options(plugin, recorded, scene,
                                                                 tmp_path, choices, sentence):
    with pytest.raises(QgsProcessingException) as error:
        processing.run("geovlm:classify", {**_inputs("geovlm:classify", scene, tmp_path),
                                           **choices})
    assert str(error.value).splitlines()[-1] == sentence
    assert recorded() is None  # refused before the engine starts


def _layer(gpkg):
    """A classify GeoPackage's chips (id, label, probabilities, language) and run parameters."""
    with closing(sqlite3.connect(gpkg)) as db:
        chips = db.execute("SELECT chip_id, label, probs, language FROM chips ORDER BY chip_id")
        return chips.fetchall(), json.loads(db.execute("SELECT parameters FROM runs")
                                            .fetchone()[0])


def test_qgis_process_takes_choice_names_like_indices_in_processing(plugin, engine, shell, scene,
                                                                    tiny_model, tmp_path):
    qgis_process, env = shell
    common = {"INPUT": str(scene), "MODEL": tiny_model, "DEVICE": "cpu", "CHIP_SIZE": 512}
    named = tmp_path / "named.gpkg"
    done = subprocess.run(
        [qgis_process, "run", "geovlm:classify", "--",
         *(f"{k}={v}" for k, v in common.items()), "LANGUAGE=ja", "MODE=score",
         "QUANTIZE=none", f"OUTPUT={named}"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "STATUS:\tcomplete" in done.stdout and "WRITTEN:\t4" in done.stdout
    chips, parameters = _layer(named)
    assert {language for *_, language in chips} == {"ja"}
    assert (parameters["language"], parameters["mode"], parameters["quantize"]) == (
        "ja", "score", "none")
    # The same run with indices, as scripts written before pass them, writes the same layer.
    indexed = tmp_path / "indexed.gpkg"
    processing.run("geovlm:classify", {**common, "LANGUAGE": 1, "MODE": 0, "QUANTIZE": 4,
                                       "OUTPUT": str(indexed)})
    assert _layer(indexed) == (chips, parameters)


def test_qgis_process_refuses_a_wrong_choice_with_a_sentence(shell, scene, tmp_path):
    qgis_process, env = shell
    out = tmp_path / "never.gpkg"
    done = subprocess.run(
        [qgis_process, "run", "geovlm:classify", "--", f"INPUT={scene}", "LANGUAGE=xx",
         f"OUTPUT={out}"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "LANGUAGE must be one of en, ja, zh (or its index, 0 to 2), not 'xx'." in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not out.exists()
