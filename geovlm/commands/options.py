"""Command-line options shared by several commands, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from geovlm.events.progress import ProgressMode
from geovlm.events.protocol import stdout_events, warnings_as_events
from geovlm.models.presets import DEFAULT_MODEL
from geovlm.serve.settings import API_KEY_ENV

__all__ = [
    "JSON_EVENTS",
    "choose_gsd",
    "compose_options",
    "device_options",
    "endpoint_options",
    "engine_options",
    "model_options",
    "output_options",
    "parse_bands",
    "ray_engine",
    "remote_endpoint",
    "remote_options",
    "remote_server",
    "run_options",
    "run_settings",
    "tiling_options",
]

#: Key of ``click.Context.meta`` set when a command reports in JSON lines (``--progress json``).
JSON_EVENTS = "geovlm.json_events"

if TYPE_CHECKING:
    from geovlm.backends.choice import RemoteServer
    from geovlm.pipeline.engines import ChipEngine
    from geovlm.pipeline.engines.ray import RayEngine
    from geovlm.pipeline.plan import RunOptions

F = TypeVar("F", bound=Callable[..., Any])


def parse_bands(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> tuple[int, ...] | None:
    """Parse ``--bands 3,2,1`` into band numbers.

    Examples
    --------
    >>> parse_bands(None, None, "3,2,1")
    (3, 2, 1)
    """
    if value is None:
        return None
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of band numbers, e.g. 3,2,1."
        ) from None


def _progress_mode(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """With ``--progress json``, logged warnings become events and errors will too (cli.py)."""
    if ProgressMode(value) is ProgressMode.JSON:
        ctx.meta[JSON_EVENTS] = True
        ctx.with_resource(warnings_as_events(stdout_events()))
    return value


def choose_gsd(gsd: float | None, native_gsd: bool, preset_gsd: float | None) -> float | None:
    """Return the GSD chips are resampled to: `--gsd`, none with `--native-gsd`, else the preset's.

    Parameters
    ----------
    gsd
        ``--gsd`` (metres per pixel), or None.
    native_gsd
        ``--native-gsd``: keep the scene's resolution.
    preset_gsd
        The preset's training GSD, or None.

    Returns
    -------
    float or None
        None keeps the scene's resolution.

    Raises
    ------
    ParameterError
        If both ``--gsd`` and ``--native-gsd`` are given.

    Examples
    --------
    >>> choose_gsd(None, False, 3.5), choose_gsd(0.5, False, 3.5), choose_gsd(None, True, 3.5)
    (3.5, 0.5, None)
    """
    if native_gsd and gsd is not None:
        from geovlm.errors import ParameterError

        raise ParameterError(
            f"--gsd {gsd} resamples the chips and --native-gsd keeps the scene's resolution:"
            " pass one."
        )
    if native_gsd:
        return None
    return gsd if gsd is not None else preset_gsd


def compose_options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Return one decorator that applies `decorators` as if stacked in the order listed.

    Parameters
    ----------
    *decorators
        Click options (or other decorators), top first.

    Returns
    -------
    Callable
    """

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def tiling_options(default_size: int | None = 512) -> Callable[[F], F]:
    """Options that say how a scene is cut into chips.

    Parameters
    ----------
    default_size
        Default chip size; None leaves it to the command (e.g. the model preset's).
    """
    return compose_options(
        click.option("--size", type=click.IntRange(min=1), default=default_size,
                     show_default=default_size is not None,
                     help="Chip edge in pixels (after any --gsd resampling)."),
        click.option("--overlap", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Pixels shared by neighbouring chips."),
        click.option("--bands", callback=parse_bands, metavar="B[,G,B]",
                     help="1-based bands to use as RGB (or one band as grey); default 1,2,3."),
        click.option("--min-valid", type=click.FloatRange(0, 1), default=0.5,
                     show_default=True,
                     help="Skip chips whose share of valid (not nodata) pixels is lower."),
        click.option("--nodata", type=float, default=None,
                     help="Treat this value as nodata, for scenes that fill without declaring it."),
        click.option("--gsd", type=click.FloatRange(min=0, min_open=True), default=None,
                     metavar="METRES",
                     help="Resample chips to this ground sampling distance (metres/pixel)."),
    )


def run_options(overwrite_help: str) -> Callable[[F], F]:
    """Options every command that writes an output shares: ``--overwrite``, progress, quiet.

    Parameters
    ----------
    overwrite_help
        What ``--overwrite`` does for this command's output.
    """
    return compose_options(
        click.option("--overwrite", is_flag=True, help=overwrite_help),
        click.option("--progress", type=click.Choice([m.value for m in ProgressMode]),
                     default=ProgressMode.AUTO.value, show_default=True,
                     callback=_progress_mode,
                     help="Progress display: a bar on a terminal, JSON lines on stdout"
                          " (docs/events.md), or none."),
        click.option("-q", "--quiet", is_flag=True,
                     help="Print nothing but errors."),
    )


def run_settings(output: str, progress: str, quiet: bool, overwrite: bool, *,
                 batch_size: int | None = None,
                 engine: ChipEngine | None = None) -> RunOptions:
    """The `RunOptions` of `output_options` (and ``--batch-size``, ``--engine``), built once."""
    from geovlm.pipeline.plan import RunOptions

    return RunOptions(output, batch_size,
                      ProgressMode.NONE if quiet else ProgressMode(progress), overwrite, engine)


def output_options(function: F) -> F:
    """Options every command that writes a GeoPackage shares."""
    return compose_options(
        click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                     help="Output GeoPackage (.gpkg); an unfinished run in it is resumed."),
        run_options("Start afresh: replace an existing output instead of resuming it."),
    )(function)


def device_options(function: F) -> F:
    """Options that say how and where models run: ``--quantize`` and ``--device``."""
    return compose_options(
        click.option("--quantize", type=click.Choice(["auto", "4bit", "8bit", "none"]),
                     default=None,
                     help="4-bit NF4, 8-bit or full-precision weights; auto = 4bit on CUDA,"
                          " none on CPU."),
        click.option("--device", default=None, metavar="DEVICE",
                     help="A torch device such as cuda:0 or cpu; default: CUDA when present."),
    )(function)


def model_options(function: F) -> F:
    """Options that choose the model and where it runs (see `geovlm.backends.choice`)."""
    return compose_options(
        click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True,
                     metavar="PRESET|ID|DIR",
                     help="A preset name (see `geovlm models`), a Hugging Face id or a local"
                          " folder (e.g. one written by `geovlm train`)."),
        click.option("--adapter", default=None, metavar="ID|PATH",
                     help="A LoRA adapter on top of the model; default: the preset's."),
        click.option("--no-adapter", is_flag=True,
                     help="Use the base model without the preset's adapter."),
        device_options,
    )(function)


def endpoint_options(function: F) -> F:
    """Options that send a command's model calls to a server: backend, endpoint, key, bound.

    The key falls back to the variable ``geovlm serve`` reads its own key from: one shared
    secret, required by the server and sent by its clients.
    """
    return compose_options(
        click.option("--backend", type=click.Choice(["hf", "openai"]), default="hf",
                     show_default=True,
                     help="hf: the model runs in this process; openai: on the server at"
                          " --endpoint (geovlm serve or vLLM)."),
        click.option("--endpoint", default=None, metavar="URL",
                     help="The server's OpenAI API base URL, e.g. http://gpu-host:8000/v1."),
        click.option("--api-key", default=None, metavar="KEY", envvar=API_KEY_ENV,
                     show_envvar=True,
                     help="The key sent to the server (Authorization: Bearer KEY); set"
                          f" {API_KEY_ENV} instead to keep it out of the process list."),
        click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Most requests in flight to the server."),
    )(function)


def remote_endpoint(backend: str, endpoint: str | None) -> str | None:
    """The server a command's models run on: ``--endpoint`` with ``--backend openai``, else None.

    Raises
    ------
    click.UsageError
        ``--backend openai`` without ``--endpoint``, ``--endpoint`` without it, or an
        endpoint that is not an http(s) URL (caught here, not after a round of retries).

    Examples
    --------
    >>> remote_endpoint("hf", None) is None, remote_endpoint("openai", "http://h:8000/v1")
    (True, 'http://h:8000/v1')
    """
    if backend == "openai" and not endpoint:
        raise click.UsageError("--backend openai needs --endpoint URL.")
    if backend != "openai" and endpoint:
        raise click.UsageError("--endpoint needs --backend openai.")
    if endpoint is None:
        return None
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise click.UsageError(
            f"--endpoint {endpoint} is not an http(s) URL: give the server's API base,"
            " e.g. http://gpu-host:8000/v1."
        )
    return endpoint


def remote_server(backend: str, endpoint: str | None, api_key: str | None, *,
                  served_model: str | None = None, method: str = "auto",
                  concurrency: int = 8) -> RemoteServer | None:
    """The server of `remote_options` (checked as `remote_endpoint`), or None in-process."""
    from geovlm.backends.choice import RemoteServer

    url = remote_endpoint(backend, endpoint)
    return None if url is None else RemoteServer(url, api_key, served_model, method, concurrency)


def remote_options(function: F) -> F:
    """`endpoint_options` and the served model that scores chips (`geovlm.backends.openai`)."""
    return compose_options(
        endpoint_options,
        click.option("--served-model", default=None, metavar="NAME",
                     help="The model id on the server (e.g. a vLLM LoRA module's name);"
                          " default: the first it lists."),
        click.option("--remote-method",
                     type=click.Choice(["auto", "geovlm-classify", "chat-logprobs",
                                        "prompt-logprobs", "chat-choice"]),
                     default="auto", show_default=True,
                     help="How answers get probabilities on the server; auto: /v1/classify on"
                          " geovlm serve; on vLLM first-token logprobs where they separate"
                          " the labels, else whole-form prompt_logprobs, else a structured"
                          " choice."),
    )(function)


def engine_options(function: F) -> F:
    """Options that choose where the model works: here, or on a Ray cluster's actors."""
    return compose_options(
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="local: the model works in this process; ray: on the actors of a Ray"
                          " cluster, one model per actor, while this process writes."),
        click.option("--ray-address", default=None, metavar="ADDR",
                     help="The Ray cluster to join, as `ray start --head` prints it (auto: the"
                          " one on this machine).  [default: $RAY_ADDRESS, else a new cluster"
                          " on this machine]"),
        click.option("--ray-actors", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Actors in the pool, each with its own model.  [default: one per GPU"
                          " of the cluster, else one per node]"),
        click.option("--ray-gpus", type=click.FloatRange(min=0), default=None, metavar="G",
                     help="GPUs each actor reserves; fractions share a GPU.  [default: 1 on a"
                          " cluster with GPUs, else 0; 0 with --backend openai or --device"
                          " cpu]"),
    )(function)


def ray_engine(
    engine: str, address: str | None, actors: int | None, gpus: float | None, *, cpu_only: bool
) -> RayEngine | None:
    """The engine ``--engine`` names: a `RayEngine`, or None for the local one (the default).

    Parameters
    ----------
    engine
        ``--engine``.
    address, actors, gpus
        ``--ray-address``, ``--ray-actors`` and ``--ray-gpus``.
    cpu_only
        Whether the actors use no GPU (``--backend openai``: the model is on a server, or
        ``--device cpu``): then they reserve none unless ``--ray-gpus`` says so.

    Raises
    ------
    click.UsageError
        A ``--ray-*`` option without ``--engine ray``.
    DependencyError
        Ray is not installed.
    EndpointError
        Nothing listens at the address.

    Examples
    --------
    >>> ray_engine("local", None, None, None, cpu_only=False) is None
    True
    """
    if engine != "ray":
        if address is not None or actors is not None or gpus is not None:
            raise click.UsageError("--ray-address, --ray-actors and --ray-gpus need --engine ray.")
        return None
    from geovlm.pipeline.engines.ray import RayEngine

    return RayEngine(address, actors, 0.0 if cpu_only and gpus is None else gpus)
