"""File to file (geosr.pipeline.downscale_raster and the CLI): promises 1, 4, 8 and 9 on GeoTIFFs."""

from __future__ import annotations

import math
import os
import stat
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import CRS, TRANSFORM, affine_mul, assert_one_line_error, data_tolerance, write_geotiff
from rasterio.enums import ColorInterp

import geosr
from geosr.errors import InputError, OutputExistsError
from geosr.io import TileWriter
from geosr.pipeline import downscale_raster
from geosr.predict import downscale
from geosr.testing import fbm_surface


def run(src, dst=None, *, model, **kwargs):
    kwargs.setdefault("device", "cpu")
    return downscale_raster(src, dst, model=str(model), **kwargs)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def assert_bounds_equal(a, b):
    for x, y in zip(a, b, strict=True):
        assert math.isclose(x, y, rel_tol=1e-9), (a, b)


def assert_affine_close(a, b):
    for x, y in zip(a, b, strict=True):
        assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9), (a, b)


# --- georeferencing ----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4, 2.5])
def test_georeferencing_round_trip(dem_tif, tmp_path, model1, scale):
    out = tmp_path / "out.tif"
    result = run(dem_tif, out, scale=scale, model=model1, tile_size=16)
    assert result.path == out
    with rasterio.open(dem_tif) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs == rasterio.crs.CRS.from_string(CRS)
        assert (dst.width, dst.height) == (round(src.width * scale), round(src.height * scale))
        assert_affine_close(dst.transform, affine_mul(src.transform, Affine.scale(1 / scale)))
        assert_bounds_equal(dst.bounds, src.bounds)
        assert dst.res == pytest.approx((30.0 / scale, 30.0 / scale))
        assert dst.count == src.count


def test_non_integer_product_keeps_bounds(make_geotiff, tmp_path, model1):
    src_path = make_geotiff("odd.tif", fbm_surface((21, 19), seed=8))
    out = tmp_path / "out.tif"
    run(src_path, out, scale=2.7, model=model1)
    with rasterio.open(src_path) as src, rasterio.open(out) as dst:
        assert (dst.height, dst.width) == (round(21 * 2.7), round(19 * 2.7)) == (57, 51)
        expected = affine_mul(src.transform, Affine.scale(19 / 51, 21 / 57))
        assert_affine_close(dst.transform, expected)
        assert_bounds_equal(dst.bounds, src.bounds)
        assert dst.tags()["GEOSR_SCALE"] == "2.7"
        sx, sy = (float(v) for v in dst.tags()["GEOSR_SCALE_XY"].split(","))
        assert (sx, sy) == pytest.approx((51 / 19, 57 / 21))


@pytest.mark.parametrize(("resolution", "scale"), [(10, 3), (12, 2.5), (15, 2)])
def test_resolution_round_trip(dem_tif, tmp_path, model1, resolution, scale):
    out = tmp_path / "out.tif"
    result = run(dem_tif, out, resolution=resolution, model=model1)
    with rasterio.open(dem_tif) as src, rasterio.open(out) as dst:
        assert dst.res == pytest.approx((resolution, resolution), rel=1e-12)
        assert (dst.width, dst.height) == (round(src.width * scale), round(src.height * scale))
        assert_affine_close(dst.transform, affine_mul(src.transform, Affine.scale(1 / scale)))
        assert_bounds_equal(dst.bounds, src.bounds)
    assert result.scale == pytest.approx((scale, scale))


def test_rotated_raster_keeps_its_footprint(make_geotiff, tmp_path, model1):
    rotated = affine_mul(
        affine_mul(Affine.translation(500_000, 4_200_000), Affine.rotation(25.0)), Affine.scale(30, -30)
    )
    src_path = make_geotiff("rot.tif", fbm_surface((12, 14), seed=2), transform=rotated)
    out = tmp_path / "out.tif"
    run(src_path, out, resolution=10, model=model1)
    with rasterio.open(out) as dst:
        assert (dst.height, dst.width) == (36, 42)
        assert_affine_close(dst.transform, affine_mul(rotated, Affine.scale(1 / 3)))
        for corner_in, corner_out in (((0, 0), (0, 0)), ((14, 12), (42, 36)), ((14, 0), (42, 0))):
            assert affine_mul(dst.transform, corner_out) == pytest.approx(affine_mul(rotated, corner_in))


def test_file_output_equals_array_output(dem_tif, tmp_path, model1):
    out = tmp_path / "out.tif"
    run(dem_tif, out, scale=3, model=model1, tile_size=16)
    with rasterio.open(dem_tif) as src, rasterio.open(out) as dst:
        data = src.read(1)
        written = dst.read(1)
        assert dst.dtypes[0] == "float32"
    expected = downscale(data, 3, str(model1), device="cpu")
    assert np.abs(written - expected).max() <= data_tolerance(data)


def test_ensemble_output_equals_array_output_and_is_tagged(dem_tif, tmp_path, model1):
    out = tmp_path / "out.tif"
    run(dem_tif, out, scale=2, model=model1, tile_size=16, ensemble=4)
    with rasterio.open(dem_tif) as src, rasterio.open(out) as dst:
        data = src.read(1)
        written = dst.read(1)
        assert dst.tags()["GEOSR_ENSEMBLE"] == "4"
    expected = downscale(data, 2, str(model1), device="cpu", ensemble=4)
    assert np.abs(written - expected).max() <= data_tolerance(data)
    assert np.abs(written - downscale(data, 2, str(model1), device="cpu")).max() > data_tolerance(data)


def test_multiband_geotiff_with_one_channel_model(make_geotiff, tmp_path, model1):
    bands = np.stack([fbm_surface((14, 16), seed=s, relief=10.0**s) for s in range(3)])
    src_path = make_geotiff("multi.tif", bands)
    out = tmp_path / "out.tif"
    run(src_path, out, scale=2, model=model1, tile_size=16)
    with rasterio.open(out) as dst:
        assert dst.count == 3 and (dst.height, dst.width) == (28, 32)
        written = dst.read()
    for b in range(3):
        expected = downscale(bands[b], 2, str(model1), device="cpu")
        assert np.abs(written[b] - expected).max() <= data_tolerance(bands[b])


def test_three_channel_model_on_three_band_geotiff(make_geotiff, tmp_path, model3):
    bands = np.stack([fbm_surface((14, 16), seed=s) for s in range(3)])
    out = tmp_path / "out.tif"
    run(make_geotiff("rgb.tif", bands), out, scale=2, model=model3)
    with rasterio.open(out) as dst:
        written = dst.read()
    expected = downscale(bands, 2, str(model3), device="cpu")
    assert np.abs(written - expected).max() <= data_tolerance(bands)


# --- nodata and data types ---------------------------------------------------------------------


def int16_dem(missing_value: int = -32768) -> tuple[np.ndarray, np.ndarray]:
    # up to the int16 maximum, with a saturated plateau that the network overshoots
    surface = fbm_surface((16, 18), seed=9, relief=3000.0, base=32000.0)
    data = np.clip(np.round(surface), -32767, 32767).astype(np.int16)
    missing = np.zeros(data.shape, bool)
    missing[4:7, 5:9] = True
    missing[:, 0] = True
    data[missing] = missing_value
    return data, missing


def footprint_mask(missing: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    (h, w), (ho, wo) = missing.shape, out_shape
    rows = np.minimum(((np.arange(ho) + 0.5) * h / ho).astype(int), h - 1)
    cols = np.minimum(((np.arange(wo) + 0.5) * w / wo).astype(int), w - 1)
    return missing[rows[:, None], cols[None, :]]


def test_int16_nodata_kept(make_geotiff, tmp_path, model1):
    data, missing = int16_dem()
    src_path = make_geotiff("dem16.tif", data, nodata=-32768)
    out = tmp_path / "out.tif"
    run(src_path, out, scale=3, model=model1, tile_size=16)
    with rasterio.open(out) as dst:
        assert dst.dtypes[0] == "float32"
        assert dst.nodata == -32768
        raw = dst.read(1)
        masked = dst.read(1, masked=True)
    expected = footprint_mask(missing, raw.shape)
    np.testing.assert_array_equal(np.ma.getmaskarray(masked), expected)
    assert (raw[expected] == -32768).all()
    assert np.isfinite(raw).all() and (raw[~expected] != -32768).all()


def test_nan_nodata_kept(make_geotiff, tmp_path, model1):
    data = fbm_surface((16, 18), seed=3)
    data[2:5, 2:5] = np.nan
    src_path = make_geotiff("nan.tif", data, nodata=float("nan"))
    out = tmp_path / "out.tif"
    run(src_path, out, scale=2, model=model1)
    with rasterio.open(out) as dst:
        assert math.isnan(dst.nodata)
        written = dst.read(1)
    np.testing.assert_array_equal(np.isnan(written), footprint_mask(np.isnan(data), written.shape))


def test_nan_without_declared_nodata_gets_nan_nodata(make_geotiff, tmp_path, model1):
    data = fbm_surface((16, 18), seed=3)
    data[7, 7] = np.nan
    out = tmp_path / "out.tif"
    run(make_geotiff("gaps.tif", data), out, scale=2, model=model1)
    with rasterio.open(out) as dst:
        assert dst.nodata is not None and math.isnan(dst.nodata)
        assert np.isnan(dst.read(1)).sum() == 4  # one coarse cell = 2 x 2 fine pixels


def test_keep_dtype_rounds_and_clips(make_geotiff, tmp_path, model1):
    data, missing = int16_dem()
    src_path = make_geotiff("dem16.tif", data, nodata=-32768)
    as_float, as_int = tmp_path / "float.tif", tmp_path / "int.tif"
    run(src_path, as_float, scale=2, model=model1, tile_size=16)
    run(src_path, as_int, scale=2, model=model1, tile_size=16, keep_dtype=True)
    with rasterio.open(as_float) as f, rasterio.open(as_int) as i:
        reference = f.read(1, masked=True)
        assert i.dtypes[0] == "int16" and i.nodata == -32768
        assert i.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        values = i.read(1, masked=True)
    np.testing.assert_array_equal(np.ma.getmaskarray(values), np.ma.getmaskarray(reference))
    valid = ~np.ma.getmaskarray(reference)
    assert reference.data[valid].max() > 32767  # the network overshoots: clipping is exercised
    expected = np.clip(np.rint(reference.data[valid].astype(np.float64)), -32768, 32767)
    # the integer output rounds the exact values, the reference their float32 copies: a tie may round apart
    np.testing.assert_allclose(values.data[valid], expected, rtol=0, atol=1)
    assert (values.data[valid] == expected).mean() > 0.99


@pytest.mark.parametrize(("nodata", "offset"), [(0, 0), (32767, 32763), (-32768, -32764)])
def test_keep_dtype_moves_values_that_round_onto_nodata_to_their_own_side(make_geotiff, tmp_path, nodata, offset):
    """int16 bathymetry with nodata 0: a valid -0.4 is written -1 (the nearest integer that is not
    nodata), not +1; with nodata at a limit of the type (values next to it), values move inwards."""
    rng = np.random.default_rng(5)
    data = (rng.choice([-3, -2, -1, 1, 2, 3], size=(12, 14)) + offset).astype(np.int16)
    src = make_geotiff("bathy.tif", data, nodata=nodata)
    as_float, as_int = tmp_path / "float.tif", tmp_path / "int.tif"
    run(src, as_float, scale=2.5, model="backprojection")
    run(src, as_int, scale=2.5, model="backprojection", keep_dtype=True)
    with rasterio.open(as_float) as f, rasterio.open(as_int) as i:
        reference, values = f.read(1).astype(np.float64), i.read(1).astype(np.float64)
    expected = np.clip(np.rint(reference), -32768, 32767)
    onto = expected == nodata
    assert onto.any()  # the case is exercised
    inwards = -1 if nodata == 32767 else 1
    expected[onto] = nodata + (np.where(reference[onto] < nodata, -1, 1) if nodata == 0 else inwards)
    assert not (values == nodata).any()
    np.testing.assert_array_equal(values, expected)


# --- metadata and layout -----------------------------------------------------------------------


def test_metadata_carried_over(make_geotiff, tmp_path, model1):
    bands = np.stack([fbm_surface((12, 14), seed=1), fbm_surface((12, 14), seed=2, relief=30.0, base=0.0)])
    src_path = make_geotiff(
        "meta.tif",
        bands,
        descriptions=["elevation", "slope"],
        units=["m", "degrees"],
        scales=[0.5, 1.0],
        offsets=[10.0, 0.0],
        tags={"SOURCE": "lidar survey 2020", "PROJECT": "geosr tests"},
        band_tags=[{"SENSOR": "lidar"}, {"DERIVED": "yes"}],
        colorinterp=[ColorInterp.gray, ColorInterp.undefined],
    )
    out = tmp_path / "out.tif"
    run(src_path, out, scale=2, model=model1)
    with rasterio.open(src_path) as src, rasterio.open(out) as dst:
        assert dst.descriptions == ("elevation", "slope")
        assert dst.units == ("m", "degrees")
        assert dst.scales == (0.5, 1.0)
        assert dst.offsets == (10.0, 0.0)
        assert dst.colorinterp == src.colorinterp
        tags = dst.tags()
        assert tags["SOURCE"] == "lidar survey 2020" and tags["PROJECT"] == "geosr tests"
        assert dst.tags(1)["SENSOR"] == "lidar" and dst.tags(2)["DERIVED"] == "yes"
        assert tags["GEOSR_VERSION"] == geosr.__version__
        assert tags["GEOSR_SCALE"] == "2"
        assert "tiny1" in tags["GEOSR_MODEL"] and model1.name in tags["GEOSR_MODEL"]
        assert "bicubic" in tags["GEOSR_INTERPOLATION"]
        assert tags["GEOSR_PRECISION"] == "fp32"


def test_a_geosr_output_downscales_again_with_fresh_processing_tags(dem_tif, tmp_path, model1):
    once, twice = tmp_path / "x2.tif", tmp_path / "x4.tif"
    run(dem_tif, once, scale=2, model=model1)
    run(once, twice, scale=3, model=model1)
    with rasterio.open(twice) as dst:
        assert dst.tags()["GEOSR_SCALE"] == "3"
        assert dst.shape == (20 * 6, 24 * 6)


def test_output_is_tiled_deflate_predictor_3(dem_tif, tmp_path, model1):
    out = tmp_path / "out.tif"
    run(dem_tif, out, scale=2, model=model1, tile_size=64)
    with rasterio.open(out) as dst:
        assert dst.profile["tiled"] is True
        assert dst.block_shapes[0] == (64, 64)
        assert dst.compression == rasterio.enums.Compression.deflate
        structure = dst.tags(ns="IMAGE_STRUCTURE")
        assert structure["COMPRESSION"] == "DEFLATE"
        assert structure["PREDICTOR"] == "3"


def test_cog_with_overviews(make_geotiff, tmp_path, model1):
    # the COG driver adds overviews while the image is larger than one 512-pixel block
    src_path = make_geotiff("big.tif", fbm_surface((140, 132), seed=4))
    cog, plain = tmp_path / "cog.tif", tmp_path / "plain.tif"
    run(src_path, cog, scale=4, model=model1, cog=True, tile_size=256)
    run(src_path, plain, scale=4, model=model1, tile_size=256)
    with rasterio.open(cog) as c, rasterio.open(plain) as p:
        assert (c.height, c.width) == (560, 528)
        assert c.overviews(1), "a COG of this size needs overviews"
        assert c.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert c.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
        assert c.transform == p.transform and c.crs == p.crs
        assert c.tags()["GEOSR_SCALE"] == "4"
        np.testing.assert_array_equal(c.read(1), p.read(1))
    assert listing(tmp_path) == ["big.tif", "cog.tif", "plain.tif"]


def test_output_has_an_ordinary_file_mode(dem_tif, tmp_path, model1):
    out = tmp_path / "out.tif"
    run(dem_tif, out, scale=2, model=model1)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


# --- nothing lost ------------------------------------------------------------------------------


def test_overwrite_refused_without_flag(dem_tif, tmp_path, model1):
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious data")
    before = listing(tmp_path)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run(dem_tif, out, scale=2, model=model1)
    assert out.read_bytes() == b"precious data"
    assert listing(tmp_path) == before
    run(dem_tif, out, scale=2, model=model1, overwrite=True)
    with rasterio.open(out) as dst:
        assert (dst.height, dst.width) == (40, 48)


def test_input_never_overwritten(dem_tif, model1):
    original = dem_tif.read_bytes()
    with pytest.raises(OutputExistsError, match="input"):
        run(dem_tif, dem_tif, scale=2, model=model1, overwrite=True)
    assert dem_tif.read_bytes() == original


def test_bad_destinations(dem_tif, tmp_path, model1):
    with pytest.raises(InputError, match="does not exist"):
        run(dem_tif, tmp_path / "missing" / "out.tif", scale=2, model=model1)
    (tmp_path / "folder.tif").mkdir()
    with pytest.raises(OutputExistsError, match="folder"):
        run(dem_tif, tmp_path / "folder.tif", scale=2, model=model1, overwrite=True)


def fail_on_second_write(monkeypatch, exc=None):
    """Make the output writer raise ``exc`` (a RuntimeError by default) when given its second tile."""
    exc = exc if exc is not None else RuntimeError("disk full")
    calls = []
    original = TileWriter.write

    def write(self, rows, cols, values):
        calls.append(1)
        if len(calls) == 2:
            raise exc
        return original(self, rows, cols, values)

    monkeypatch.setattr(TileWriter, "write", write)
    return calls


@pytest.mark.parametrize("cog", [False, True])
def test_interrupted_write_leaves_nothing(dem_tif, tmp_path, model1, monkeypatch, cog):
    calls = fail_on_second_write(monkeypatch)
    before = listing(tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        run(dem_tif, tmp_path / "out.tif", scale=2, model=model1, tile_size=8, cog=cog)
    assert len(calls) == 2  # the run got past the first tile (several tiles)
    assert listing(tmp_path) == before  # no output, no temporary file


def test_interrupted_overwrite_keeps_the_old_file(dem_tif, tmp_path, model1, monkeypatch):
    out = tmp_path / "out.tif"
    run(dem_tif, out, scale=2, model=model1)
    old = out.read_bytes()
    before = listing(tmp_path)
    fail_on_second_write(monkeypatch)
    with pytest.raises(RuntimeError):
        run(dem_tif, out, scale=4, model=model1, tile_size=8, overwrite=True)
    assert out.read_bytes() == old
    assert listing(tmp_path) == before


def test_failure_while_making_the_cog_leaves_nothing(dem_tif, tmp_path, model1, monkeypatch):
    import rasterio.shutil

    def broken_copy(src, dst, **kwargs):
        with open(dst, "wb") as handle:
            handle.write(b"half a COG")
        raise OSError("no space left on device")

    monkeypatch.setattr(rasterio.shutil, "copy", broken_copy)
    before = listing(tmp_path)
    with pytest.raises(OSError, match="no space"):
        run(dem_tif, tmp_path / "out.tif", scale=2, model=model1, cog=True)
    assert listing(tmp_path) == before


def test_interrupted_cli_run_reports_and_leaves_nothing(dem_tif, tmp_path, model1, monkeypatch, cli):
    fail_on_second_write(monkeypatch, KeyboardInterrupt())
    before = listing(tmp_path)
    result = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "--tile-size", 16, "--device", "cpu", "-q")
    assert result.code == 130
    assert "no output" in assert_one_line_error(result.err, result.code)
    assert listing(tmp_path) == before


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "name"),
    [(("scale", 4), "dem_x4.tif"), (("scale", 2.5), "dem_x2.5.tif"), (("resolution", 10), "dem_r10.tif")],
)
def test_default_output_name_beside_input(dem_tif, tmp_path, model1, monkeypatch, option, name):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run(dem_tif, None, model=model1, **{option[0]: option[1]})
    assert result.path == dem_tif.with_name(name)
    assert result.path.is_file()
    assert listing(elsewhere) == []


def test_cli_default_output_name(dem_tif, model1, cli):
    result = cli("downscale", dem_tif, "--scale", 4, "--model", model1, "--device", "cpu", "-q")
    assert result.code == 0, result.err
    with rasterio.open(dem_tif.with_name("dem_x4.tif")) as dst:
        assert (dst.height, dst.width) == (80, 96)
        assert dst.transform == affine_mul(TRANSFORM, Affine.scale(0.25))


# --- other GDAL inputs -------------------------------------------------------------------------


def netcdf_available() -> bool:
    return "netCDF" in rasterio.drivers.raster_driver_extensions().values()


@pytest.mark.skipif(not netcdf_available(), reason="GDAL built without netCDF")
def test_netcdf_subdataset_input(tmp_path, model1):
    from scipy.io import netcdf_file

    path = tmp_path / "climate.nc"
    with netcdf_file(path, "w") as nc:
        nc.createDimension("y", 9)
        nc.createDimension("x", 11)
        for i, name in enumerate(("tas", "pr")):
            nc.createVariable(name, "f4", ("y", "x"))[:] = fbm_surface((9, 11), seed=i)
    with pytest.raises(InputError, match="subdatasets") as info:
        run(path, tmp_path / "out.tif", scale=2, model=model1)
    subdataset = f"netcdf:{path}:tas"
    assert subdataset in str(info.value)
    run(subdataset, tmp_path / "out.tif", scale=2, model=model1)
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert (dst.height, dst.width) == (18, 22)


# --- rasters of unusual kinds ------------------------------------------------------------------


def test_gcp_georeferencing_is_carried_to_the_fine_grid(tmp_path, model1):
    from rasterio.control import GroundControlPoint

    src, out = tmp_path / "gcp.tif", tmp_path / "out.tif"
    corners = [
        (0, 0, 500_000, 4_600_000),
        (0, 15, 500_450, 4_600_010),
        (12, 0, 499_990, 4_599_640),
        (12, 15, 500_440, 4_599_650),
    ]
    gcps = [GroundControlPoint(r, c, x, y, 0.0, str(i)) for i, (r, c, x, y) in enumerate(corners)]
    profile = {"driver": "GTiff", "height": 12, "width": 15, "count": 1, "dtype": "float32"}
    with rasterio.open(src, "w", **profile, gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(fbm_surface((12, 15), seed=2).astype(np.float32), 1)
    run(src, out, scale=2, model=model1)
    with rasterio.open(out) as dst:
        fine, crs = dst.gcps
        assert dst.shape == (24, 30) and crs == rasterio.crs.CRS.from_epsg(32633)
        assert [(g.row, g.col, g.x, g.y) for g in fine] == [(2 * r, 2 * c, x, y) for r, c, x, y in corners]
    with pytest.raises(geosr.errors.ScaleError, match="ground control points, which give no pixel size"):
        run(src, tmp_path / "r.tif", resolution=10, model=model1)


@pytest.mark.parametrize("keep_dtype", [False, True])
def test_float64_lowest_nodata_stays_nodata(make_geotiff, tmp_path, model1, keep_dtype):
    lowest = float(np.finfo(np.float64).min)
    data = fbm_surface((12, 15), seed=3).astype(np.float64)
    data[2:4, 2:4] = lowest
    src, out = make_geotiff("f64.tif", data, nodata=lowest, dtype="float64"), tmp_path / "out.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        run(src, out, scale=2, model=model1, keep_dtype=keep_dtype)
    with rasterio.open(out) as dst:
        values = dst.read(1, masked=True)
        assert dst.dtypes[0] == ("float64" if keep_dtype else "float32")
        assert (dst.nodata == lowest) if keep_dtype else np.isnan(dst.nodata)
    assert np.ma.getmaskarray(values).sum() == 16 and np.isfinite(values.compressed()).all()


def test_float64_kept_at_float64_precision_and_range_checked(make_geotiff, tmp_path, model1):
    data = np.stack([np.full((12, 15), 123456789.123), fbm_surface((12, 15), seed=4).astype(np.float64) * 1e30])
    src = make_geotiff("f64.tif", data, dtype="float64")
    run(src, tmp_path / "keep.tif", scale=2, model=model1, keep_dtype=True)
    with rasterio.open(tmp_path / "keep.tif") as dst:
        assert (dst.read(1) == 123456789.123).all()  # a constant band comes back exact
        assert np.isfinite(dst.read(2)).all() and dst.read(2).max() > 1e32
    # one value float32 cannot hold (an undeclared nodata marker) would swamp the band's statistics:
    # refused, whatever the output type, before any output exists
    data[1, 5, 5] = 1e39
    src = make_geotiff("huge.tif", data, dtype="float64")
    for keep_dtype in (False, True):
        with pytest.raises(InputError, match=r"band 2 of .*huge.tif' holds a value of magnitude 1e\+39, beyond"):
            run(src, tmp_path / "huge_x2.tif", scale=2, model=model1, keep_dtype=keep_dtype)
    assert listing(tmp_path) == ["f64.tif", "huge.tif", "keep.tif"]


@pytest.mark.parametrize("value", [np.finfo(np.float32).min, np.finfo(np.float32).max, 1e200])
def test_nodata_markers_that_are_not_declared_are_refused_in_one_line(tmp_path, cli, value):
    data = fbm_surface((12, 15), seed=4).astype(np.float64)
    data[3, 3] = value
    src = write_geotiff(tmp_path / "marker.tif", data, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        result = cli("downscale", src, "--scale", 2, "--model", "backprojection", "--keep-dtype")
    assert result.code == 1
    assert_one_line_error(result.err, "declare them nodata")
    assert listing(tmp_path) == ["marker.tif"]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("complex", "holds complex64 values, not real numbers"),
        ("palette", "is a palette band"),
        ("alpha", "is an alpha band"),
    ],
)
def test_bands_that_are_not_quantities_are_refused(tmp_path, model1, kind, words):
    src = tmp_path / f"{kind}.tif"
    count = 2 if kind == "alpha" else 1
    dtype = {"complex": "complex64", "palette": "uint8", "alpha": "uint8"}[kind]
    profile = {"driver": "GTiff", "height": 12, "width": 15, "count": count, "dtype": dtype, "crs": CRS}
    extra = {"photometric": "MINISBLACK", "alpha": "YES"} if kind == "alpha" else {}
    with rasterio.open(src, "w", **profile, **extra, transform=TRANSFORM) as dst:
        dst.write(np.ones((count, 12, 15), dtype))
        if kind == "palette":
            dst.write_colormap(1, {0: (0, 0, 0, 255), 1: (255, 0, 0, 255)})
    with rasterio.open(src) as written:
        assert written.colorinterp[-1] == {"complex": ColorInterp.gray, "palette": ColorInterp.palette}.get(
            kind, ColorInterp.alpha
        )
    with pytest.raises(InputError, match=words):
        run(src, tmp_path / "out.tif", scale=2, model=model1)
    assert listing(tmp_path) == [f"{kind}.tif"]


def test_bands_of_different_types_are_read(tmp_path, model1):
    b1 = write_band(tmp_path / "b1.tif", np.clip(fbm_surface((12, 15), seed=1), 0, 255).astype("uint8"))
    b2 = write_band(tmp_path / "b2.tif", fbm_surface((12, 15), seed=2).astype("float32"))
    vrt = tmp_path / "mixed.vrt"
    bands = "".join(
        f'<VRTRasterBand dataType="{t}" band="{i}"><SimpleSource><SourceFilename relativeToVRT="1">{p.name}'
        f"</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        for i, (t, p) in enumerate([("Byte", b1), ("Float32", b2)], 1)
    )
    vrt.write_text(
        f'<VRTDataset rasterXSize="15" rasterYSize="12"><SRS>{CRS}</SRS>'
        f"<GeoTransform>{', '.join(str(v) for v in TRANSFORM.to_gdal())}</GeoTransform>{bands}</VRTDataset>"
    )
    run(vrt, tmp_path / "out.tif", scale=2, model=model1)
    with rasterio.open(tmp_path / "out.tif") as dst, rasterio.open(b1) as one, rasterio.open(b2) as two:
        expected = downscale(np.stack([one.read(1), two.read(1)]).astype(np.float64), 2, str(model1), device="cpu")
        np.testing.assert_allclose(dst.read(), expected, rtol=0, atol=data_tolerance(expected))


def write_band(path, values):
    profile = {"driver": "GTiff", "height": values.shape[0], "width": values.shape[1], "count": 1}
    with rasterio.open(path, "w", **profile, dtype=values.dtype, crs=CRS, transform=TRANSFORM) as dst:
        dst.write(values, 1)
    return path


def test_a_band_without_data_comes_out_as_nodata(make_geotiff, tmp_path, model1):
    data = np.stack([fbm_surface((12, 15), seed=1), np.full((12, 15), -9999.0)])
    run(make_geotiff("two.tif", data, nodata=-9999), tmp_path / "out.tif", scale=2, model=model1)
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert np.ma.getmaskarray(dst.read(2, masked=True)).all()
        assert not np.ma.getmaskarray(dst.read(1, masked=True)).any()


def test_input_statistics_and_stale_side_files_do_not_describe_the_output(make_geotiff, tmp_path, model1):
    src = make_geotiff("dem.tif", fbm_surface((12, 15), seed=1))
    with rasterio.open(src, "r+") as dst:
        dst.update_tags(1, STATISTICS_MINIMUM="0", STATISTICS_MAXIMUM="1", origin="survey")
    out = tmp_path / "out.tif"
    for name in ("out.tif", "out.tif.aux.xml", "out.tif.ovr"):
        (tmp_path / name).write_text("an older output and its side files")
    run(src, out, scale=2, model=model1, overwrite=True)
    with rasterio.open(out) as dst:
        assert dst.tags(1) == {"origin": "survey"}
    assert listing(tmp_path) == ["dem.tif", "out.tif"]


@pytest.mark.parametrize(
    ("scale", "words"), [(1e308, "beyond the 2147483647 pixels a side"), (1e6, "GB uncompressed, and cannot fit")]
)
def test_outputs_too_large_to_write_are_refused_before_work(dem_tif, tmp_path, model1, scale, words):
    with pytest.raises((InputError, geosr.errors.ScaleError), match=words):
        run(dem_tif, tmp_path / "out.tif", scale=scale, model=model1)
    assert listing(tmp_path) == ["dem.tif"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ('NETCDF:"{d}/c.nc":tas', "{d}/c_tas_x2.tif"),
        ("netcdf:{d}/c.nc:tas", "{d}/c_tas_x2.tif"),
        ("/vsizip/{d}/dems.zip/dem.tif", "dem_x2.tif"),
        ("{d}/dem.tif", "{d}/dem_x2.tif"),
        # a grouped subdataset, others, a URL (an audit: the first was taken for a folder that does not exist)
        ('NETCDF:"{d}/imerg.nc":/Grid/precipitation', "{d}/imerg_precipitation_x2.tif"),
        ('HDF4_EOS:EOS_GRID:"{d}/mod.hdf":MODIS_Grid_16DAY:"250m 16 days NDVI"', "{d}/mod_250m_16_days_NDVI_x2.tif"),
        ("GTIFF_DIR:2:{d}/dem.tif", "{d}/dem_dir2_x2.tif"),
        ("https://example.com:8080/data/dem.tif?token=1", "dem_x2.tif"),
    ],
)
def test_default_output_names_for_gdal_names(tmp_path, name, expected):
    from pathlib import Path

    from geosr.pipeline import default_output

    d = str(tmp_path)
    assert default_output(Path(name.format(d=d)), 2, None) == Path(expected.format(d=d))
