"""``geovlm:classify`` on a ``geovlm serve`` server: the model runs there, tiling and writing here."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
import urllib.request
from contextlib import closing

import processing
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsVectorLayer

from geovlm_qgis.engine import engine_environment

API_KEY = "qgis-test-key-5f3a9c"


@pytest.fixture(scope="module")
def server_url(engine, tiny_model):
    """A real ``geovlm serve`` of the tiny model on a free loopback port, with a key."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [engine, "serve", "--model", tiny_model, "--quantize", "none", "--device", "cpu",
         "--port", str(port), "--api-key", API_KEY],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=engine_environment())
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"geovlm serve did not start: {process.communicate()[1][-2000:]}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    process.wait(timeout=30)


def _classify(scene, model, out, url, key, feedback=None):
    return processing.run("geovlm:classify", {
        "INPUT": str(scene), "MODEL": model, "CHIP_SIZE": 256, "BATCH_SIZE": 16,
        "ENDPOINT": url, "API_KEY": key, "OUTPUT": str(out)}, feedback=feedback)


def test_classify_runs_the_model_on_the_server(plugin, engine, server_url, scene, tiny_model,
                                               tmp_path, monkeypatch):
    # The engine as run, behind a wrapper that records its command line.
    argv = tmp_path / "argv.txt"
    wrapper = tmp_path / "geovlm"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{argv}"\nexec "{engine}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("GEOVLM_ENGINE", str(wrapper))
    out = tmp_path / "remote.gpkg"
    feedback = QgsProcessingFeedback(logFeedback=True)
    bare = server_url.removesuffix("/v1")  # the engine finds the API at its /v1
    result = _classify(scene, tiny_model, out, bare, API_KEY, feedback)
    assert result["STATUS"] == "complete" and result["WRITTEN"] == 16
    assert QgsVectorLayer(result["OUTPUT"], "chips", "ogr").featureCount() == 16
    with closing(sqlite3.connect(out)) as db:
        parameters = json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])
    assert parameters["backend"] == "openai"
    assert parameters["endpoint"].rstrip("/") == server_url
    # The key reached the engine (the server took it) in its environment, not on its argv
    # (readable by every user through ps), and the log names the variable only.
    arguments = argv.read_text().splitlines()
    assert arguments[arguments.index("--endpoint") + 1] == bare
    assert "--api-key" not in arguments and API_KEY not in argv.read_text()
    log = feedback.textLog()
    assert f"GEOVLM_API_KEY=*** {wrapper} classify" in log and f"--endpoint {bare}" in log
    assert API_KEY not in log and "--api-key" not in log


def test_a_wrong_key_is_a_processing_error_with_the_engines_sentence(plugin, server_url, scene,
                                                                     tiny_model, tmp_path):
    with pytest.raises(QgsProcessingException, match="API key"):
        _classify(scene, tiny_model, tmp_path / "x.gpkg", server_url, "wrong-key")
    assert not (tmp_path / "x.gpkg").exists()


def test_the_saved_server_is_the_default_and_a_parameter_overrides_it(plugin):
    from geovlm_qgis.settings import server, server_arguments, set_server

    saved = server()
    try:
        set_server("http://gpu-host:8000/v1", "saved-key")
        assert server_arguments() == ["--backend", "openai", "--endpoint",
                                      "http://gpu-host:8000/v1", "--api-key", "saved-key"]
        assert server_arguments(" http://other:9000/v1 ")[3:] == ["http://other:9000/v1",
                                                                 "--api-key", "saved-key"]
        set_server("")
        assert server_arguments() == []
        assert server_arguments("http://other:9000/v1") == ["--backend", "openai",
                                                            "--endpoint", "http://other:9000/v1"]
    finally:
        set_server(*saved)


def test_secret_options_move_into_the_engine_environment(tmp_path):
    from geovlm_qgis.engine import run_engine, shown_command

    echo = tmp_path / "echo-engine"
    echo.write_text('#!/bin/sh\nprintf \'{"event": "done", "argv": "%s", "key": "%s"}\\n\''
                    ' "$*" "$GEOVLM_API_KEY"\n')
    echo.chmod(0o755)
    for args in (["classify", "--api-key", API_KEY, "-o", "x.gpkg"],
                 ["classify", f"--api-key={API_KEY}", "-o", "x.gpkg"]):
        done = run_engine(str(echo), args, lambda event: None)
        assert done["argv"] == "classify -o x.gpkg --progress json"
        assert done["key"] == API_KEY
        assert shown_command("geovlm", args) == "GEOVLM_API_KEY=*** geovlm classify -o x.gpkg"


def test_refer_detects_on_the_server(plugin, server_url, scene, tmp_path):
    out = tmp_path / "objects.gpkg"
    # Without a caption model, --detect takes the server's first model.
    result = processing.run("geovlm:refer", {
        "INPUT": str(scene), "DETECT": True, "CHIP_SIZE": 512, "ENDPOINT": server_url,
        "API_KEY": API_KEY, "OUTPUT": str(out)})
    assert result["STATUS"] == "complete"
    assert result["OUTPUT"] == f"{out}|layername=objects"
    with closing(sqlite3.connect(out)) as db:
        parameters = json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])
    caption = parameters["caption_model"]
    assert caption["backend"] == "openai" and caption["endpoint"].rstrip("/") == server_url


def test_refer_runs_on_its_own_endpoint_not_the_saved_one(plugin, scene):
    from qgis.core import QgsApplication, QgsProcessingContext

    from geovlm_qgis.settings import server, set_server

    refer = QgsApplication.processingRegistry().algorithmById("geovlm:refer")
    context = QgsProcessingContext()
    saved = server()
    try:
        set_server("http://gpu-host:8000/v1", "saved-key")  # classify's server
        detect = {"INPUT": str(scene), "DETECT": True}
        assert "--backend" not in refer.task_arguments(detect, context)
        args = refer.task_arguments({**detect, "ENDPOINT": "http://other:9000/v1"}, context)
        assert args[args.index("--endpoint") + 1:] == ["http://other:9000/v1", "--api-key",
                                                       "saved-key"]
    finally:
        set_server(*saved)
