"""``geovlm serve``: one model behind an OpenAI-compatible HTTP API (see docs/serve.md)."""

from __future__ import annotations

import logging

import click

from geovlm.commands.options import model_options
from geovlm.serve.settings import API_KEY_ENV, ServeSettings

__all__ = ["serve"]

log = logging.getLogger(__name__)


@click.command()
@model_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs an API key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on.")
@click.option("--api-key", default=None, metavar="KEY", envvar=API_KEY_ENV, show_envvar=True,
              help="Key clients must send as 'Authorization: Bearer KEY'; set"
                   f" {API_KEY_ENV} instead to keep it out of the process list.")
@click.option("--served-model-name", default=None, metavar="NAME",
              help="The model's id in /v1/models and requests; default: the preset's name.")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Most chips or prompts of concurrent requests run together.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Longest a request waits for others to fill its batch.")
@click.option("--max-queue", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most chips or prompts waiting; beyond it requests get 503 + Retry-After.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=32.0,
              show_default=True, help="Largest request body (413 beyond).")
@click.option("--max-images", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most images in one request (413 beyond).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True, help="Seconds a request may wait and run (504 beyond).")
def serve(
    model: str,
    adapter: str | None,
    no_adapter: bool,
    quantize: str | None,
    device: str | None,
    host: str,
    port: int,
    api_key: str | None,
    served_model_name: str | None,
    max_batch: int,
    max_wait_ms: float,
    max_queue: int,
    max_body_mb: float,
    max_images: int,
    timeout: float,
) -> None:
    """Serve a model over HTTP: /v1/chat/completions (OpenAI), /v1/classify, /v1/models.

    Concurrent requests are batched on the server. Binding anything but a loopback address
    needs an API key (--api-key or $GEOVLM_API_KEY).
    """
    settings = ServeSettings.from_options(
        api_key, host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms,
        max_queue=max_queue, max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_images=max_images, timeout_s=timeout,
    )
    from geovlm.backends.choice import ModelChoice

    choice = ModelChoice.resolve(model, adapter=adapter, no_adapter=no_adapter,
                                 quantize=quantize, device=device, batch_size=max_batch)
    import uvicorn

    from geovlm.events.signals import Interrupted
    from geovlm.serve.app import ServedModel, create_app
    from geovlm.serve.model_process import ModelProcess

    try:
        # Loading happens in the model process; Ctrl-C meanwhile stops it too.
        model_process = ModelProcess(choice)
    except Interrupted:
        click.echo("Stopped while loading the model.", err=True)
        return
    served = ServedModel(
        name=served_model_name or choice.preset.name, model_id=choice.preset.model_id,
        engine=model_process, verbalizer=choice.preset.answers, calibration=choice.calibration,
        adapter=choice.adapter,
    )
    click.echo(f"Serving {served.name} on http://{host}:{port}/v1", err=True)
    try:
        uvicorn.run(create_app(served, settings), host=host, port=port, log_level="warning")
    except Interrupted:  # uvicorn re-raises the signal it stopped on: a normal end here
        click.echo("Stopped.", err=True)
    finally:
        model_process.close()
