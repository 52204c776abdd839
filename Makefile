# geosr developer entry points. Only needs Python 3.11 and the package registries.
#   make demo   set up .venv and super-resolve the bundled real DEM (examples/jacksboro_fault_dem.tif) x4
#   make test   set up .venv and run the test suite
#   make bench  throughput and memory benchmark (prints figures)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.geosr-installed

.PHONY: setup demo test test-all lint bench clean

$(STAMP): pyproject.toml requirements/dev-constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/dev-constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/geosr downscale examples/jacksboro_fault_dem.tif --scale 4 -o examples/jacksboro_fault_dem_x4.tif --overwrite
	$(BIN)/python examples/compare.py examples/jacksboro_fault_dem.tif examples/jacksboro_fault_dem_x4.tif

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: setup
	$(BIN)/ruff check geosr tests benchmarks examples
	$(BIN)/ruff format --check geosr tests benchmarks examples

bench: setup
	$(BIN)/python benchmarks/bench_downscale.py

clean:
	rm -rf $(VENV) build *.egg-info examples/*_x*.tif
