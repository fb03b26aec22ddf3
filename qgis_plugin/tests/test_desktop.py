"""The real QGIS desktop under Xvfb with the plugin enabled: a classified layer on the map."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .conftest import PLUGIN_ROOT
from .test_dock import _screenshot_path


def test_the_desktop_shows_a_classified_layer(engine, scene, tiny_model, tmp_path):
    profiles = tmp_path / "profiles"
    ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ngeovlm_qgis=true\n\n[qgis]\nshowTips=false\n"
                   "checkVersion=false\n")
    picture = _screenshot_path(tmp_path, "qgis-desktop.png")
    job = {"scene": str(scene), "model": tiny_model, "output": str(tmp_path / "desk.gpkg"),
           "picture": str(picture), "report": str(tmp_path / "report.json")}
    env = {**os.environ, "QGIS_PLUGINPATH": str(PLUGIN_ROOT),
           "GEOVLM_DESKTOP_JOB": json.dumps(job)}
    env.pop("QT_QPA_PLATFORM", None)  # a real X server (Xvfb) this time
    done = subprocess.run(
        [shutil.which("xvfb-run") or "xvfb-run", "-a", "-s", "-screen 0 1280x800x24",
         "qgis", "--profiles-path", str(profiles), "--nologo", "--noversioncheck",
         "--code", str(Path(__file__).with_name("desktop_script.py"))],
        env=env, capture_output=True, text=True, timeout=300)
    report_path = Path(job["report"])
    assert report_path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert "error" not in report, report
    assert report["plugin_loaded"] and report["provider"]
    assert report["renderer"] == "categorizedSymbol" and report["count"] == 16
    assert report["picture"] and picture.stat().st_size > 50_000
    assert report["heavy"] == []
