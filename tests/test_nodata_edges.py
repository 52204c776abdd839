"""Nodata and range edges: integer markers that a double or float32 rounds (uint32 2**32 - 1, the Int64/UInt64
ends, which rasterio reports as None), valid values near float32's limit, and undecoded multiband data with
per-band negative scales through the accessor.

Each output is read back as a GDAL reader sees it: ``read(masked=True)`` must mask exactly the pixels whose
footprint is nodata, and the declared nodata must be what those pixels store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import CRS, TRANSFORM, assert_one_line_error

import geosr
from geosr.io import off_nodata
from geosr.predict import FLOAT32_MAX
from geosr.testing import fbm_surface, random_model

SIDE = 24  # input pixels a side; a 4 x 4 nodata block in the corner becomes 8 x 8 at scale 2
HOLE = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-band VDSR of depth 2 and width 4."""
    return random_model(tmp_path_factory.mktemp("edges") / "tiny.safetensors", depth=2, width=4, name="tiny")


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 3-band VDSR of depth 2 and width 4 (it mixes the bands)."""
    folder = tmp_path_factory.mktemp("edges3")
    return random_model(folder / "tiny3.safetensors", in_channels=3, depth=2, width=4, seed=1, name="tiny3")


def footprint(scale: int = 2) -> np.ndarray:
    mask = np.zeros((SIDE * scale, SIDE * scale), bool)
    mask[: HOLE * scale, : HOLE * scale] = True
    return mask


def integer_raster(tmp_path: Path, dtype: str, nodata: int, top: int | None = None) -> Path:
    """A 24 x 24 ``dtype`` raster with a 4 x 4 block of ``nodata`` (stated exactly by a VRT: rasterio writes a
    nodata as a double), valid values about 500 apart, ending at ``top`` (default: a few thousand)."""
    relief = fbm_surface((SIDE, SIDE), seed=1).astype(np.int64)
    relief -= relief.max()
    values = [[(top if top is not None else 10_000) + int(v) for v in row] for row in relief]
    data = np.array(values, dtype=dtype)
    data[:HOLE, :HOLE] = nodata
    tif = tmp_path / f"{dtype}.tif"
    profile = {"driver": "GTiff", "height": SIDE, "width": SIDE, "count": 1, "dtype": dtype}
    with rasterio.open(tif, "w", crs=CRS, transform=TRANSFORM, **profile) as ds:
        ds.write(data[None])
    gdal_type = {"uint32": "UInt32", "int32": "Int32", "int64": "Int64", "uint64": "UInt64"}[dtype]
    gt = ", ".join(repr(v) for v in TRANSFORM.to_gdal())
    vrt = tmp_path / f"{dtype}.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="{SIDE}" rasterYSize="{SIDE}"><SRS>{CRS}</SRS><GeoTransform>{gt}</GeoTransform>'
        f'<VRTRasterBand dataType="{gdal_type}" band="1"><NoDataValue>{nodata}</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{tif.name}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>'
        "</VRTRasterBand></VRTDataset>"
    )
    with rasterio.open(vrt) as ds:
        assert ds.read(1, masked=True).mask.sum() == HOLE * HOLE  # GDAL masks the input exactly
    return vrt


def read_back(path: Path) -> tuple[np.ma.MaskedArray, np.ndarray, float | None, str]:
    with rasterio.open(path) as ds:
        return ds.read(1, masked=True), ds.read(1), ds.nodata, ds.dtypes[0]


def assert_masks_the_footprint(path: Path) -> None:
    """GDAL masks exactly the footprint of the input's nodata, whose pixels store the declared nodata."""
    masked, stored, nodata, dtype = read_back(path)
    assert nodata is not None
    assert (masked.mask == footprint()).all(), (int(masked.mask.sum()), int(footprint().sum()))
    fill = np.dtype(dtype).type(nodata)
    assert (stored[footprint()] == fill).all(), (stored[0, 0], nodata)
    assert np.isfinite(masked.compressed()).all()


# --- 1. integer markers that float32 (or a double) rounds ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "nodata", "top"),
    [
        ("uint32", 2**32 - 1, None),
        ("uint32", 2**32 - 1, 2**32 - 100),  # valid values that float32 rounds onto the marker's 2**32
        ("int32", 2**31 - 1, 2**31 - 100),
        ("int64", 2**62 + 1, None),  # rasterio reports 4.611686018427388e18
        ("int64", 2**53 + 1, None),
        ("uint64", 2**63 + 1, 2**63 - 10),  # valid values float32 rounds onto the marker's 2**63
    ],
)
def test_a_rounded_integer_marker_masks_exactly_the_nodata_pixels(cli, tmp_path, tiny, dtype, nodata, top):
    src = integer_raster(tmp_path, dtype, nodata, top)
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", tiny, "--quiet")
    assert r.code == 0, r.err
    assert_masks_the_footprint(out)
    _, _, tag, dtype = read_back(out)
    assert dtype == "float32" and np.float32(tag) == np.float32(nodata)  # the marker's nearest float32


@pytest.mark.parametrize(("dtype", "nodata"), [("uint32", 2**32 - 1), ("int32", 2**31 - 1), ("int64", 2**53 + 1)])
def test_a_rounded_integer_marker_is_kept_with_keep_dtype(cli, tmp_path, tiny, dtype, nodata):
    src = integer_raster(tmp_path, dtype, nodata)
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", tiny, "--keep-dtype", "--quiet")
    assert r.code == 0, r.err
    assert_masks_the_footprint(out)
    assert read_back(out)[3] == dtype


# --- 2. Int64/UInt64 markers rasterio reports as None -------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "nodata"), [("uint64", 2**64 - 1), ("uint64", 2**64 - 2), ("int64", 2**63 - 1)])
def test_a_marker_rasterio_cannot_report_is_carried_to_float32(cli, tmp_path, tiny, dtype, nodata):
    src = integer_raster(tmp_path, dtype, nodata, top=nodata - 100)  # valid values float32 rounds onto it too
    with rasterio.open(src) as ds:
        assert ds.nodata is None  # rasterio's view: the double rounds beyond the type
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", tiny, "--quiet")
    assert r.code == 0, r.err
    assert_masks_the_footprint(out)
    assert np.float32(read_back(out)[2]) == np.float32(nodata)  # the input's marker (its float32), not NaN


@pytest.mark.parametrize(("dtype", "nodata"), [("uint64", 2**64 - 1), ("int64", 2**63 - 1)])
def test_keep_dtype_refuses_such_a_marker_in_true_words(cli, tmp_path, tiny, dtype, nodata):
    # it said "has masked pixels but no nodata value", though the input has one
    src = integer_raster(tmp_path, dtype, nodata)
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", tiny, "--keep-dtype", "--quiet")
    line = assert_one_line_error(r.err, r.code, f"{dtype} nodata", "end of the", "drop --keep-dtype")
    assert "no nodata" not in line
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "geosr" in p.name]


def test_under_bands_a_later_bands_unreported_marker_is_found(cli, tmp_path, tiny):
    src = integer_raster(tmp_path, "uint64", 2**64 - 1)
    two = tmp_path / "two.vrt"
    text = src.read_text()
    band = text[text.index("<VRTRasterBand") : text.index("</VRTDataset>")]
    plain = band.replace(f"<NoDataValue>{2**64 - 1}</NoDataValue>", "")
    two.write_text(text.replace(band, plain + band.replace('band="1"', 'band="2"')))
    out = tmp_path / "out.tif"
    r = cli("downscale", two, "--scale", 2, "-o", out, "--model", tiny, "--bands", 2, "--quiet")
    assert r.code == 0, r.err
    assert_masks_the_footprint(out)


@pytest.mark.parametrize(("dtype", "nodata"), [("uint64", 2**64 - 1), ("int64", 2**63 - 1), ("int64", 2**62 + 1)])
def test_the_accessor_compares_integer_markers_exactly(tiny, dtype, nodata):
    # as a double, 2**64 - 1 is 2**64, and so is every valid value within 2048 of it: they came out NaN (and with
    # rioxarray imported, its nodata, passed through a float, failed on 2**64 - 1 and turned 2**62 + 1 into 2**62)
    pytest.importorskip("rioxarray")
    relief = fbm_surface((SIDE, SIDE), seed=1).astype(np.int64)
    data = np.array([[nodata - 900 + int(v) for v in row] for row in relief], dtype=dtype)
    data[:HOLE, :HOLE] = nodata
    data[10, 10] = nodata - 1  # valid, and the marker's neighbour
    coords = {"y": np.arange(SIDE, dtype=float)[::-1], "x": np.arange(SIDE, dtype=float)}
    for attrs in (
        {"_FillValue": np.array(nodata, dtype=dtype)},
        {"_FillValue": np.array(nodata, dtype=dtype), "missing_value": np.array(0, dtype=dtype)},
        {"missing_value": [0, nodata]},
    ):
        da = xr.DataArray(data, dims=("y", "x"), coords=coords, attrs=attrs)
        for source in (da, da.chunk({"y": 12, "x": 12})):
            out = source.geosr.downscale(2, model=tiny, device="cpu").values
            assert (np.isnan(out) == footprint()).all(), (attrs, int(np.isnan(out).sum()))
    given = xr.DataArray(data, dims=("y", "x"), coords=coords).geosr.downscale(2, model=tiny, nodata=nodata)
    assert (np.isnan(given.values) == footprint()).all()


# --- 3. valid values near float32's limit ---------------------------------------------------------------------------


def near_the_limit(dtype: str) -> np.ndarray:
    """Valid values up to 3.3997e38, whose detail overshoots float32's largest, 3.4028e38."""
    relief = fbm_surface((SIDE, SIDE), seed=1).astype(np.float64)
    z = (relief - relief.mean()) / np.abs(relief - relief.mean()).max()
    return (3.38e38 + 0.02e38 * z).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_valid_values_near_float32s_limit_stay_finite_through_every_door(cli, make_geotiff, tmp_path, tiny, dtype):
    data = near_the_limit(dtype)
    assert np.isfinite(data).all() and data.max() < np.finfo(np.float32).max
    limit = FLOAT32_MAX
    numpy_out = geosr.downscale(data, 2, model=tiny, device="cpu")
    assert np.isfinite(numpy_out).all() and np.abs(numpy_out).max() < limit
    assert numpy_out.max() > data.max()  # the detail did overshoot: saturated, not refused or clipped to the input

    coords = {"y": np.arange(SIDE, dtype=float)[::-1], "x": np.arange(SIDE, dtype=float)}
    da = xr.DataArray(data, dims=("y", "x"), coords=coords)
    for source in (da, da.chunk({"y": 12, "x": 12})):
        out = source.geosr.downscale(2, model=tiny, device="cpu").values
        np.testing.assert_array_equal(out, numpy_out)

    src = make_geotiff("big.tif", data, nodata=-FLOAT32_MAX)  # float32's lowest: GDAL's usual nodata
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", tiny, "--quiet")
    assert r.code == 0, r.err  # it was refused mid-write, naming no fix, once the output was under way
    with rasterio.open(out) as ds:
        values = ds.read(1, masked=True)
    assert not values.mask.any() and np.isfinite(values).all()
    np.testing.assert_array_equal(values.data, numpy_out)


def test_the_output_limit_is_a_float32_inside_its_range_and_off_its_limit():
    from geosr.predict import OUTPUT_MAX

    # a valid pixel saturates to a value float32 holds, which no GDAL reader takes for float32's limit (nodata)
    assert float(np.float32(OUTPUT_MAX)) == OUTPUT_MAX < FLOAT32_MAX
    assert float(off_nodata(FLOAT32_MAX, np.dtype("float32"))) == OUTPUT_MAX


# --- 4. undecoded multiband data with per-band negative scales (accessor) -------------------------------------------


SCALES = (0.5, -2.0, 1.0)
OFFSETS = (10.0, 100.0, 0.0)


def packed_multiband(make_geotiff) -> Path:
    data = np.stack([fbm_surface((SIDE, SIDE), seed=s) for s in (1, 2, 3)]).astype(np.int16)
    data[:, :HOLE, :HOLE] = -9999
    return make_geotiff("packed.tif", data, nodata=-9999, scales=SCALES, offsets=OFFSETS)


@pytest.mark.parametrize("model", ["tiny", "tiny3"])
@pytest.mark.parametrize("lazy", [False, True])
def test_per_band_negative_scales_give_the_result_of_the_values(request, make_geotiff, model, lazy):
    rioxarray = pytest.importorskip("rioxarray")
    model = request.getfixturevalue(model)
    src = packed_multiband(make_geotiff)
    undecoded = rioxarray.open_rasterio(src, mask_and_scale=False)  # warns that the scales differ across bands
    assert tuple(undecoded.attrs["scales"]) == SCALES
    decoded = rioxarray.open_rasterio(src, mask_and_scale=True)
    expected = decoded.geosr.downscale(2, model=model, device="cpu").values.astype(np.float64)
    scales, offsets = np.asarray(SCALES)[:, None, None], np.asarray(OFFSETS)[:, None, None]
    re_encoded = (expected - offsets) / scales
    source = undecoded.chunk({"y": 12, "x": 12}) if lazy else undecoded
    out = source.geosr.downscale(2, model=model, device="cpu").values.astype(np.float64)
    assert (np.isnan(out) == np.isnan(re_encoded)).all()
    assert np.isnan(out[:, footprint()]).all()
    tolerance = 1e-5 * np.nanmax(np.abs(re_encoded))
    np.testing.assert_allclose(out, re_encoded, rtol=0, atol=tolerance)

    # the same as a per-band scale_factor (a tuple or an array) on a 'band' dimension of any position
    moved = undecoded.transpose("y", "band", "x")
    for factor in (SCALES, np.asarray(SCALES)):
        attrs = {k: v for k, v in moved.attrs.items() if k not in ("scales", "offsets")}
        again = moved.copy()
        again.attrs = {**attrs, "scale_factor": factor}
        result = again.geosr.downscale(2, model=model, device="cpu").transpose("band", "y", "x").values
        np.testing.assert_allclose(result.astype(np.float64), re_encoded, rtol=0, atol=tolerance)


def test_per_band_negative_scales_without_a_band_dimension_are_refused(tiny):
    from geosr.errors import InputError

    data = xr.DataArray(
        np.ones((3, SIDE, SIDE), np.int16),
        dims=("time", "y", "x"),
        coords={"y": np.arange(SIDE, dtype=float)[::-1], "x": np.arange(SIDE, dtype=float)},
        attrs={"scale_factor": [0.5, -2.0]},  # two scales, three time steps: which is which is unknown
    )
    with pytest.raises(InputError, match="band_dim=") as info:
        data.geosr.downscale(2, model=tiny, device="cpu")
    assert "-2" in str(info.value) and "\n" not in str(info.value)
