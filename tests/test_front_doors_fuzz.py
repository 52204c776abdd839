"""Randomized differential tests of the front doors: the same raster gives the same result through the command
line on a GeoTIFF, ``geosr.downscale`` on a numpy (or dask) array, the xarray accessor (numpy- and dask-backed,
odd chunks) and the command line on a NetCDF (``--variable``).

Each case is drawn from a fixed seed: shape (5x7 to 70x90), scale (2, 3, 2.5, 1.5), tile size, dtype (uint8,
int16, float32, float64), nodata (none, a value with holes, NaN holes with or without a declared nodata),
storage order (north-up, south-up, east to west, both; ascending latitudes and descending x for the accessor),
1 or 3 bands (a 3-channel model, or a 1-band model on each), conserve, calibrate, ensemble 1/4/8, ``--cog``,
``--keep-dtype``, ``--resolution`` and ``--bands``. The reference is ``geosr.downscale`` on the north-up array;
every other door is compared with it: values to float32 precision of the data's magnitude, the nodata mask,
shape, transform / coordinates / bounds and CRS.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from conftest import CRS, DEPTH, WIDTH, write_geotiff

import geosr
from geosr.georef import output_shape
from geosr.testing import fbm_surface, random_model

rioxarray = pytest.importorskip("rioxarray")
dsa = pytest.importorskip("dask.array")

PIXEL = 30.0
ORIGIN = (500_000.0, 4_200_000.0)  # the north-west corner of every projected grid
#: geographic grids: 0.25 degree cells from 5 E, 50 N, on dimensions lat/lon
GEO_PIXEL, GEO_ORIGIN, GEO_CRS = 0.25, (5.0, 50.0), "EPSG:4326"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("fuzz_models")
    shape = {"depth": DEPTH, "width": WIDTH}
    return {
        "bicubic": str(random_model(folder / "b.safetensors", seed=11, name="fb", **shape)),
        "consistent": str(
            random_model(
                folder / "c.safetensors", seed=12, name="fc", interpolation="consistent", conserve=True, **shape
            )
        ),
        "calibrating": str(
            random_model(
                folder / "cal.safetensors",
                seed=13,
                name="fcal",
                interpolation="consistent",
                conserve=True,
                calibrate=True,
                **shape,
            )
        ),
        "three": str(random_model(folder / "t.safetensors", seed=14, in_channels=3, name="f3", **shape)),
    }


@dataclass
class Case:
    seed: int
    shape: tuple[int, int]
    scale: float
    tile: int
    dtype: str
    nodata: str  # "none", "value", "nan" (NaN holes, nodata=NaN declared), "nan-undeclared"
    flip_rows: bool  # stored south-up (positive y pixel size) / ascending y
    flip_cols: bool  # stored east to west / descending x
    bands: int
    model: str
    conserve: bool | None
    calibrate: bool | None
    ensemble: int
    cog: bool
    keep_dtype: bool
    resolution: bool
    pick: list[int] | None  # --bands (1-based), None for all
    chunks: tuple[int, int]
    netcdf: bool
    geographic: bool = False  # EPSG:4326, lat/lon dimensions
    aspect: float = 1.0  # pixel height / width (ensemble 8 and --resolution need 1)
    empty_band: bool = False  # band 2 of 3 holds no data at all
    default_tile: bool = False  # the accessor's own tile size (from the chunks)
    nodata_value: float = -9999.0  # for nodata == "value"
    transpose: bool = False  # the accessor's DataArray as (x, y[, band]) instead of ([band,] y, x)
    coords32: bool = False  # float32 coordinates
    band_chunks: bool = False  # dask chunks of one band
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"seed={self.seed} shape={self.shape} scale={self.scale} tile={self.tile} dtype={self.dtype} "
            f"nodata={self.nodata} flips={(self.flip_rows, self.flip_cols)} bands={self.bands} model={self.model} "
            f"conserve={self.conserve} calibrate={self.calibrate} ensemble={self.ensemble} cog={self.cog} "
            f"keep_dtype={self.keep_dtype} resolution={self.resolution} pick={self.pick} chunks={self.chunks} "
            f"netcdf={self.netcdf} geographic={self.geographic} aspect={self.aspect} empty_band={self.empty_band} "
            f"default_tile={self.default_tile} nodata_value={self.nodata_value} transpose={self.transpose} "
            f"coords32={self.coords32} band_chunks={self.band_chunks}"
        )


NODATA_VALUES = {
    "uint8": [0.0, 255.0],
    "int16": [-9999.0, -32768.0, 0.0, 32767.0],
    "float32": [-9999.0, 0.0, -3.4028234663852886e38],
    "float64": [-9999.0, 0.0, -1.7976931348623157e308],
    "uint16": [0.0, 65535.0],
    "int32": [-9999.0, -2147483648.0],
}
DTYPES = ("uint8", "int16", "float32", "float64")


def draw(seed: int, scales: tuple[float, ...] = (2, 3, 2.5, 1.5), dtypes: tuple[str, ...] = DTYPES) -> Case:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 71)), int(rng.integers(7, 91)))
    scale = float(rng.choice(scales))
    whole = scale == round(scale)
    dtype = str(rng.choice(dtypes))
    nodatas = ["none", "value"] + (["nan", "nan-undeclared"] if dtype.startswith("float") else [])
    nodata = str(rng.choice(nodatas))
    bands = int(rng.choice([1, 1, 3]))
    three = bands == 3 and rng.random() < 0.5
    model = "three" if three else str(rng.choice(["bicubic", "consistent", "calibrating"]))
    conserve = rng.choice([None, True, False]) if whole else rng.choice([None, False])
    calibrate = rng.choice([None, True, False]) if whole else rng.choice([None, False])
    pick = None
    if bands == 3 and rng.random() < 0.6:
        pick = [int(b) for b in rng.permutation([1, 2, 3])] if model == "three" else None
        if model != "three":
            n = int(rng.integers(1, 4))
            pick = [int(b) for b in rng.choice([1, 2, 3], size=n, replace=False)]
    ensemble = int(rng.choice([1, 1, 4, 8]))
    resolution = bool(rng.random() < 0.2)
    aspect = 1.0 if ensemble == 8 or resolution or rng.random() < 0.7 else float(rng.choice([0.5, 2.0, 1.5]))
    more = np.random.default_rng(seed + 1_000_000)  # drawn apart, so that the draws above stay as they were
    nodata_value = float(more.choice(NODATA_VALUES[dtype])) if more.random() < 0.5 else NODATA_VALUES[dtype][0]
    return Case(
        seed=seed,
        shape=shape,
        scale=scale,
        tile=int(rng.choice([16, 24, 40, 64, 100, 1024])),
        dtype=dtype,
        nodata=nodata,
        flip_rows=bool(rng.random() < 0.4),
        flip_cols=bool(rng.random() < 0.3),
        bands=bands,
        model=model,
        conserve=None if conserve is None else bool(conserve),
        calibrate=None if calibrate is None else bool(calibrate),
        ensemble=ensemble,
        cog=bool(rng.random() < 0.25),
        keep_dtype=bool(rng.random() < 0.3),
        resolution=resolution,
        pick=pick,
        chunks=(int(rng.integers(3, 30)), int(rng.integers(3, 30))),
        netcdf=bool(rng.random() < 0.35),
        geographic=bool(rng.random() < 0.3),
        aspect=aspect,
        empty_band=bool(bands == 3 and nodata != "none" and rng.random() < 0.3),
        default_tile=bool(rng.random() < 0.3),
        nodata_value=nodata_value,
        transpose=bool(more.random() < 0.3),
        coords32=bool(more.random() < 0.2),
        band_chunks=bool(more.random() < 0.3),
    )


def make_data(case: Case) -> tuple[np.ndarray, float | None]:
    """(band, y, x) north-up data in the case's dtype, and the nodata value (None for no declared nodata)."""
    rng = np.random.default_rng(case.seed + 10_000)
    h, w = case.shape
    layers = []
    for b in range(case.bands):
        if case.dtype == "uint8":
            base, relief = 5.0, 240.0
        elif case.dtype in ("int16", "int32"):
            base, relief = float(rng.uniform(-500, 500)), float(rng.uniform(50, 5000))
        elif case.dtype == "uint16":
            base, relief = float(rng.uniform(1, 1000)), float(rng.uniform(50, 60000))
        else:
            base, relief = float(rng.uniform(-1000, 3000)), float(rng.uniform(0.5, 3000))
        layer = fbm_surface((h, w), seed=case.seed * 7 + b, relief=relief, base=base).astype(np.float64)
        layers.append(np.rint(layer) if np.dtype(case.dtype).kind in "iu" else layer)
    data = np.stack(layers).astype(case.dtype)
    nodata: float | None = None
    if case.nodata == "none":
        return data, None
    holes = np.zeros((h, w), bool)
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    holes[y0 : y0 + int(rng.integers(1, max(2, h // 3))), x0 : x0 + int(rng.integers(1, max(2, w // 3)))] = True
    holes[rng.integers(0, h, 3), rng.integers(0, w, 3)] = True
    holes[0, 0] = False  # never every pixel
    band_holes = np.broadcast_to(holes, data.shape).copy()
    if case.bands == 3:
        band_holes[1] &= rng.random((h, w)) < 0.7  # the bands' holes differ a little
        if case.empty_band:
            band_holes[1] = True
    if case.nodata == "value":
        nodata = case.nodata_value
        data[band_holes] = nodata
    else:
        data[band_holes] = np.nan
        nodata = float("nan") if case.nodata == "nan" else None
    return data, nodata


def stored(case: Case, data: np.ndarray) -> tuple[np.ndarray, Affine]:
    """The array as stored (mirrored by the case's flips) and its transform."""
    h, w = data.shape[-2:]
    x0, y0 = GEO_ORIGIN if case.geographic else ORIGIN
    px = GEO_PIXEL if case.geographic else PIXEL
    py = px * case.aspect
    a, e, c, f = px, -py, x0, y0
    if case.flip_cols:
        a, c = -px, x0 + w * px
        data = data[..., ::-1]
    if case.flip_rows:
        e, f = py, y0 - h * py
        data = data[..., ::-1, :]
    return np.ascontiguousarray(data), Affine(a, 0.0, c, 0.0, e, f)


def unmirror(case: Case, values: np.ndarray) -> np.ndarray:
    if case.flip_cols:
        values = values[..., ::-1]
    if case.flip_rows:
        values = values[..., ::-1, :]
    return values


def tolerance(expected: np.ndarray) -> float:
    finite = np.asarray(expected, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0
    return 4e-6 * max(float(np.abs(finite).max()), float(np.ptp(finite)), 1.0)


def assert_same(actual: Any, expected: np.ndarray, what: str, atol: float | None = None) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: nodata masks differ")
    atol = tolerance(expected) if atol is None else atol
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, equal_nan=True, err_msg=what)


def read_tif(path: Path) -> tuple[np.ndarray, Any]:
    """Values as stored (float64, NaN for nodata) and the dataset's profile-like facts."""
    with rasterio.open(path) as ds:
        raw = ds.read()
        values = raw.astype(np.float64)
        if ds.nodata is not None and not np.isnan(ds.nodata):
            values[raw == np.asarray(ds.nodata).astype(raw.dtype)] = np.nan
        facts = {
            "transform": ds.transform,
            "crs": ds.crs,
            "bounds": ds.bounds,
            "dtype": ds.dtypes[0],
            "nodata": ds.nodata,
            "count": ds.count,
        }
        return values, facts


def keep_dtype_expected(expected: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """The documented --keep-dtype conversion of float32 values (NaN kept for comparison)."""
    if np.dtype(dtype).kind == "f":
        return expected
    info = np.iinfo(dtype)
    out = np.clip(np.rint(expected), info.min, info.max)
    if nodata is not None:
        below = expected < nodata
        step = np.where(below if info.min < nodata < info.max else nodata == info.max, -1, 1)
        out = np.where(np.isfinite(expected) & (out == nodata), nodata + step, out)
    return np.where(np.isnan(expected), np.nan, out)


def options_of(case: Case) -> dict[str, Any]:
    return {"conserve": case.conserve, "calibrate": case.calibrate, "ensemble": case.ensemble}


def cli_flags(case: Case) -> list[Any]:
    pixel = GEO_PIXEL if case.geographic else PIXEL
    flags: list[Any] = ["--resolution", pixel / case.scale] if case.resolution else ["--scale", case.scale]
    flags += ["--tile-size", max(16, case.tile), "--ensemble", case.ensemble]
    for name in ("conserve", "calibrate"):
        value = getattr(case, name)
        if value is not None:
            flags.append(f"--{name}" if value else f"--no-{name}")
    return flags


def fine_centres(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    x = transform.c + transform.a * (np.arange(w) + 0.5)
    y = transform.f + transform.e * (np.arange(h) + 0.5)
    return y, x


def check_case(case: Case, models: dict[str, str], cli: Any, tmp_path: Path) -> None:
    model = models[case.model]
    data, nodata = make_data(case)
    h, w = case.shape
    out_shape = output_shape(h, w, case.scale)
    opts = options_of(case)
    crs = GEO_CRS if case.geographic else CRS
    ydim, xdim = ("lat", "lon") if case.geographic else ("y", "x")

    # --- reference: geosr.downscale on the north-up array (the numpy front door) -----------------------------
    reference = geosr.downscale(data, case.scale, model, nodata=nodata, device="cpu", tile_size=case.tile, **opts)
    assert reference.dtype == np.float32 and reference.shape == (case.bands, *out_shape)
    assert not np.isnan(reference).all()
    if case.empty_band:
        assert np.isnan(reference[1]).all()
    tiles = (case.tile, max(16, case.tile // 2 + 3))  # a (rows, cols) pair of tile sizes
    whole = geosr.downscale(data, case.scale, model, nodata=nodata, device="cpu", tile_size=tiles, **opts)
    assert_same(whole, reference, f"{case}: numpy, tiles {tiles} against {case.tile}")
    lazy = dsa.from_array(data, chunks=(case.bands, *case.chunks))
    assert_same(
        geosr.downscale(lazy, case.scale, model, nodata=nodata, device="cpu", tile_size=case.tile, **opts).compute(),
        reference,
        f"{case}: dask numpy API",
    )

    saved, transform = stored(case, data)
    expected_transform = transform @ Affine.scale(w / out_shape[1], h / out_shape[0])
    the_crs = rasterio.crs.CRS.from_user_input(crs)

    # --- the command line on the GeoTIFF ----------------------------------------------------------------------
    src = write_geotiff(tmp_path / "in.tif", saved, transform=transform, nodata=nodata, crs=crs)
    dst = tmp_path / "out.tif"
    flags = cli_flags(case)
    if case.cog:
        flags.append("--cog")
    if case.keep_dtype:
        flags.append("--keep-dtype")
    if case.pick is not None:
        flags += ["--bands", ",".join(map(str, case.pick))]
    result = cli("downscale", src, "-o", dst, "--model", model, "--device", "cpu", "--quiet", *flags)
    if case.empty_band and case.pick == [2]:  # documented: a raster with no data at all is refused
        assert result.code != 0 and "every pixel" in result.err and not dst.exists(), f"{case}: {result}"
        flags = flags[:-2]
        result = cli("downscale", src, "-o", dst, "--model", model, "--device", "cpu", "--quiet", *flags)
        case = replace(case, pick=None)
    assert result.code == 0, f"{case}: {result.err}"
    values, facts = read_tif(dst)
    chosen = reference
    if case.pick is not None:
        picked = data[[b - 1 for b in case.pick]]
        chosen = geosr.downscale(picked, case.scale, model, nodata=nodata, device="cpu", tile_size=case.tile, **opts)
    assert facts["count"] == chosen.shape[0]
    assert facts["transform"].almost_equals(expected_transform, precision=1e-9), f"{case}: {facts['transform']}"
    assert facts["crs"] == the_crs
    with rasterio.open(src) as ds:
        np.testing.assert_allclose(tuple(facts["bounds"]), tuple(ds.bounds), rtol=0, atol=1e-6)
    expected_dtype = case.dtype if case.keep_dtype else "float32"
    assert facts["dtype"] == expected_dtype, case
    cli_values = unmirror(case, values)
    if case.keep_dtype and np.dtype(case.dtype).kind in "iu":
        wanted = keep_dtype_expected(chosen.astype(np.float64), case.dtype, nodata)
        # rounding: a value within float precision of a half may round either way
        assert_same(cli_values, wanted, f"{case}: command line --keep-dtype", atol=1.0 + tolerance(chosen))
        near_half = np.abs(np.abs(chosen - np.trunc(chosen)) - 0.5) < 1e-3 + tolerance(chosen)
        exact = np.isfinite(wanted) & ~near_half
        np.testing.assert_array_equal(cli_values[exact], wanted[exact], err_msg=f"{case}: --keep-dtype rounding")
    else:
        assert_same(cli_values, chosen, f"{case}: command line")

    # --- the accessor: a DataArray on the stored grid, numpy- and dask-backed ---------------------------------
    y, x = fine_centres(transform, (h, w))
    if case.coords32:
        y, x = y.astype(np.float32), x.astype(np.float32)
    dims = ("band", ydim, xdim)
    da = xr.DataArray(saved, dims=dims, coords={"band": np.arange(1, case.bands + 1), ydim: y, xdim: x})
    if case.bands == 1 and case.seed % 2:
        da = da.isel(band=0, drop=True)
    da = da.rio.write_crs(crs)
    kwargs: dict[str, Any] = {"model": model, "device": "cpu", **opts}
    if not case.default_tile:
        kwargs["tile_size"] = case.tile
    if nodata is not None and not np.isnan(nodata):
        if case.seed % 3:
            kwargs["nodata"] = nodata
        else:
            da.attrs["_FillValue"] = nodata
    fine_y, fine_x = fine_centres(expected_transform, out_shape)
    coord_tol = 1e-6 if not case.coords32 else 1e-6 * max(np.abs(fine_y).max(), np.abs(fine_x).max()) * 8
    arranged = da.transpose(*da.dims[::-1]) if case.transpose else da
    chunks = dict(zip((ydim, xdim), case.chunks, strict=True))
    if case.band_chunks and "band" in da.dims:
        chunks["band"] = 1
    chunked = arranged.chunk(chunks)
    opened = rioxarray.open_rasterio(src, masked=bool(case.seed % 2))
    if case.geographic:
        opened = opened.rename(y=ydim, x=xdim)
    doors = [("numpy", arranged, kwargs), ("dask", chunked, kwargs)]
    doors.append(("rioxarray.open_rasterio", opened, {k: v for k, v in kwargs.items() if k != "nodata"}))
    for kind, source, args in doors:
        out = source.geosr.downscale(case.scale, **args)
        what = f"{case}: accessor ({kind})"
        assert out.dtype == np.float32, what
        assert out.dims == source.dims, what
        np.testing.assert_allclose(out[ydim].values, fine_y, rtol=0, atol=coord_tol, err_msg=what)
        np.testing.assert_allclose(out[xdim].values, fine_x, rtol=0, atol=coord_tol, err_msg=what)
        assert out.rio.crs == the_crs, what
        rio = out.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim).rio
        assert rio.transform().almost_equals(expected_transform, precision=1e-4 if case.coords32 else 1e-9), what
        got = out.transpose(*[d for d in ("band", ydim, xdim) if d in out.dims]).values
        assert_same(unmirror(case, got if got.ndim == 3 else got[None]), reference, what)
        if kind == "dask":
            assert out.chunks is not None, what
    # the Dataset accessor, on the same variable
    fine_ds = arranged.rename("v").to_dataset().geosr.downscale(case.scale, **kwargs)
    got = fine_ds.v.transpose(*[d for d in ("band", ydim, xdim) if d in fine_ds.v.dims]).values
    assert_same(unmirror(case, got if got.ndim == 3 else got[None]), reference, f"{case}: Dataset accessor")

    # --- the command line on a NetCDF (--variable) ------------------------------------------------------------
    if case.netcdf:
        grid = da.rename(band="time") if ("band" in da.dims and case.model != "three") else da
        grid = grid.drop_vars("spatial_ref").rename("v")
        ds = grid.to_dataset()
        if nodata is not None and not np.isnan(nodata):
            ds.v.attrs.pop("_FillValue", None)
            ds.v.encoding["_FillValue"] = np.asarray(nodata).astype(case.dtype)
        ds.to_netcdf(tmp_path / "in.nc")
        nc_flags = cli_flags(case)
        result = cli(
            "downscale", tmp_path / "in.nc", "--variable", "v", "-o", tmp_path / "out.nc",
            "--model", model, "--device", "cpu", "--quiet", *nc_flags,
        )  # fmt: skip
        assert result.code == 0, f"{case}: NetCDF: {result.err}"
        with xr.open_dataset(tmp_path / "out.nc") as out:
            what = f"{case}: NetCDF --variable"
            v = out.v.load()
            np.testing.assert_allclose(out[ydim].values, fine_y, rtol=0, atol=coord_tol, err_msg=what)
            np.testing.assert_allclose(out[xdim].values, fine_x, rtol=0, atol=coord_tol, err_msg=what)
            got = v.values if v.ndim == 3 else v.values[None]
            assert_same(unmirror(case, got), reference, what)


FAST = list(range(30))


@pytest.mark.parametrize("seed", FAST)
def test_front_doors_agree_on_random_rasters(seed, models, cli, tmp_path):
    check_case(draw(seed), models, cli, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(30, 330))
def test_front_doors_agree_on_more_random_rasters(seed, models, cli, tmp_path):
    check_case(draw(seed), models, cli, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1100))
def test_front_doors_agree_at_other_scales(seed, models, cli, tmp_path):
    check_case(draw(seed, scales=(4, 2.25, 1.2, 3.5), dtypes=(*DTYPES, "uint16", "int32")), models, cli, tmp_path)


# --- regression: a band stored with a negative scale --------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "fill"), [("int16", -32768), ("uint8", 255)])
def test_a_negative_scale_gives_the_result_of_the_values_through_every_door(models, cli, tmp_path, dtype, fill):
    # The network is equivariant only to positive scalings: a GeoTIFF band (or undecoded xarray data) whose stored
    # numbers fall as its values rise (GDAL scale, CF scale_factor < 0) must give the result of its values, as the
    # decoded grid does through the accessor and the NetCDF door, not that of the upside-down stored numbers.
    model = models["calibrating"]
    scale_factor, offset = (-0.01, 300.0) if dtype == "int16" else (-0.2, 290.0)
    values = fbm_surface((30, 37), seed=3, relief=40.0, base=250.0).astype(np.float64)
    raw = np.rint((values - offset) / scale_factor).astype(dtype)
    raw[3:6, 4:9] = fill
    physical = np.where(raw == fill, np.nan, raw * scale_factor + offset)
    expected = geosr.downscale(physical, 2, model, device="cpu")

    src = write_geotiff(tmp_path / "packed.tif", raw, nodata=fill, scales=[scale_factor], offsets=[offset])
    result = cli("downscale", src, "-o", tmp_path / "out.tif", "--scale", 2, "--model", model, "--device", "cpu")
    assert result.code == 0, result.err
    stored_out, facts = read_tif(tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert (ds.scales, ds.offsets) == ((scale_factor,), (offset,))  # carried over: the output is stored alike
    assert_same(stored_out[0] * scale_factor + offset, expected, "command line, stored numbers scaled")

    decoded = rioxarray.open_rasterio(src, mask_and_scale=True).squeeze(drop=True)
    assert_same(decoded.geosr.downscale(2, model=model, device="cpu").values, expected, "accessor, decoded")
    undecoded = rioxarray.open_rasterio(src).squeeze(drop=True)
    assert undecoded.attrs["scale_factor"] == scale_factor
    for data in (undecoded, undecoded.chunk({"y": 11, "x": 13})):
        out = data.geosr.downscale(2, model=model, device="cpu")
        assert_same(out.values * scale_factor + offset, expected, "accessor, undecoded")
