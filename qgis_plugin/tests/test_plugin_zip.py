"""`make plugin-zip` gives what Plugins > Install from ZIP accepts, and the installed copy loads."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import qgis.utils
from pyplugin_installer.unzip import unzip
from pyplugin_installer.version_compare import isCompatible
from qgis.core import Qgis

from .conftest import ALGORITHMS, PLUGIN_ROOT

LOAD = """
import sys
from qgis.testing import start_app
start_app()
sys.path.insert(0, sys.argv[1])
import geovlm_qgis
from qgis.core import QgsApplication
assert geovlm_qgis.__file__.startswith(sys.argv[1]), geovlm_qgis.__file__
plugin = geovlm_qgis.classFactory(None)
plugin.initProcessing()
provider = QgsApplication.processingRegistry().providerById('geovlm')
print(sorted(a.id() for a in provider.algorithms()))
"""


def test_the_zip_installs_like_install_from_zip(tmp_path):
    subprocess.run(["make", "-s", "plugin-zip", f"PLUGIN_DIST={tmp_path}"],
                   cwd=PLUGIN_ROOT.parent, check=True, capture_output=True)
    archive = tmp_path / "geovlm_qgis.zip"
    with zipfile.ZipFile(archive) as zf:  # how the installer finds the plugin's name
        names = zf.namelist()
    assert sorted(n for n in names if n.endswith("metadata.txt"))[0] == "geovlm_qgis/metadata.txt"
    assert not [n for n in names if "__pycache__" in n or "/tests/" in n]
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    unzip(str(archive), str(plugins))
    [(name, metadata)] = list(qgis.utils.findPlugins(str(plugins)))
    assert name == "geovlm_qgis"
    minimum = metadata.get("general", "qgisMinimumVersion")
    assert minimum == "3.22" and isCompatible(Qgis.QGIS_VERSION, minimum, "3.99")
    loaded = subprocess.run([sys.executable, "-c", LOAD, str(plugins)], capture_output=True,
                            text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == str(ALGORITHMS)
