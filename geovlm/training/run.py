"""One training run: everything checked first (`prepare_training`), then `run_training`.

transformers' `Trainer` runs the loop (AdamW, schedule, accumulation, mixed precision,
checkpoints with optimizer and RNG state, resuming); geovlm supplies the model
(`geovlm.training.model`), the sequences (`geovlm.training.data`), a callback that writes
``trainer_log.jsonl`` and drives the progress bar, and the finished output folder
(`geovlm.training.outputs`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from geovlm.backends.preflight import ModelPlan
from geovlm.datasets.format import TrainingSet
from geovlm.errors import ParameterError
from geovlm.events.progress import ProgressMode, ProgressReporter
from geovlm.models.presets import ModelPreset, resolve_model
from geovlm.training.config import FinetuningType, TrainConfig
from geovlm.training.data import SequenceBuilder
from geovlm.training.outputs import OutputFolder, data_fingerprint
from geovlm.training.preset import answer_forms_of, output_preset

__all__ = ["TrainJob", "TrainSummary", "prepare_training", "run_training"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    """A training run whose every input has been checked; only the weights remain to load."""

    config: TrainConfig
    data: TrainingSet
    folder: OutputFolder
    #: The base model's preset (chip size, ground resolution, answers, quantization).
    base: ModelPreset
    plan: ModelPlan
    builder: SequenceBuilder
    resume: bool


@dataclass(frozen=True)
class TrainSummary:
    """What a finished run did."""

    output: Path
    finetuning: FinetuningType
    steps: int
    seconds: float
    final_loss: float | None
    samples_per_second: float

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready data."""
        return {**dataclasses.asdict(self), "output": str(self.output),
                "finetuning": self.finetuning.value}


def prepare_training(
    config: TrainConfig,
    data: TrainingSet,
    output: Path,
    *,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainJob:
    """Check a run before any weights load, then claim its output folder.

    In order: the base model and device (`geovlm.training.model.plan_training`), the processor
    and the first training sample through it (template, pixel cap, ``cutoff_len``), the answers
    (one label each), and the output folder.

    Parameters
    ----------
    config
        The recipe, overrides applied.
    data
        The training set.
    output
        The output folder.
    device
        A torch device string, or None for CUDA when present.
    resume
        Continue the run in ``output`` from its last checkpoint.
    overwrite
        Replace a run in ``output``.

    Returns
    -------
    TrainJob

    Raises
    ------
    GeovlmError
        With one sentence for each mistake found.
    """
    from transformers import AutoProcessor

    from geovlm.training.model import base_model_name, plan_training

    if config.model_name_or_path is None:
        raise ParameterError("the recipe names no base model: pass --model ID|DIR|PRESET.")
    base = resolve_model(config.model_name_or_path)
    if base.adapter_id is not None:
        logger.warning(
            "training a new adapter on %s: the preset's adapter %s is not included",
            base.model_id, base.adapter_id,
        )
    plan = plan_training(config, base.model_id, device)
    processor = AutoProcessor.from_pretrained(plan.source)
    builder = SequenceBuilder.for_processor(
        processor, config.template, config.image_max_pixels, config.cutoff_len
    )
    from geovlm.training.data import SupervisedDataset

    SupervisedDataset(data, builder)[0]
    answer_forms_of(data, base.answers)
    run = {
        "config": config.as_dict(),
        "model": base_model_name(base.model_id),
        "data": data_fingerprint(data.root),
        "dataset": str(data.root.resolve()),
    }
    folder = OutputFolder.claim(output, run, resume=resume, overwrite=overwrite)
    return TrainJob(config, data, folder, base, plan, builder, resume)


def run_training(job: TrainJob, progress: ProgressMode = ProgressMode.AUTO) -> TrainSummary:
    """Load fresh weights, train, and finish the output folder.

    Parameters
    ----------
    job
        `prepare_training`'s checked run.
    progress
        A bar, JSON lines on stdout, or nothing.

    Returns
    -------
    TrainSummary
    """
    import transformers
    from transformers import PrinterCallback, Trainer

    from geovlm.training.data import Collator, SupervisedDataset
    from geovlm.training.model import base_model_name, load_for_training, set_cache

    config, folder = job.config, job.folder
    transformers.set_seed(config.seed)
    net: Any
    net, _ = load_for_training(job.plan, config)
    checkpoint = folder.last_checkpoint() if job.resume else None
    if job.resume and checkpoint is None:
        logger.warning("no checkpoint in %s yet: training from the start", folder.path)
    step = 0 if checkpoint is None else int(checkpoint.name.rsplit("-", 1)[1])
    monitor = _Monitor(folder, progress, folder.rewind_log(step), config)
    trainer = Trainer(
        model=net,
        args=_arguments(config, folder.path, job.plan.device.type),
        train_dataset=SupervisedDataset(job.data, job.builder),
        data_collator=Collator(job.builder.pad_id),
        callbacks=[monitor],
    )
    trainer.remove_callback(PrinterCallback)
    try:
        trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    except BaseException:
        monitor.close()
        raise
    summary = TrainSummary(
        folder.path, config.finetuning_type, trainer.state.global_step,
        round(monitor.elapsed, 3), monitor.last_loss, round(monitor.samples_per_second, 3),
    )
    staged = folder.path / ".final.partial"
    set_cache(net, True)
    net.save_pretrained(staged)
    if config.finetuning_type is FinetuningType.FULL:
        job.builder.processor.save_pretrained(staged)
    loss = "n/a" if summary.final_loss is None else f"{summary.final_loss:.4f}"
    preset = output_preset(
        name=folder.path.name,
        config=config,
        base=job.base,
        base_model=base_model_name(job.base.model_id),
        model_type=job.plan.config.model_type,
        data=job.data,
        description=(
            f"{config.finetuning_type.value} fine-tuning of {job.base.model_id} on"
            f" {job.data.root.name} by geovlm train ({summary.steps} steps, final loss {loss})"
        ),
    )
    folder.finish(staged, preset, summary.as_dict())
    monitor.close(summary.as_dict())
    return summary


def _arguments(config: TrainConfig, output: Path, device_type: str) -> Any:
    """The `TrainingArguments` of the recipe."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.lr_scheduler_type.value,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=config.bf16 and device_type == "cuda",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        seed=config.seed,
        data_seed=config.seed,
        optim="adamw_torch",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=device_type == "cpu",
    )


class _Monitor(TrainerCallback):
    """Trainer callback: log lines, the progress bar or JSON events, timing."""

    def __init__(
        self, folder: OutputFolder, mode: ProgressMode, elapsed_before: float, config: TrainConfig
    ) -> None:
        self.folder = folder
        self.mode = mode
        self.elapsed_before = elapsed_before
        self.samples_per_step = config.per_device_train_batch_size * (
            config.gradient_accumulation_steps
        )
        self.reporter: ProgressReporter | None = None
        self.start = time.perf_counter()
        self.first_step = 0
        self.steps = 0
        self.last_loss: float | None = None
        self.pending = False

    @property
    def elapsed(self) -> float:
        """Seconds this process has trained."""
        return time.perf_counter() - self.start

    @property
    def samples_per_second(self) -> float:
        """Training samples per second in this process."""
        return self.steps * self.samples_per_step / max(self.elapsed, 1e-9)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.perf_counter()
        self.first_step = state.global_step
        self.reporter = ProgressReporter(self.mode, state.max_steps, "steps").__enter__()
        if state.global_step:
            self.reporter.resume(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps = state.global_step - self.first_step
        self.pending = True
        if not control.should_log:  # else the step is counted with its loss, in on_log
            self._advance()

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
            self._write_row(state, float(logs.get("learning_rate", 0.0)))
        self._advance()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._advance()

    def _advance(self) -> None:
        """Count the step just taken (once), showing the latest loss."""
        if self.reporter is not None and self.pending:
            extra = {} if self.last_loss is None else {"loss": round(self.last_loss, 4)}
            self.reporter.advance(1, **extra)
        self.pending = False

    def _write_row(self, state: Any, lr: float) -> None:
        elapsed = self.elapsed
        done = max(state.global_step - self.first_step, 1)
        row = {
            "step": state.global_step,
            "epoch": round(float(state.epoch or 0), 4),
            "loss": self.last_loss,
            "lr": lr,
            "elapsed": round(self.elapsed_before + elapsed, 3),
            "eta": round((state.max_steps - state.global_step) * elapsed / done, 3),
            "samples_per_s": round(done * self.samples_per_step / max(elapsed, 1e-9), 3),
        }
        with self.folder.log_file.open("a", encoding="utf-8") as log:
            log.write(json.dumps(row) + "\n")

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Stop the progress bar, reporting the run's ``summary`` if it finished."""
        if self.reporter is not None:
            if summary is not None:
                self.reporter.finish(**summary)
            self.reporter.__exit__(None, None, None)
            self.reporter = None

