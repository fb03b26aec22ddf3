"""``geovlm train``: fine-tune a vision-language model on a geovlm dataset."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import click

from geovlm.commands.options import run_options
from geovlm.events.progress import ProgressMode

__all__ = ["train"]


@click.command()
@click.option("-c", "--config", "config_name", required=True, metavar="NAME|YAML",
              help="Training recipe: a shipped one (qwen3vl_8b_xview2_4bit, tiny-cpu) or a file.")
@click.option("-d", "--data", required=True, type=click.Path(file_okay=False), metavar="DS",
              help="Dataset folder built by `geovlm dataset`; its train split is learned.")
@click.option("-m", "--model", default=None, metavar="PRESET|ID|DIR",
              help="Base model; default: the recipe's model_name_or_path.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=True, file_okay=False),
              metavar="DIR",
              help="Output folder; default: RECIPE-DATASET in the current folder.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override one recipe setting, e.g. --set learning_rate=2e-4 (repeatable).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --output from its last checkpoint.")
@click.option("--device", default=None, metavar="DEVICE",
              help="A torch device such as cuda:0 or cpu; default: CUDA when present.")
@run_options("Replace a training run already in --output (not with --resume).")
def train(
    config_name: str,
    data: str,
    model: str | None,
    output: str | None,
    assignments: tuple[str, ...],
    resume: bool,
    overwrite: bool,
    device: str | None,
    progress: str,
    quiet: bool,
) -> None:
    """Fine-tune a model on the train split of DS: a LoRA adapter, or the whole language model.

    The output folder holds checkpoints (every save_steps), trainer_log.jsonl, loss.png, the
    peft adapter (or the full model) and geovlm-preset.yaml, so `geovlm classify --model DIR`
    uses the result with the right base, template and answers. The prompt is rendered by the
    same code as inference; the loss falls on the answer and its end-of-turn token only.
    """
    from geovlm.backends.devices import check_device_name
    from geovlm.datasets.format import read_dataset
    from geovlm.errors import ParameterError
    from geovlm.models.hub import HubWeights, check_downloads
    from geovlm.models.presets import resolve_model
    from geovlm.training.config import TrainConfig, find_config

    if resume and overwrite:
        raise ParameterError(
            "--resume continues the run in --output and --overwrite replaces it: pass one."
        )
    config = TrainConfig.from_yaml(config_name).with_overrides(assignments)
    if model is not None:
        config = dataclasses.replace(config, model_name_or_path=model)
    if config.model_name_or_path is None:
        raise ParameterError(
            f"the recipe {config_name} names no base model: pass --model ID|DIR|PRESET."
        )
    dataset = read_dataset(data)
    if device is not None:
        check_device_name(device)
    # Before torch and transformers are imported, as classify does: a base model neither local
    # nor reachable fails in one sentence, not after retries and library warnings.
    check_downloads(HubWeights(resolve_model(config.model_name_or_path).model_id, "--model"))
    default = f"{find_config(config_name).stem}-{dataset.root.name}"
    folder = Path(output or default)

    from transformers.utils import logging as transformers_logging

    from geovlm.training.run import prepare_training, run_training

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    job = prepare_training(
        config, dataset, folder, device=device, resume=resume, overwrite=overwrite
    )
    mode = ProgressMode.NONE if quiet else ProgressMode(progress)
    summary = run_training(job, mode)
    if quiet or mode is ProgressMode.JSON:
        return
    loss = "n/a" if summary.final_loss is None else f"{summary.final_loss:.4f}"
    click.echo(
        f"Trained {summary.steps} steps in {summary.seconds:.1f} s (final loss {loss},"
        f" {summary.samples_per_second:.2f} samples/s): {summary.output}",
        err=True,
    )
