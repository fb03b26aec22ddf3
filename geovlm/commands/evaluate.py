"""``geovlm eval``: accuracy, F1 and calibration of a model on a labelled set, as a report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import click

from geovlm.commands.options import model_options, run_options
from geovlm.datasets.format import MANIFEST, TrainingSet, read_dataset
from geovlm.datasets.samples import Split, Task
from geovlm.errors import DatasetError
from geovlm.events.progress import ProgressMode
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer

__all__ = ["evaluate"]

_ALL = "all"


@click.command(name="eval")
@click.option("--data", required=True, metavar="DS|XBD_DIR|CLASSIFIED.gpkg",
              help="A dataset folder (`geovlm dataset`), an xBD folder, or a corrected"
                   " classify output.")
@click.option("--split", type=click.Choice([*(s.value for s in Split), _ALL]), default="test",
              show_default=True, help="Which samples of a dataset folder to score.")
@model_options
@click.option("--language", type=click.Choice([*(lang.value for lang in Language), _ALL]),
              default=_ALL, show_default=True, help="Score only the questions in this language.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Samples per model call.")
@click.option("--task", type=click.Choice([Task.DISASTER.value, Task.BUILDING_DAMAGE.value]),
              default=None, help="Which questions to score: disaster types per image or damage"
                                 " grades per building. Default: building-damage for a set of"
                                 " building-damage samples only, else disaster.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Building damage: below this top probability a building counts as"
                   " uncertain (reported apart, as geovlm damage writes it).")
@click.option("--xview2-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Building damage: write the xView2 challenge's prediction and target PNGs"
                   " of the scored tiles here and put their pixel score in the report.")
@click.option("--xbd", type=click.Path(exists=True, file_okay=False), default=None,
              metavar="XBD_DIR", help="The xBD folder of --xview2-dir's targets. Default: the"
                                      " one the dataset's manifest records.")
@click.option("--fit-calibration", is_flag=True,
              help="Fit a temperature and label-prior correction and write it into the model"
                   " folder's geovlm-preset.yaml (calibration: for disaster types, which"
                   " classify applies; damage_calibration: for building damage, which damage"
                   " applies).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Report folder: report.json, report.html, plots, predictions.")
@run_options("Replace an existing report folder.")
def evaluate(
    data: str,
    split: str,
    model: str,
    adapter: str | None,
    no_adapter: bool,
    quantize: str | None,
    device: str | None,
    language: str,
    batch_size: int,
    task: str | None,
    min_confidence: float,
    xview2_dir: str | None,
    xbd: str | None,
    fit_calibration: bool,
    output: str,
    overwrite: bool,
    progress: str,
    quiet: bool,
) -> None:
    """Score a labelled set's disaster or building-damage questions: accuracy, F1, calibration.

    Every disaster sample is scored as `classify` scores a chip (every answer form of the
    preset, in the sample's language); every building-damage sample as `damage` scores a
    building (its pre and post crops, or post alone, as the sample lists them). The report
    holds per-class and per-language tables, a confusion matrix, the expected calibration
    error (ECE) with a reliability diagram, and with --fit-calibration the ECE before and after
    calibration on held-out tiles. Building damage adds the xView2 damage F1 and the uncertain
    share, and with --xview2-dir the challenge's pixel score of the written rasters.
    """
    from geovlm.backends.choice import ModelChoice
    from geovlm.evaluation.preset_calibration import calibration_folder
    from geovlm.evaluation.report import EvaluationContext
    from geovlm.evaluation.run import run_evaluation
    from geovlm.evaluation.scoring import select_samples

    choice = ModelChoice.resolve(model, adapter=adapter, no_adapter=no_adapter,
                                 quantize=quantize, device=device, batch_size=batch_size)
    folder = (
        calibration_folder(model, None if no_adapter else adapter) if fit_calibration else None
    )
    asked = None if task is None else Task(task)
    with _evaluation_set(data, choice.preset.answers, split, asked) as (samples, chosen_split):
        chosen = select_samples(samples, chosen_split,
                                None if language == _ALL else Language(language),
                                asked or _default_task(samples))
        context = EvaluationContext(
            data=data, split=split if chosen_split else _ALL, language=language,
            model={"preset": choice.preset.name, **choice.run_parameters()},
            skipped=chosen.skipped,
        )
        summary = run_evaluation(
            chosen, output, choice=choice, context=context, calibration_folder=folder,
            progress=ProgressMode.NONE if quiet else ProgressMode(progress), overwrite=overwrite,
            min_confidence=min_confidence, xview2_dir=xview2_dir, xbd=xbd,
        )
    if quiet or ProgressMode(progress) is ProgressMode.JSON:
        return
    report = summary.report
    damage = (
        f"; xView2 damage F1 {report.damage.xview2_f1:.3f}, {report.damage.uncertain} uncertain"
        if report.damage else ""
    )
    xview2 = (
        f"; xView2 pixel score {report.xview2.score:.3f} (damage F1"
        f" {report.xview2.damage_f1:.3f}, localization F1 {report.xview2.localization_f1:.3f})"
        if report.xview2 else ""
    )
    lines = [
        f"{report.samples} samples from {report.tiles} tiles: accuracy"
        f" {report.classification.accuracy:.3f}, macro-F1 {report.classification.macro_f1:.3f},"
        f" ECE {report.calibration.ece:.3f}"
        + (f" -> {report.fitted.held_out.ece:.3f} calibrated (held-out tiles)"
           if report.fitted else "")
        + (f", {report.preset_calibration.calibration_metrics.ece:.3f} with the preset's"
           " calibration" if report.preset_calibration else "")
        + f"{damage}{xview2} ({summary.seconds:.1f} s).",
        f"Report: {summary.html}",
    ]
    if summary.preset_file is not None:
        lines.append(f"Calibration written to {summary.preset_file}.")
    click.echo("\n".join(lines), err=True)


def _default_task(data: TrainingSet) -> Task:
    """Building damage for a set of building-damage samples only, else disaster types."""
    tasks = {sample.task for sample in data.samples()}
    return Task.BUILDING_DAMAGE if tasks == {Task.BUILDING_DAMAGE} else Task.DISASTER


@contextmanager
def _evaluation_set(
    path: str, verbalizer: Verbalizer, split: str, task: Task | None
) -> Iterator[tuple[TrainingSet, Split | None]]:
    """Open ``--data`` and say which split to score: ``split``, or all of a converted source.

    A dataset folder is read as it is. An xBD folder (``images/``, ``labels/``) or a corrected
    classify output (``.gpkg``) is built into a temporary dataset by `geovlm dataset`'s builders,
    every sample kept (``--split`` concerns dataset folders only), and removed afterwards; an
    xBD folder gives ``task``'s samples (disaster types by default).
    """
    from geovlm.datasets.splits import SplitRule

    source = Path(path)
    if (source / MANIFEST).is_file():
        yield read_dataset(source), None if split == _ALL else Split(split)
        return
    every_sample = SplitRule(test_fraction=0)
    quiet = ProgressMode.NONE
    if (source / "labels").is_dir() and (source / "images").is_dir():
        from geovlm.datasets.from_xbd import build_from_xbd

        with TemporaryDirectory(prefix="geovlm-eval-") as folder:
            yield build_from_xbd(source, Path(folder) / "set", verbalizer=verbalizer,
                                 tasks=(task or Task.DISASTER,), split_rule=every_sample,
                                 progress=quiet), None
    elif source.suffix.lower() == ".gpkg" and source.is_file():
        from geovlm.datasets.from_map import build_from_map

        with TemporaryDirectory(prefix="geovlm-eval-") as folder:
            yield build_from_map(source, Path(folder) / "set", verbalizer=verbalizer,
                                 split_rule=every_sample, progress=quiet), None
    elif source.exists():
        raise DatasetError(
            f"{path} is no geovlm dataset, xBD folder or classified GeoPackage: build a"
            " dataset with `geovlm dataset` and pass its folder."
        )
    else:
        raise DatasetError(f"{path} does not exist: pass a dataset folder with --data.")
