"""examples/compare.py (the picture of `make demo`) on good input, at whole and non-whole scales, and on bad input:
each mistake is one line on stderr naming it, with a non-zero exit code and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from conftest import CRS, REPO, TRANSFORM, write_geotiff

COMPARE = REPO / "examples" / "compare.py"
#: Width of the picture with its four panels (input, bicubic, back-projection, geosr): 5 inches each at 80 dpi.
FOUR_PANELS = 4 * 5 * 80


def compare(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"MPLBACKEND": "Agg"}
    command = [sys.executable, str(COMPARE), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def ramp(shape: tuple[int, int], step: float) -> np.ndarray:
    """3 x + 2 y + 100 at the centres of a grid of ``shape`` whose cells are ``step`` input cells wide: a plane,
    whose average over any cell is its value at the cell's centre, so a raster that samples it on a finer grid
    averages back exactly onto one that samples it on the input grid."""
    y, x = ((np.arange(n) + 0.5) * step for n in shape)
    return (3 * x[None, :] + 2 * y[:, None] + 100).astype(np.float32)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def picture_width(path: Path) -> int:
    import matplotlib.image

    return matplotlib.image.imread(path).shape[1]


def test_whole_scale(tmp_path):
    src = write_geotiff(tmp_path / "in.tif", ramp((10, 12), 1.0))
    out = write_geotiff(tmp_path / "in_x4.tif", ramp((40, 48), 0.25), transform=TRANSFORM @ Affine.scale(1 / 4))
    result = compare(src, out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "same CRS and bounds: True; scale x4 (4 east-west, 4 north-south)" in result.stdout
    assert "onto the input grid vs input: RMSE 0.000, max |error| 0.000" in result.stdout
    assert picture_width(tmp_path / "in_x4.png") == FOUR_PANELS  # the back-projection panel is there


def test_non_whole_scale_uses_the_real_factor(tmp_path):
    """x2.5 was taken as x2 (25 // 10): the panels were titled x2 and the consistency check was skipped."""
    coarse, fine = ramp((10, 10), 1.0), ramp((25, 25), 0.4)
    src = write_geotiff(tmp_path / "in.tif", coarse)
    out = write_geotiff(tmp_path / "out.tif", fine, transform=TRANSFORM @ Affine.scale(1 / 2.5))
    result = compare(src, out, tmp_path / "picture.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "scale x2.5 (2.5 east-west, 2.5 north-south)" in result.stdout
    # the fine pixels averaged over each input cell, by area: on a common grid of 50 x 50, 2 x 2 per fine pixel
    common = np.repeat(np.repeat(fine.astype(np.float64), 2, 0), 2, 1)
    error = common.reshape(10, 5, 10, 5).mean(axis=(1, 3)) - coarse
    expected = f"RMSE {np.sqrt(np.mean(error**2)):.3f}, max |error| {np.abs(error).max():.3f}"
    assert f"(non-whole scale: fine pixels weighted by their area inside each cell): {expected}" in result.stdout
    assert picture_width(tmp_path / "picture.png") == FOUR_PANELS


def test_geosr_output_at_a_non_whole_scale(tmp_path):
    """geosr's own x2.5 output of 15 x 13 cells: 38 x 32 pixels (round(n * 2.5)), its scale read from its tag."""
    import geosr

    src = write_geotiff(tmp_path / "in.tif", ramp((13, 15), 1.0) + np.random.default_rng(0).normal(0, 1, (13, 15)))
    geosr.downscale_raster(src, tmp_path / "out.tif", scale=2.5, model="backprojection", device="cpu")
    result = compare(src, tmp_path / "out.tif", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "same CRS and bounds: True; scale x2.5 (2.533 east-west, 2.462 north-south)" in result.stdout
    assert picture_width(tmp_path / "out.png") == FOUR_PANELS


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    src = write_geotiff(tmp_path / "in.tif", ramp((10, 12), 1.0))
    out = write_geotiff(tmp_path / "in_x4.tif", ramp((40, 48), 0.25), transform=TRANSFORM @ Affine.scale(1 / 4))
    return src, out


def test_swapped_arguments(tmp_path, pair):
    src, out = pair
    line = refused(compare(out, src, cwd=tmp_path), "is not finer than", "give the input first")
    assert "48 x 40 px" in line and "12 x 10 px" in line
    assert not (tmp_path / "in.png").exists()


def test_output_of_another_area(tmp_path, pair):
    src, _ = pair
    shifted = TRANSFORM @ Affine.translation(1, 0) @ Affine.scale(1 / 4)  # one input cell east
    other = write_geotiff(tmp_path / "other.tif", ramp((40, 48), 0.25), transform=shifted)
    refused(compare(src, other, cwd=tmp_path), "bounds", "4 output pixels", "geosr keeps the bounds")
    assert not (tmp_path / "other.png").exists()


def test_output_in_another_crs(tmp_path, pair):
    src, _ = pair
    assert CRS != "EPSG:32634"
    other = write_geotiff(
        tmp_path / "other.tif", ramp((40, 48), 0.25), transform=TRANSFORM @ Affine.scale(1 / 4), crs="EPSG:32634"
    )
    refused(compare(src, other, cwd=tmp_path), "CRS", "EPSG:32634", "geosr keeps the CRS")


@pytest.mark.parametrize("missing", ["input", "output"])
def test_missing_file(tmp_path, pair, missing):
    src, out = pair
    args = (tmp_path / "nope.tif", out) if missing == "input" else (src, tmp_path / "nope.tif")
    refused(compare(*args, cwd=tmp_path), "cannot open", "nope.tif", "no such file")


def test_not_a_raster(tmp_path, pair):
    src, _ = pair
    (tmp_path / "notes.tif").write_text("not a raster")
    refused(compare(src, tmp_path / "notes.tif", cwd=tmp_path), "cannot open OUTPUT", "notes.tif")


def test_picture_in_a_missing_folder(tmp_path, pair):
    refused(compare(*pair, tmp_path / "no" / "picture.png", cwd=tmp_path), "cannot write", "does not exist")


def test_all_nodata_input(tmp_path, pair):
    _, out = pair
    empty = write_geotiff(tmp_path / "empty.tif", np.full((10, 12), -9999, np.float32), nodata=-9999)
    refused(compare(empty, out, cwd=tmp_path), "holds no data", "empty.tif")


@pytest.mark.parametrize("count", [0, 1, 4])
def test_wrong_number_of_arguments(tmp_path, pair, count):
    args = [*pair, tmp_path / "a.png", tmp_path / "b.png"][:count]
    result = compare(*args, cwd=tmp_path)
    assert result.returncode == 2
    refused(result, f"got {count}", "usage: python examples/compare.py INPUT.tif OUTPUT.tif")
