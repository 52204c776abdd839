"""Shared fixtures: tiny random models, small synthetic rasters, a GeoTIFF writer and CLI runners.

Everything is small on purpose (models of depth 4 and width 8, rasters of a few dozen pixels per
side) so that the whole default run stays fast on a couple of CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from geosr.testing import fbm_surface, random_model

#: Depth of the test models, hence their receptive radius (and the tiler's halo) in fine pixels.
DEPTH = 4
WIDTH = 8
CRS = "EPSG:32633"
#: North-up 30 m grid somewhere in UTM zone 33N.
TRANSFORM = Affine(30.0, 0.0, 500_000.0, 0.0, -30.0, 4_200_000.0)
REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # The test networks are tiny: one intra-op thread is many times faster than several competing
    # for a small, shared CPU (and keeps the run-to-run comparisons on one code path).
    import torch

    torch.set_num_threads(1)


#: `geosr train` options for a run of seconds: one step per epoch of two 16-pixel patches, a 3-layer VDSR of width 4
TINY_TRAIN = ["--steps-per-epoch", "1", "--batch-size", "2", "--patch-size", "16", "--depth", "3", "--width", "4"]
TINY_TRAIN += ["--device", "cpu", "-q"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def model1(model_dir: Path) -> Path:
    """A random 1-channel VDSR of depth 4, saved as a geosr model file."""
    return random_model(model_dir / "tiny1.safetensors", in_channels=1, depth=DEPTH, width=WIDTH, name="tiny1")


@pytest.fixture(scope="session")
def model_consistent(model_dir: Path) -> Path:
    """A random 1-channel VDSR of depth 4 whose input is the ``consistent`` (back-projection) kernel."""
    path = model_dir / "tiny_consistent.safetensors"
    return random_model(path, depth=DEPTH, width=WIDTH, seed=2, name="tinyc", interpolation="consistent")


def _like_shipped(model_dir: Path, file: str, name: str, seed: int, **flags: bool | float) -> Path:
    """A random VDSR configured like the shipped models (consistent kernel, conserving by default)."""
    shape = {"depth": DEPTH, "width": WIDTH, "interpolation": "consistent", "conserve": True}
    return random_model(model_dir / file, seed=seed, name=name, **shape, **flags)


@pytest.fixture(scope="session")
def model_like_shipped(model_dir: Path) -> Path:
    """A random VDSR configured like the shipped models: consistent kernel, conserving by default."""
    return _like_shipped(model_dir, "tiny_like_shipped.safetensors", "tinys", seed=4)


@pytest.fixture(scope="session")
def model_trend(model_dir: Path) -> Path:
    """``model_like_shipped``'s network (the same seed) with a fill trend of 0.25 on its card."""
    return _like_shipped(model_dir, "tiny_trend.safetensors", "tinytrend", seed=4, fill_trend=0.25)


@pytest.fixture(scope="session")
def model_cells(model_dir: Path) -> Path:
    """A random VDSR like the shipped models that also takes the input cells (its first layer's cell
    weights random, so the cells change the output)."""
    return _like_shipped(model_dir, "tiny_cells.safetensors", "tinycells", seed=5, cell_input=True)


@pytest.fixture(scope="session")
def model_calibrating(model_dir: Path) -> Path:
    """A random VDSR like the shipped ``climate`` (consistent kernel, conserving) that self-calibrates."""
    return _like_shipped(model_dir, "tinycal.safetensors", "tinycal", seed=4, calibrate=True)


@pytest.fixture(scope="session")
def model3(model_dir: Path) -> Path:
    """A random 3-channel VDSR of depth 4 (mixes the bands)."""
    return random_model(model_dir / "tiny3.safetensors", in_channels=3, depth=DEPTH, width=WIDTH, seed=1, name="tiny3")


@pytest.fixture
def dem() -> np.ndarray:
    """A 13 x 17 float32 terrain (300..800 m): neither side divides evenly by the tile sizes used."""
    return fbm_surface((13, 17), seed=1)


@pytest.fixture
def bands3() -> np.ndarray:
    """Three bands of very different magnitude, (3, 12, 15) float32."""
    return np.stack(
        [
            fbm_surface((12, 15), seed=2),
            fbm_surface((12, 15), seed=3, relief=5.0, base=-2.0),
            fbm_surface((12, 15), seed=4, relief=2e4, base=1e5),
        ]
    )


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: Any = CRS,
    transform: Affine = TRANSFORM,
    nodata: float | None = None,
    dtype: str | None = None,
    descriptions: Sequence[str | None] | None = None,
    units: Sequence[str | None] | None = None,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    tags: dict[str, str] | None = None,
    band_tags: Sequence[dict[str, str]] | None = None,
    colorinterp: Sequence[Any] | None = None,
) -> Path:
    """Write a (y, x) or (band, y, x) array as a GeoTIFF with the given georeferencing and metadata."""
    import rasterio

    array = np.asarray(data)
    if array.ndim == 2:
        array = array[None]
    dtype = dtype or array.dtype.name
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=array.shape[1],
        width=array.shape[2],
        count=array.shape[0],
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(array.astype(dtype))
        for i in range(1, ds.count + 1):
            if descriptions is not None and descriptions[i - 1] is not None:
                ds.set_band_description(i, descriptions[i - 1])
            if units is not None and units[i - 1] is not None:
                ds.set_band_unit(i, units[i - 1])
            if band_tags is not None:
                ds.update_tags(i, **band_tags[i - 1])
        if scales is not None:
            ds.scales = tuple(scales)
        if offsets is not None:
            ds.offsets = tuple(offsets)
        if tags:
            ds.update_tags(**tags)
        if colorinterp is not None:
            ds.colorinterp = tuple(colorinterp)
    return Path(path)


@pytest.fixture
def make_geotiff(tmp_path: Path) -> Callable[..., Path]:
    """``make_geotiff(name, data, **metadata)`` writes ``tmp_path / name`` and returns its path."""

    def make(name: str, data: np.ndarray, **kwargs: Any) -> Path:
        return write_geotiff(tmp_path / name, data, **kwargs)

    return make


@pytest.fixture
def dem_tif(make_geotiff: Callable[..., Path]) -> Path:
    """A 20 x 24 float32 DEM GeoTIFF (even sides, so scale 2.5 gives whole numbers of pixels)."""
    return make_geotiff("dem.tif", fbm_surface((20, 24), seed=5))


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``geosr ARGS`` in this process through :func:`geosr.cli.main`; returns code, stdout, stderr."""
    from geosr.cli import main

    def run(*args: Any) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_cli_subprocess(*args: Any, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m geosr ARGS`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONWARNINGS="default", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "geosr", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=120,
    )


@pytest.fixture
def cli_subprocess() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli_subprocess


def assert_one_line_error(err: str, code: int | str, *words: str) -> str:
    """The error report promised by the CLI: one line on stderr, starting with 'Error:', no traceback.

    ``code`` is the exit code, which must not be 0; given as text instead, it is the first of the
    ``words`` the line must contain.
    """
    if isinstance(code, str):
        words = (code, *words)
    else:
        assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("Error:"), lines[0]
    return lines[0]


def data_tolerance(data: np.ndarray) -> float:
    """1e-4 of the data range: the tolerance for 'equal to float precision' comparisons."""
    finite = np.asarray(data, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return 1e-4 * float(np.ptp(finite))


def affine_mul(a: Affine, b: Any) -> Any:
    """``a @ b`` (affine >= 3, where ``*`` is deprecated for this) or ``a * b`` (older affine)."""
    return a @ b if hasattr(Affine, "__matmul__") else a * b


def footprint_cells(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The coarse cells touching each fine pixel's centre, computed independently of geosr in exact
    fractions: (the cell holding it, the cell before it where the centre lies on their shared edge, else the
    same cell again)."""
    from fractions import Fraction

    later, earlier = [], []
    for j in range(n_out):
        centre = (j + Fraction(1, 2)) * Fraction(n_in, n_out)
        cell = min(int(centre), n_in - 1)
        later.append(cell)
        earlier.append(cell - 1 if centre.denominator == 1 and cell > 0 else cell)
    return np.array(later), np.array(earlier)
