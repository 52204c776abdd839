"""The notebooks run top to bottom in a fresh kernel, and the committed copies show the outputs that run gives.

A notebook checks its own claims: every statement its text makes about a result (same georeferencing as the
input, the accessor's numbers equal the CLI's, conservation, geosr's error below bicubic's and
back-projection's) is an ``assert`` in the cell below it, so a wrong result fails the run. Here, besides, the
lines of the committed outputs that carry the key numbers (:data:`KEY_LINES`) must be those of a fresh run (a
stale stored number fails), and the figures quoted in the text must be the ones the code prints
(:data:`QUOTED`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
#: Figures each notebook draws.
FIGURES = {"01_dem_quickstart.ipynb": 4, "02_climate_grid.ipynb": 2}
#: Printed lines that carry a notebook's key numbers (regular expressions searched in each stdout line). Not
#: the timings, nor differences at float-rounding level, which may change from one CPU to another.
KEY_LINES = {
    "01_dem_quickstart.ipynb": [
        r"cells of [\d.]+ arc-seconds",  # size, cell size, type, CRS, elevation range
        r" m east-west, ",  # cell size in metres
        r"^(input|output): ",  # size, CRS, pixel size, bounds, band of the CLI's input and output
        r"^CRS .* transform ",  # the accessor's georeferencing
        r": RMSE ",  # the held-out RMSE of each method
        r"geosr, plain: max \|cell mean",  # what conservation changes
        r"slope RMSE",  # the held-out slope RMSE of each method
    ],
    "02_climate_grid.ipynb": [
        r"^latitude \d+ -> \d+ cells",  # grid sizes
        r" edges: ",  # outer edges, as given and downscaled
        r"^RMSE \(K\)",  # the held-out RMSE table: header,
        r"^ *\d{4} +\d",  # and a line a year
        r"\(conserve=False\)$",  # what conservation changes
    ],
}
#: Figures quoted in a notebook's text, and where its code prints them: (text pattern, output pattern), with
#: the same named groups, whose numbers must be equal.
QUOTED = {
    "01_dem_quickstart.ipynb": [
        (
            r"(?P<w>\d+) x (?P<h>\d+) cells of (?P<arcsec>[\d.]+) arc-seconds",
            r"(?P<w>\d+) x (?P<h>\d+) cells of (?P<arcsec>[\d.]+) arc-seconds",
        ),
        (
            r"about (?P<dx>[\d.]+) m east-west and (?P<dy>[\d.]+) m north-south at its central latitude,\s+"
            r"(?P<lat>[\d.]+) N",
            r"at (?P<lat>[\d.]+) N: (?P<dx>[\d.]+) m east-west, (?P<dy>[\d.]+) m north-south",
        ),
    ],
    "02_climate_grid.ipynb": [
        (
            r"\((?P<lat>\d+) latitudes x (?P<lon>\d+) longitudes",
            r"latitude (?P<lat>\d+) -> \d+ cells, longitude (?P<lon>\d+) ->",
        ),
    ],
}
#: Temporary folders the notebooks print, named differently in every run.
TEMPORARY = re.compile(r"geosr-(quickstart|climate)-\w+")

_RUNS: dict[Path, object] = {}


def fresh_run(path: Path):
    """The notebook at ``path`` executed top to bottom in a fresh kernel (once per test session)."""
    if path not in _RUNS:
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        try:
            client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
            _RUNS[path] = notebook
        except Exception as exc:  # remembered, so that every test of this notebook fails without rerunning it
            _RUNS[path] = exc
    result = _RUNS[path]
    if isinstance(result, Exception):
        raise result
    return result


def figures(notebook) -> int:
    return sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if {"image/png", "image/jpeg"} & set(output.get("data", {}))
    )


def printed(notebook) -> list[tuple[int, str]]:
    """(cell index, line) of everything the code cells printed, temporary folder names masked."""
    return [
        (index, TEMPORARY.sub("geosr-TEMPORARY", line))
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
        for line in output.text.splitlines()
    ]


def key_lines(notebook, name: str) -> list[tuple[int, str]]:
    patterns = [re.compile(p) for p in KEY_LINES[name]]
    return [(index, line) for index, line in printed(notebook) if any(p.search(line) for p in patterns)]


def test_every_notebook_is_listed():
    names = [p.name for p in NOTEBOOKS]
    assert names == sorted(FIGURES) == sorted(KEY_LINES) == sorted(QUOTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path):
    """Every cell runs, so every claim the notebook asserts holds."""
    assert figures(fresh_run(path)) == FIGURES[path.name]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_key_numbers_are_those_of_a_fresh_run(path):
    committed = nbformat.read(path, as_version=4)
    stored = key_lines(committed, path.name)
    for pattern in KEY_LINES[path.name]:  # a pattern that no longer matches would check nothing
        assert any(re.search(pattern, line) for _, line in stored), f"no stored line matches {pattern!r}"
    fresh = key_lines(fresh_run(path), path.name)
    assert stored == fresh, f"stored outputs of {path.name} are stale: re-execute it in place (make notebooks)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_in_the_text_are_those_printed(path):
    notebook = fresh_run(path)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    output = "\n".join(line for _, line in printed(notebook))
    for quoted, shown in QUOTED[path.name]:
        in_text, in_output = re.search(quoted, text), re.search(shown, output)
        assert in_text, f"the text of {path.name} no longer says {quoted!r}"
        assert in_output, f"{path.name} no longer prints {shown!r}"
        said = {k: float(v) for k, v in in_text.groupdict().items()}
        measured = {k: float(v) for k, v in in_output.groupdict().items()}
        assert said == measured, f"{path.name} says {in_text.group(0)!r} but prints {in_output.group(0)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_shows_its_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "run it top to bottom"
    assert all(cell.outputs for cell in code), "every code cell shows what it did"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert figures(notebook) == FIGURES[path.name]
