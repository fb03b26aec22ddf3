"""The model a command runs (preset, adapter, quantization, device) and loading it, shared.

Every command that runs a model (``classify``, ``eval``, ``refer``) resolves its options the
same way and loads the backend the same way: the device name and the weights' availability
are checked before torch and transformers are imported, so a typo or missing weights without
a hub fail in seconds.
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from geovlm.backends.base import Backend, ModelRun
from geovlm.errors import ParameterError
from geovlm.labels.calibration import Calibration
from geovlm.labels.label_set import DISASTER_TYPES, LabelSet
from geovlm.models.presets import ModelPreset, resolve_model

if TYPE_CHECKING:
    from geovlm.backends.openai import OpenAIBackend

__all__ = ["ModelChoice", "RemoteServer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteServer:
    """An OpenAI-compatible server a model runs on (``--backend openai`` and its options).

    Attributes
    ----------
    endpoint
        ``--endpoint``, the server's API base URL (``/v1`` is added where it has no API).
    api_key
        ``--api-key`` (or ``GEOVLM_API_KEY``); None sends none.
    served_model
        ``--served-model``: the model id on the server; None takes the first listed.
    method
        ``--remote-method`` (see `geovlm.backends.openai.RemoteMethod`).
    concurrency
        Most requests in flight.
    """

    endpoint: str
    api_key: str | None = None
    served_model: str | None = None
    method: str = "auto"
    concurrency: int = 8


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """A resolved preset with the command line's overrides.

    Attributes
    ----------
    preset
        The model preset (`geovlm.models.presets.resolve_model`).
    adapter
        The adapter loaded on top (the preset's, ``--adapter``'s, or None for ``--no-adapter``).
    quantize
        ``--quantize`` or the preset's.
    device
        ``--device``, or None for CUDA when present.
    batch_size
        Prompts per model call.
    use_calibration
        False when ``--no-calibration`` refuses the preset's calibration.
    model_option, adapter_option
        The options that named the model and the adapter, for messages about missing weights
        (``refer`` names both ``--rewrite-model`` or ``--caption-model``).
    """

    preset: ModelPreset
    adapter: str | None
    quantize: str
    device: str | None
    batch_size: int
    use_calibration: bool = True
    model_option: str = "--model"
    adapter_option: str = "--adapter"

    @classmethod
    def resolve(
        cls,
        model: str,
        *,
        adapter: str | None = None,
        no_adapter: bool = False,
        quantize: str | None = None,
        device: str | None = None,
        batch_size: int = 8,
        use_calibration: bool = True,
        option: str | None = None,
    ) -> ModelChoice:
        """Resolve ``--model`` and apply the other options, without loading anything.

        Parameters
        ----------
        model
            A preset name, hub id or local folder.
        adapter
            ``--adapter``, replacing the preset's; None keeps it.
        no_adapter
            Load the base model alone.
        quantize
            ``--quantize``; None keeps the preset's.
        device
            ``--device``.
        batch_size
            ``--batch-size``.
        use_calibration
            False for ``--no-calibration``.
        option
            The one option that names the model and so its preset's adapter (e.g.
            ``--rewrite-model``); None for ``--model`` and ``--adapter``.

        Returns
        -------
        ModelChoice

        Raises
        ------
        ParameterError
            If both `adapter` and `no_adapter` are given.
        PresetError, ModelNotFoundError
            As `geovlm.models.presets.resolve_model`.
        """
        if adapter is not None and no_adapter:
            raise ParameterError(
                f"--adapter {adapter} and --no-adapter contradict each other: pass one."
            )
        preset = resolve_model(model)
        return cls(
            preset=preset,
            adapter=None if no_adapter else (adapter or preset.adapter_id),
            quantize=quantize or preset.quantize.value,
            device=device,
            batch_size=batch_size,
            use_calibration=use_calibration,
            **({"model_option": option, "adapter_option": option} if option else {}),
        )

    @property
    def calibration(self) -> Calibration | None:
        """The preset's calibration, unless refused or fitted for another adapter than this."""
        return self.calibration_for(DISASTER_TYPES)

    def calibration_for(self, labels: LabelSet) -> Calibration | None:
        """`calibration` of a label set (``damage_calibration:`` for damage grades)."""
        calibration = self.preset.calibration_for(labels) if self.use_calibration else None
        if calibration is not None and self.adapter != self.preset.adapter_id:
            log.info("%s's calibration was fitted with adapter %s, not %s: not applied",
                     self.preset.name, self.preset.adapter_id, self.adapter)
            return None
        return calibration

    def remote_calibration(
        self, remote: OpenAIBackend, labels: LabelSet = DISASTER_TYPES
    ) -> Calibration | None:
        """The preset's calibration for its model on a server, unless the server runs another.

        A calibration fits one model's probabilities: applied to another's, it makes them
        wrong, not better. A server that names its weights (`/v1/models`) must name the
        preset's base and this adapter; one that names none is taken at the user's word.
        """
        from geovlm.backends.endpoint import ServedWeights

        calibration = self.calibration_for(labels)
        served = remote.weights
        if calibration is None or served is None:
            return calibration
        expected = ServedWeights(self.preset.model_id, self.adapter)
        if served != expected:
            log.warning("%s on the server runs %s, not %s: %s's calibration is not applied"
                        " (serve the preset's weights by their hub ids to have it applied)",
                        remote.served_model, served, expected, self.preset.name)
            return None
        return calibration

    def run_parameters(self) -> dict[str, Any]:
        """The model's choices that change results, to record with a run."""
        return {
            "model": self.preset.model_id,
            "adapter": self.adapter,
            "quantize": self.quantize,
            "template": self.preset.template,
            "image_max_pixels": self.preset.image_max_pixels,
        }

    def local_run(self, labels: LabelSet = DISASTER_TYPES) -> ModelRun[Backend]:
        """The model loaded in this process, once the run's checks passed.

        Its calibration is the one of ``labels`` (damage grades: ``damage_calibration:``).
        """
        return ModelRun(self.load_backend, self.run_parameters(), self.preset.name,
                        self.preset.supports_images, self.calibration_for(labels))

    def remote_run(self, server: RemoteServer, language: str = "en", *,
                   reconnect: bool = False,
                   labels: LabelSet = DISASTER_TYPES) -> ModelRun[Backend]:
        """The model on a server, reached now, so a wrong URL, key or id fails before any write.

        The preset still gives the answer forms (and the calibration, where the server runs the
        preset's weights); the run records the preset and the server instead of weights.

        Parameters
        ----------
        server
            The server and its options.
        language
            The language asked in (it picks the scoring method of servers other than geovlm
            serve).
        reconnect
            Each `ModelRun.load` opens its own connection (e.g. on every Ray actor) rather
            than handing back the one made here.
        labels
            Whose calibration the run applies (damage grades: ``damage_calibration:``).

        Returns
        -------
        ModelRun

        Raises
        ------
        EndpointError
            The server does not answer, refuses the key, or serves no such model.
        """
        connect = functools.partial(
            self.connect, api_key=server.api_key, labels=labels,
            served_model=server.served_model, method=server.method, language=language,
            concurrency=server.concurrency,
        )
        remote = connect(server.endpoint)
        # Reconnections go straight to the base URL that answered (its /v1, if it took that).
        again = functools.partial(connect, str(remote.client.base_url))
        return ModelRun(again if reconnect else lambda: remote,
                        {"preset": self.preset.name, **remote.run_record()}, self.preset.name,
                        self.preset.supports_images, self.remote_calibration(remote, labels))

    def load_backend(self) -> Backend:
        """Load the model, checking the device name and the weights before torch is imported.

        Returns
        -------
        Backend
            An `geovlm.backends.hf.HFBackend`.

        Raises
        ------
        DeviceError, ModelNotFoundError, ModelFileError, DependencyError
            A bad ``--device``, weights neither local nor reachable, a broken folder, or a
            missing quantization library (see `geovlm.backends.hf.HFBackend.load`).
        """
        from geovlm.backends.devices import check_device_name
        from geovlm.models.hub import HubWeights, check_downloads

        # Before torch and transformers are imported: missing weights without a hub fail in
        # seconds, not after half a minute of retries.
        if self.device is not None:  # a typo in --device is cheaper to report than weights
            check_device_name(self.device)
        weights = [HubWeights(self.preset.model_id, self.model_option)]
        if self.adapter:
            weights.append(HubWeights(self.adapter, self.adapter_option))
        downloads = check_downloads(*weights)

        from transformers.utils import logging as transformers_logging

        from geovlm.backends.hf import HFBackend

        if logging.getLogger().getEffectiveLevel() > logging.INFO:
            # transformers' own bars and notices would break the one-line / JSON-lines output;
            # a download still shows its bar on a terminal.
            transformers_logging.set_verbosity_error()
            if not (downloads and sys.stderr.isatty()):
                transformers_logging.disable_progress_bar()
        return HFBackend.load(
            self.preset.model_id, adapter=self.adapter, quantize=self.quantize,
            template=self.preset.template, image_max_pixels=self.preset.image_max_pixels,
            device=self.device, batch_size=self.batch_size,
        )

    def connect(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        served_model: str | None = None,
        method: str = "auto",
        language: str = "en",
        concurrency: int = 8,
        labels: LabelSet = DISASTER_TYPES,
    ) -> OpenAIBackend:
        """Reach the model on a server instead of loading it (``--backend openai``).

        The preset still gives the answer forms and the calibration, applied here exactly as
        in-process.

        Parameters
        ----------
        endpoint
            ``--endpoint``, the server's OpenAI API base URL (its ``/v1`` is tried where it has
            no API).
        api_key
            ``--api-key`` (click falls back to ``GEOVLM_API_KEY``); None sends none.
        served_model
            ``--served-model``: the model id on the server; None takes the first listed.
        method
            ``--remote-method`` (see `geovlm.backends.openai.RemoteMethod`).
        language
            The language asked in.
        concurrency
            Most requests in flight.
        labels
            What is asked: its answer forms (`ModelPreset.answers_for`) are scored, and they
            choose the method ``auto`` takes on geovlm serve.

        Returns
        -------
        OpenAIBackend

        Raises
        ------
        EndpointError
            The server does not answer, refuses the key, or serves no model.
        """
        from geovlm.backends.openai import OpenAIBackend

        return OpenAIBackend.connect(
            endpoint, api_key=api_key,
            method=method, served_model=served_model, verbalizer=self.preset.answers_for(labels),
            language=language,
            concurrency=concurrency,
        )
