# geosr developer entry points. Only needs Python 3.11 and the package registries.
#   make demo   set up .venv and super-resolve the bundled real DEM (examples/jacksboro_fault_dem.tif) x4
#   make test   set up .venv and run the test suite (with the QGIS plugin tests when QGIS is installed)
#   make plugin build the QGIS plugin zip into dist/
#   make bench  throughput and memory benchmark (prints figures)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.geosr-installed

# The Python that has QGIS's bindings (Debian: python3-qgis); set QGIS_REQUIRED=1 to fail instead of skipping without it
QGIS_PYTHON ?= /usr/bin/python3
QGIS_REQUIRED ?=

.PHONY: setup demo test test-all test-qgis lint bench bench-distributed bench-memory notebooks plugin clean

$(STAMP): pyproject.toml requirements/dev-constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/dev-constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/geosr downscale examples/jacksboro_fault_dem.tif --scale 4 -o examples/jacksboro_fault_dem_x4.tif --overwrite
	$(BIN)/python examples/compare.py examples/jacksboro_fault_dem.tif examples/jacksboro_fault_dem_x4.tif

test: setup test-qgis
	$(BIN)/python -m pytest -q

test-all: setup test-qgis
	$(BIN)/python -m pytest -q -m "slow or not slow"

# tests/qgis in QGIS's Python (geosr runs there as the .venv's executable); see tests/qgis/plugin_fixtures.py
test-qgis: setup
	@if $(QGIS_PYTHON) -c "import qgis.core" >/dev/null 2>&1; then \
		QT_QPA_PLATFORM=offscreen PYTHONSAFEPATH=1 GEOSR_EXECUTABLE="$(abspath $(BIN))/geosr" \
			$(QGIS_PYTHON) -m pytest -q --confcutdir=tests/qgis tests/qgis; \
	elif [ -n "$(QGIS_REQUIRED)" ]; then \
		echo "test-qgis: $(QGIS_PYTHON) cannot import qgis.core"; exit 1; \
	else \
		echo "test-qgis: skipped: $(QGIS_PYTHON) cannot import qgis.core (Debian: apt-get install python3-qgis qgis-providers qgis python3-pytest)"; \
	fi

lint: setup
	$(BIN)/ruff check geosr tests benchmarks examples qgis_plugin
	$(BIN)/ruff format --check geosr tests benchmarks examples qgis_plugin

bench: setup
	$(BIN)/python benchmarks/bench_downscale.py

bench-distributed: setup
	$(BIN)/python benchmarks/bench_distributed.py

bench-memory: setup
	$(BIN)/python benchmarks/bench_memory.py

notebooks: setup
	cd notebooks && $(abspath $(BIN))/jupyter execute --inplace *.ipynb

plugin:
	$(PYTHON) qgis_plugin/build_zip.py dist

clean:
	rm -rf $(VENV) build dist *.egg-info examples/*_x*.tif
