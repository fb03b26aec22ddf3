# Two entry points: `make classify SCENE=scene.tif OUT=out.gpkg` and `make test`.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-stamp
# Default demo scene: a real 5 m NAIP aerial image (4.7 x 3.6 km), close to the default preset's
# 3.5 m training resolution (cogeo.tif, 485 m across, is smaller than one 1.8 km chip at 3.5 m).
SCENE ?= ../shared/data/geotiff/opengeos/m_4709963_se_14_1_20200831.tif
OUT ?= out.gpkg
ARGS ?=

.PHONY: install qgis chromium qgis-venv plugin-zip screenshots tile classify test lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: both wheels lie on this machine's disk; an unpinned torch pulls GBs.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's QGIS and GDAL's Python utilities (importable from /usr/bin/python3 only) for the tests
# that open outputs in QGIS and check them with GDAL's GeoPackage validator (validate_gpkg.py).
# `qgis` brings qgis_process and the desktop (the plugin's tests and screenshots), xvfb runs it.
qgis:
	@/usr/bin/python3 -c 'import qgis.core, osgeo_utils.samples.validate_gpkg' 2>/dev/null \
	  && command -v qgis_process >/dev/null && command -v xvfb-run >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends python3-qgis python3-gdal python3-mock qgis xvfb xauth >/dev/null; }

# Debian's chromium: tests/test_report.py renders `geovlm report`'s page in it, headless.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium >/dev/null; }

# The QGIS plugin's tests run in Debian's Python (the only one that imports qgis) with pytest
# added and none of the toolkit: its numpy 2 and bundled GDAL/PROJ would break QGIS's.
QGIS_VENV = .venv-qgis
$(QGIS_VENV)/bin/pytest: | qgis
	/usr/bin/python3 -m venv --system-site-packages $(QGIS_VENV)
	$(QGIS_VENV)/bin/pip install -q pytest

qgis-venv: $(QGIS_VENV)/bin/pytest

# docs/img/qgis-dock.png and qgis-desktop.png: the plugin's tests, saving their pictures there.
screenshots: $(STAMP) qgis-venv chromium
	GEOVLM_SCREENSHOTS=$(CURDIR)/docs/img $(BIN)/python -m pytest -q -n 0 tests/test_qgis_plugin.py \
	  tests/test_report.py::test_the_page_renders_in_headless_chromium

# A zip that QGIS's Plugins > Install from ZIP accepts: one top folder, the plugin package.
PLUGIN_DIST ?= dist
plugin-zip:
	rm -rf $(PLUGIN_DIST)/plugin && mkdir -p $(PLUGIN_DIST)/plugin
	cp -r qgis_plugin/geovlm_qgis $(PLUGIN_DIST)/plugin/
	find $(PLUGIN_DIST)/plugin -name __pycache__ -prune -exec rm -rf {} +
	cd $(PLUGIN_DIST)/plugin && rm -f ../geovlm_qgis.zip \
	  && python3 -m zipfile -c ../geovlm_qgis.zip geovlm_qgis
	rm -rf $(PLUGIN_DIST)/plugin
	@echo "$(PLUGIN_DIST)/geovlm_qgis.zip"

tile: $(STAMP)
	$(BIN)/geovlm tile $(SCENE) -o $(OUT) $(ARGS)

classify: $(STAMP)
	$(BIN)/geovlm classify $(SCENE) -o $(OUT) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint qgis qgis-venv chromium
	$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$status

bench: $(STAMP)
	$(BIN)/python bench/tiling.py
