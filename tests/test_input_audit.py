"""Audit of ``geosr downscale`` on unusual GDAL inputs and output paths, as a GIS user would feed it.

Each test reproduces a defect found by the audit (it fails without its fix): work done before a refusal
promised "before any work", nodata an integer GeoTIFF would not keep, GDAL's reason hidden behind
rasterio's "Read failed", outputs named as other formats, and misleading or late refusals of a folder. A second
audit: a band's nodata was ignored where the file also has a mask (GDAL then masks by the mask alone), and an
identity geotransform the file stores (pixel space, ``gdal_edit.py -a_ullr 0 0 W H``) was taken for none, so
the output lost its transform and covered twice the input's area.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from conftest import CRS, TRANSFORM, affine_mul, assert_one_line_error

import geosr
import geosr.io
import geosr.pipeline
from geosr.errors import InputError
from geosr.testing import fbm_surface


def _no_stats_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading the whole raster (the statistics pass) fail the test: a refusal must come first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole raster was read before the refusal")

    monkeypatch.setattr(geosr.pipeline, "iter_windows", refuse)


@pytest.mark.parametrize(
    ("scale", "free", "words"),
    [
        (2, 1, ("cannot fit", "free")),  # the destination's free space
        (2e8, 10**15, ("2147483647", "choose a smaller scale")),  # GDAL's largest side
    ],
)
def test_output_too_large_is_refused_before_the_raster_is_read(
    cli, make_geotiff, model1, tmp_path, monkeypatch, scale, free, words
):
    # a huge sparse raster was read to its end (hours) before its too large output was refused
    src = make_geotiff("dem.tif", fbm_surface((13, 17), seed=1))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(free, 0, free))
    _no_stats_pass(monkeypatch)
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", scale, "-o", out, "--model", model1, "--quiet")
    assert_one_line_error(r.err, r.code, *words)
    assert not out.exists()


def _vrt(path: Path, shape: tuple[int, int], sources: list[str], dtype: str, nodata: list[Any] | None = None) -> Path:
    """A VRT on TRANSFORM of ``shape`` (rows, columns) whose band i is band 1 of ``sources[i]`` (beside it), with
    ``nodata[i]`` where it is not None: VRTs give what rasterio cannot write (one band's nodata, Int64's)."""
    gt = ", ".join(repr(v) for v in TRANSFORM.to_gdal())
    bands = "".join(
        f'<VRTRasterBand dataType="{dtype}" band="{i}">'
        + ("" if value is None else f"<NoDataValue>{value}</NoDataValue>")
        + f'<SimpleSource><SourceFilename relativeToVRT="1">{source}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        for i, (source, value) in enumerate(zip(sources, nodata or [None] * len(sources), strict=True), 1)
    )
    path.write_text(
        f'<VRTDataset rasterXSize="{shape[1]}" rasterYSize="{shape[0]}"><GeoTransform>{gt}</GeoTransform>'
        f"{bands}</VRTDataset>"
    )
    return path


def _int64_with_nodata(tmp_path: Path, nodata: int) -> tuple[Path, np.ndarray]:
    """An Int64 raster whose nodata is ``nodata`` exactly (a VRT says it: rasterio cannot write it)."""
    data = (fbm_surface((13, 17), seed=1)).astype("int64")
    data[:2, :3] = nodata
    tif = tmp_path / "ints.tif"
    with rasterio.open(
        tif, "w", driver="GTiff", height=13, width=17, count=1, dtype="int64", crs=CRS, transform=TRANSFORM
    ) as ds:
        ds.write(data[None])
    vrt = _vrt(tmp_path / "ints.vrt", (13, 17), [tif.name], "Int64", [nodata])
    with rasterio.open(vrt) as ds:
        assert ds.read(1, masked=True).mask.sum() == 6  # the input is what it should be
    return vrt, data


@pytest.mark.parametrize("nodata", [int(np.iinfo("int64").min), -(2**62)])
def test_int64_nodata_a_geotiff_would_not_keep_is_refused_with_keep_dtype(cli, tmp_path, model1, nodata):
    # rasterio stores such a nodata as '-9.22337203685478e+18', which an Int64 band reads back as -9: the
    # output's missing pixels read as data (and any valid -9 as missing)
    vrt, _ = _int64_with_nodata(tmp_path, nodata)
    out = tmp_path / "out.tif"
    r = cli("downscale", vrt, "--scale", 2, "-o", out, "--model", model1, "--keep-dtype", "--quiet")
    assert_one_line_error(r.err, r.code, "nodata", str(nodata), "drop --keep-dtype")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "geosr" in p.name]
    # the fix it names works: float32 with the same pixels missing
    r = cli("downscale", vrt, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.read(1, masked=True).mask.sum() == 6 * 4


def test_int64_nodata_that_fits_is_kept_with_keep_dtype(cli, tmp_path, model1):
    vrt, _ = _int64_with_nodata(tmp_path, -9999)
    out = tmp_path / "out.tif"
    r = cli("downscale", vrt, "--scale", 2, "-o", out, "--model", model1, "--keep-dtype", "--quiet")
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "int64" and ds.nodata == -9999
        assert ds.read(1, masked=True).mask.sum() == 6 * 4


def test_a_damaged_raster_names_gdals_reason_and_the_fix(cli, tmp_path, model1):
    # rasterio's own message, 'RasterioIOError: Read failed. See previous exception for details.', named
    # neither the file nor what was wrong
    whole = tmp_path / "whole.tif"
    with rasterio.open(
        whole, "w", driver="GTiff", height=64, width=64, count=1, dtype="float32", crs=CRS, transform=TRANSFORM
    ) as ds:
        ds.write(fbm_surface((64, 64), seed=3)[None])
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out.tif"
    r = cli("downscale", damaged, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    line = assert_one_line_error(r.err, r.code, "damaged.tif", "cannot read", "gdalinfo -checksum")
    assert "See previous exception" not in line
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".vrt", ".img", ".asc"])
def test_output_named_as_another_raster_format_is_refused(cli, dem_tif, model1, tmp_path, suffix):
    # a GeoTIFF was written under the name, so that 'dem.png' was no PNG and 'dem.vrt' no VRT
    out = tmp_path / f"dem{suffix}"
    r = cli("downscale", dem_tif, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    assert_one_line_error(r.err, r.code, "GeoTIFF", f"-o {out.with_suffix('.tif')}", "gdal_translate -of")
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".tif", ".TIFF", ""])
def test_geotiff_and_plain_names_are_written(cli, dem_tif, model1, tmp_path, suffix):
    out = tmp_path / f"dem_x2{suffix}"
    r = cli("downscale", dem_tif, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.driver == "GTiff"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_as_output_is_refused_as_a_folder(cli, dem_tif, model1, tmp_path, overwrite):
    # without --overwrite it said "already exists; pass --overwrite to replace it", which then failed too
    folder = tmp_path / "results"
    folder.mkdir()
    r = cli("downscale", dem_tif, "--scale", 2, "-o", folder, "--model", model1, "--quiet", *overwrite)
    line = assert_one_line_error(r.err, r.code, "is a folder", "give a file name with -o")
    assert "--overwrite" not in line
    assert folder.is_dir() and not list(folder.iterdir())


def test_an_unwritable_output_folder_is_refused_before_any_work(cli, dem_tif, model1, tmp_path, monkeypatch):
    # it failed only at the first write, after the model and the statistics pass, as
    # 'PermissionError: [Errno 13] Permission denied: ... (rerun with --verbose for details)'
    folder = tmp_path / "readonly"
    folder.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != folder and access(path, mode, **kw))
    _no_stats_pass(monkeypatch)  # (tests run as root, for whom chmod 555 changes nothing)
    r = cli("downscale", dem_tif, "--scale", 2, "-o", folder / "out.tif", "--model", model1, "--quiet")
    assert_one_line_error(r.err, r.code, "readonly", "not writable", "choose another -o")


def test_a_folder_that_refuses_the_temporary_file_gives_one_clear_line(cli, dem_tif, model1, tmp_path, monkeypatch):
    folder = tmp_path / "full"
    folder.mkdir()

    def no_room(parent: Path, prefix: str, suffix: str) -> str:
        raise OSError(28, "No space left on device", str(parent))

    monkeypatch.setattr(geosr.io, "_temp_file", no_room)
    r = cli("downscale", dem_tif, "--scale", 2, "-o", folder / "out.tif", "--model", model1, "--quiet")
    assert_one_line_error(r.err, r.code, "No space left on device", "full", "choose another -o")


def _rgba(path: Path) -> Path:
    dem = fbm_surface((12, 16), seed=6)
    alpha = np.where(dem > np.median(dem), 255, 0)
    data = np.stack([dem / 4, dem / 5, dem / 6, alpha]).astype("uint8")
    with rasterio.open(
        path, "w", driver="GTiff", height=12, width=16, count=4, dtype="uint8", crs=CRS, transform=TRANSFORM,
        photometric="RGB", alpha="YES",
    ) as ds:  # fmt: skip
        ds.write(data)
    return path


def test_an_alpha_band_refusal_names_the_bands_that_leave_it_out(cli, tmp_path, model1):
    src = _rgba(tmp_path / "rgba.tif")
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    assert_one_line_error(r.err, r.code, "band 4", "alpha", "pass --bands 1,2,3")
    # and that fix works: the transparent pixels come out as nodata
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet", "--bands", "1,2,3")
    assert r.code == 0, r.err
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.count == 3 and np.isnan(b.nodata)
        assert b.read(masked=True).mask.sum() == 4 * a.read(1, masked=True).mask.sum() * 3 > 0


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_an_alpha_band_gdal_does_not_mask_with_is_refused_under_bands(cli, tmp_path, model1, dtype):
    # GDAL masks the other bands by a Byte or UInt16 alpha only: leaving a float32 (or int16) one out with
    # --bands turned its transparent pixels into data, as the advice to leave it out promised they would not be
    dem = fbm_surface((12, 16), seed=6)
    alpha = np.where(dem > np.median(dem), 255, 0)
    src = tmp_path / "rgba.tif"
    with rasterio.open(
        src, "w", driver="GTiff", height=12, width=16, count=4, dtype=dtype, crs=CRS, transform=TRANSFORM,
        photometric="RGB", alpha="YES",
    ) as ds:  # fmt: skip
        ds.write(np.stack([dem / 4, dem / 5, dem / 6, alpha]).astype(dtype))
        assert ds.colorinterp[3].name == "alpha"
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    message = assert_one_line_error(r.err, r.code, "band 4", "alpha", "gdalwarp -dstnodata")
    assert "--bands" not in message  # leaving it out is no fix here
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet", "--bands", "1,2,3")
    assert_one_line_error(r.err, r.code, "band 4", "does not read as the other bands' mask", "gdalwarp -dstnodata")
    assert not out.exists()


def _rpcs() -> object:
    from rasterio.rpc import RPC

    return RPC(
        height_off=100, height_scale=100, lat_off=45, lat_scale=0.1, long_off=10, long_scale=0.1,
        line_off=10, line_scale=10, samp_off=12, samp_scale=12,
        line_num_coeff=[0, 0, 1, 0.01] + [0] * 16, line_den_coeff=[1] + [0] * 19,
        samp_num_coeff=[0, 1, 0.02] + [0] * 17, samp_den_coeff=[1] + [0] * 19,
    )  # fmt: skip


@pytest.mark.parametrize(("scale", "cog"), [(2, []), (2.5, ["--cog"])])
def test_rpcs_beside_a_transform_are_kept_on_the_fine_grid(cli, tmp_path, model1, scale, cog):
    # they were dropped without a word: an image with a rough transform and its sensor model lost the latter
    from rasterio.transform import RPCTransformer

    src = tmp_path / "scene.tif"
    with rasterio.open(
        src, "w", driver="GTiff", height=20, width=24, count=1, dtype="float32", crs=CRS, transform=TRANSFORM,
        rpcs=_rpcs(),
    ) as ds:  # fmt: skip
        ds.write(fbm_surface((20, 24), seed=7)[None])
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", scale, "-o", out, "--model", model1, "--quiet", *cog)
    assert r.code == 0, r.err
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.rpcs is not None
        assert b.transform == affine_mul(a.transform, Affine.scale(a.width / b.width, a.height / b.height))
        fy, fx = b.height / a.height, b.width / a.width
        with RPCTransformer(a.rpcs) as coarse, RPCTransformer(b.rpcs) as fine:
            # ground to image is the RPCs' own (exact) direction: each ground point falls at the same place
            lon, lat = np.meshgrid([9.91, 9.97, 10.05], [44.9, 45.0, 45.08])
            rows_a, cols_a = coarse.rowcol(lon.ravel(), lat.ravel(), zs=50, op=float)
            rows_b, cols_b = fine.rowcol(lon.ravel(), lat.ravel(), zs=50, op=float)
            np.testing.assert_allclose(np.asarray(rows_b), np.asarray(rows_a) * fy, atol=1e-6)
            np.testing.assert_allclose(np.asarray(cols_b), np.asarray(cols_a) * fx, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "scene.tif"]  # no side file (.RPB)


@pytest.mark.parametrize("nodata", [-np.inf, np.inf])
def test_an_infinite_nodata_is_carried(cli, make_geotiff, model1, tmp_path, nodata):
    # a float32 output can hold -inf: it was replaced by NaN, as if it were float64's lowest value
    dem = fbm_surface((13, 17), seed=1)
    dem[:2, :3] = nodata
    src = make_geotiff("dem.tif", dem, nodata=nodata)
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.nodata == nodata
        values = ds.read(1, masked=True)
    assert values.mask.sum() == 6 * 4 and np.isfinite(values.compressed()).all()


def test_overwrite_never_replaces_a_device_or_pipe(cli, dem_tif, model1, tmp_path):
    # '-o /dev/null --overwrite' (a dry run, as root) renamed the finished GeoTIFF onto /dev/null itself
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    r = cli("downscale", dem_tif, "--scale", 2, "-o", pipe, "--model", model1, "--quiet", "--overwrite")
    assert_one_line_error(r.err, r.code, "not a regular file", "give a file name with -o")
    assert pipe.is_fifo()


def test_overwrite_never_replaces_a_file_the_input_reads(cli, make_geotiff, model1, tmp_path):
    # a VRT's source given as -o with --overwrite was replaced by the output: the input itself was lost
    source = make_geotiff("dem.tif", fbm_surface((13, 17), seed=1))
    vrt = _vrt(tmp_path / "dem.vrt", (13, 17), [source.name], "Float32")
    before = source.read_bytes()
    r = cli("downscale", vrt, "--scale", 2, "-o", source, "--model", model1, "--quiet", "--overwrite")
    assert_one_line_error(r.err, r.code, "files GDAL reads for the input", "choose another name with -o")
    assert source.read_bytes() == before


class _TruncatedOnClose:
    """A writer's dataset whose file loses its second half when closed, as GDAL leaves it when the disk fills
    while it flushes its cache at close: rasterio reports no error then."""

    def __init__(self, dataset: object, path: Path) -> None:
        object.__setattr__(self, "_dataset", dataset)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name: str) -> object:
        return getattr(self._dataset, name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self._dataset, name, value)

    def close(self) -> None:
        self._dataset.close()
        data = self._path.read_bytes()
        self._path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("cog", [[], ["--cog"]])
def test_an_output_the_disk_could_not_hold_is_never_renamed_onto_the_destination(
    cli, dem_tif, model1, tmp_path, monkeypatch, cog
):
    # on a full disk the run exited 0 and left a truncated, unreadable GeoTIFF at the destination: GDAL's
    # failures writing the cached blocks at close reach stderr only (reproduced on a 200 kB tmpfs)
    enter = geosr.io.TileWriter.__enter__

    def truncating_enter(self: geosr.io.TileWriter) -> geosr.io.TileWriter:
        enter(self)
        self._dataset = _TruncatedOnClose(self._dataset, self.tmp)
        return self

    monkeypatch.setattr(geosr.io.TileWriter, "__enter__", truncating_enter)
    out = tmp_path / "out.tif"
    r = cli("downscale", dem_tif, "--scale", 2, "-o", out, "--model", model1, "--quiet", *cog)
    assert_one_line_error(r.err, r.code, "could not be written in full", "free some space or choose another -o")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "geosr" in p.name]


@pytest.mark.parametrize("keep", [[], ["--keep-dtype"]])
def test_a_nodata_of_a_later_band_is_the_outputs_when_band_1_has_none(cli, tmp_path, model1, keep):
    # GDAL's dataset nodata is band 1's: with none there (a VRT gives each band its own), --keep-dtype refused
    # the raster for having no nodata, though band 2 declares one
    dem = (fbm_surface((16, 20), seed=8) * 100).astype("int16")
    second = dem.copy()
    second[3:7, 4:9] = -9999
    for band, data in enumerate([dem, second], 1):
        with rasterio.open(
            tmp_path / f"b{band}.tif", "w", driver="GTiff", height=16, width=20, count=1, dtype="int16", crs=CRS,
            transform=TRANSFORM,
        ) as ds:  # fmt: skip
            ds.write(data[None])
    src = _vrt(tmp_path / "two.vrt", (16, 20), ["b1.tif", "b2.tif"], "Int16", [None, -9999])
    with rasterio.open(src) as ds:
        assert ds.nodatavals == (None, -9999.0)
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet", *keep)
    assert r.code == 0, r.err
    with rasterio.open(out) as b:
        assert b.nodata == -9999 and b.dtypes[0] == ("int16" if keep else "float32")
        masked = b.read(masked=True).mask
        assert not masked[0].any() and masked[1].sum() == 4 * 5 * 2 * 2  # the 4 x 5 hole, x2


@pytest.mark.parametrize("cog", [[], ["--cog"]])
def test_a_crs_without_a_transform_stays_in_pixel_space_with_its_crs(cli, tmp_path, model1, cog):
    # a file declaring a CRS but no transform got GDAL's default transform scaled (origin 0,0, pixels of 0.5 in
    # the CRS): a placement the input never had; it is pixel space, run as stored, as without the CRS
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    data = fbm_surface((10, 14), seed=4).astype("float32")
    outs = []
    for crs in ("EPSG:4326", None):
        src = tmp_path / f"plain_{crs is None}.tif"
        out = tmp_path / f"out_{crs is None}.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(
                src, "w", driver="GTiff", height=10, width=14, count=1, dtype="float32", crs=crs
            ) as ds:  # fmt: skip
                ds.write(data[None])
        r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet", *cog)
        assert r.code == 0, r.err
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(out) as b:
                assert b.transform.is_identity and b.shape == (20, 28)
                assert b.crs == (None if crs is None else rasterio.crs.CRS.from_string(crs))
                outs.append(b.read(1))
    assert np.array_equal(outs[0], outs[1])  # run as stored, with or without the CRS


def test_rpcs_without_a_transform_are_refused_even_with_a_crs(cli, tmp_path, model1):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    src = tmp_path / "scene.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            src, "w", driver="GTiff", height=20, width=24, count=1, dtype="float32", crs="EPSG:4326", rpcs=_rpcs()
        ) as ds:
            ds.write(fbm_surface((20, 24), seed=7)[None])
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet")
    assert_one_line_error(r.err, r.code, "georeferenced by RPCs only", "gdalwarp -rpc")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# An input read from inside an archive: the archive is the input's file (found by a promises audit:
# `-o z.zip --overwrite` replaced the zip the input was read from, and all it held)
# ------------------------------------------------------------------------------------------------


def _archives(tmp_path: Path, make_geotiff: Any) -> dict[str, tuple[str, Path]]:
    import gzip
    import tarfile
    import zipfile

    tif = make_geotiff("b16.tif", fbm_surface((16, 16), seed=2).astype(np.float32))
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.write(tif, "b16.tif")
        z.writestr("README.txt", "other content")
    with tarfile.open(tmp_path / "t.tar", "w") as t:
        t.add(tif, "b16.tif")
    (tmp_path / "g.tif.gz").write_bytes(gzip.compress(tif.read_bytes()))
    return {
        "zip": (f"/vsizip/{tmp_path / 'z.zip'}/b16.tif", tmp_path / "z.zip"),
        "zip, GDAL's double slash": (f"/vsizip//{str(tmp_path / 'z.zip').lstrip('/')}/b16.tif", tmp_path / "z.zip"),
        "zip in braces": (f"/vsizip/{{{tmp_path / 'z.zip'}}}/b16.tif", tmp_path / "z.zip"),
        "tar": (f"/vsitar/{tmp_path / 't.tar'}/b16.tif", tmp_path / "t.tar"),
        "gzip": (f"/vsigzip/{tmp_path / 'g.tif.gz'}", tmp_path / "g.tif.gz"),
    }


@pytest.mark.parametrize("kind", ["zip", "zip, GDAL's double slash", "zip in braces", "tar", "gzip"])
def test_the_archive_an_input_is_read_from_is_never_replaced(cli, tmp_path, make_geotiff, kind):
    name, archive = _archives(tmp_path, make_geotiff)[kind]
    before = archive.read_bytes()
    for extra in ((), ("--overwrite",)):
        result = cli("downscale", name, "--scale", 2, "--model", "backprojection", "-o", archive, *extra)
        assert_one_line_error(result.err, result.code, "is the archive the input", "choose another name with -o")
        assert archive.read_bytes() == before
    good = cli("downscale", name, "--scale", 2, "--model", "backprojection", "-o", tmp_path / "out.tif")
    assert good.code == 0, good.err


def test_a_vrt_of_a_file_in_an_archive_never_replaces_the_archive(cli, tmp_path, make_geotiff):
    name, archive = _archives(tmp_path, make_geotiff)["zip"]
    vrt = tmp_path / "in.vrt"
    with rasterio.open(name) as src:
        from rasterio.shutil import copy as rio_copy

        rio_copy(src, vrt, driver="VRT")
    before = archive.read_bytes()
    result = cli("downscale", vrt, "--scale", 2, "--model", "backprojection", "-o", archive, "--overwrite")
    assert_one_line_error(result.err, result.code, "is the archive the input", str(name))
    assert archive.read_bytes() == before


def test_archive_of_names_the_outermost_file_on_disk(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"zip")
    assert geosr.io.archive_of(f"/vsizip/{tmp_path}/a.zip/dir/x.tif") == tmp_path / "a.zip"
    assert geosr.io.archive_of(str(Path(f"/vsizip//{tmp_path}/a.zip/x.tif"))) == tmp_path / "a.zip"
    assert geosr.io.archive_of(f"{tmp_path}/a.zip") is None  # not a GDAL archive name
    assert geosr.io.archive_of("/vsimem/x.tif") is None and geosr.io.archive_of("/vsizip/missing.zip/x.tif") is None


# ------------------------------------------------------------------------------------------------
# A raster placed only by geolocation arrays (a curvilinear NetCDF through GDAL): GDAL reports no
# transform, GCPs or CRS; the output had no georeferencing at all (found by a promises audit)
# ------------------------------------------------------------------------------------------------


def test_a_raster_placed_only_by_geolocation_arrays_is_refused_before_any_work(cli, tmp_path, monkeypatch):
    import xarray as xr

    ny, nx = 20, 24
    j, i = np.mgrid[0:ny, 0:nx]
    coords = {
        "lat": (("y", "x"), 40 + 0.3 * j + 0.05 * i, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": (("y", "x"), 10 + 0.3 * i - 0.04 * j, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    field = (("y", "x"), fbm_surface((ny, nx), seed=4), {"coordinates": "lat lon", "units": "K"})
    xr.Dataset({"tas": field}, coords=coords).to_netcdf(tmp_path / "curv.nc")
    name = f'NETCDF:"{tmp_path / "curv.nc"}":tas'
    with rasterio.open(name) as src:  # what GDAL makes of it: no placement but the geolocation arrays
        assert src.transform.is_identity and not src.gcps[0] and src.tags(ns="GEOLOCATION")
    _no_stats_pass(monkeypatch)
    result = cli("downscale", name, "--scale", 2, "--model", "backprojection", "-o", tmp_path / "out.tif")
    assert_one_line_error(result.err, result.code, "placed only by geolocation arrays", "gdalwarp -geoloc")
    assert not (tmp_path / "out.tif").exists()


def test_a_bands_nodata_is_missing_beside_an_internal_mask(cli, tmp_path, model1):
    # GDAL masks a band by the file's mask and then ignores its nodata value: -9999 entered the network
    data = fbm_surface((40, 50), seed=6, relief=50.0).astype("float32") + 100
    data[5:10, 5:10] = -9999
    mask = np.full((40, 50), 255, np.uint8)
    mask[20:30, 20:30] = 0
    src = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        profile = dict(driver="GTiff", height=40, width=50, count=1, dtype="float32", crs=CRS, transform=TRANSFORM)
        with rasterio.open(src, "w", nodata=-9999, **profile) as ds:
            ds.write(data, 1)
            ds.write_mask(mask)
    out = tmp_path / "out.tif"
    assert cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet").code == 0
    expected = geosr.downscale(np.where((data == -9999) | (mask == 0), np.nan, data), 2, str(model1), device="cpu")
    with rasterio.open(out) as result:
        got = result.read(1, masked=True).astype(np.float64).filled(np.nan)
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and np.isnan(got).sum() == 4 * (25 + 100)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_an_identity_transform_the_file_stores_is_kept_on_the_fine_grid(cli, tmp_path, model1):
    # pixel space written on purpose (gdal_edit.py -a_ullr 0 0 W H): the output covers the same bounds
    src = tmp_path / "pixels.tif"
    with rasterio.open(
        src, "w", driver="GTiff", height=10, width=14, count=1, dtype="float32", crs=CRS, transform=Affine.identity()
    ) as ds:  # fmt: skip
        ds.write(fbm_surface((10, 14), seed=4).astype("float32")[None])
    with geosr.io.open_raster(src) as ds:
        assert geosr.io.raster_info(ds).georeferenced
    out = tmp_path / "out.tif"
    assert cli("downscale", src, "--scale", 2, "-o", out, "--model", model1, "--quiet").code == 0
    with rasterio.open(out) as result:
        assert result.transform == Affine(0.5, 0, 0, 0, 0.5, 0)
        assert tuple(result.bounds) == (0.0, 10.0, 14.0, 0.0) and result.crs == rasterio.crs.CRS.from_string(CRS)


@pytest.mark.parametrize(("dtype", "nodata"), [("int64", 2**62 + 1), ("uint64", 2**64 - 1), ("int64", 2**63 - 1)])
def test_a_64_bit_nodata_beside_a_mask_is_compared_exactly(tmp_path, dtype, nodata):
    # as a double the nodata is another number (2**62 + 1 reads 2**62) or none (2**64 - 1): the valid cells
    # holding 2**62 were masked and the nodata cells kept. A VRT states the nodata exactly beside a mask band.
    data = np.full((12, 16), 1000, dtype=dtype)
    data[2, 3] = nodata
    data[4, 5] = 2**62
    mask = np.full((12, 16), 255, np.uint8)
    mask[8, 9] = 0
    profile = dict(driver="GTiff", height=12, width=16, count=1, dtype=dtype, crs=CRS, transform=TRANSFORM)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp_path / "big.tif", "w", **profile) as ds:
        ds.write(data, 1)
        ds.write_mask(mask)
    kind = {"int64": "Int64", "uint64": "UInt64"}[dtype]
    source = '<SourceFilename relativeToVRT="1">big.tif</SourceFilename>'
    (tmp_path / "big.vrt").write_text(
        f'<VRTDataset rasterXSize="16" rasterYSize="12"><GeoTransform>500000, 30, 0, 4200000, 0, -30</GeoTransform>'
        f'<VRTRasterBand dataType="{kind}" band="1"><NoDataValue>{nodata}</NoDataValue>'
        f"<SimpleSource>{source}<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        f'<MaskBand><VRTRasterBand dataType="Byte"><SimpleSource>{source}<SourceBand>mask,1</SourceBand>'
        "</SimpleSource></VRTRasterBand></MaskBand></VRTDataset>"
    )
    with geosr.io.open_raster(tmp_path / "big.vrt") as ds:
        read = geosr.io.read_window(ds, geosr.io.Span(0, 12), geosr.io.Span(0, 16))[0]
    assert np.isnan(read[2, 3]) and np.isnan(read[8, 9]) and read[4, 5] == 2.0**62 and np.isnan(read).sum() == 2


# ------------------------------------------------------------------------------------------------
# A VRT of a VRT: GDAL lists a VRT's own sources, not those of a VRT among them, so the raster behind
# both was replaced by its own downscaled copy (-o it --overwrite; found by a QGIS audit)
# ------------------------------------------------------------------------------------------------


def test_the_raster_behind_a_vrt_of_a_vrt_is_never_replaced(cli, tmp_path, make_geotiff):
    from rasterio.shutil import copy as rio_copy

    (tmp_path / "sub").mkdir()
    victim = make_geotiff("sub/victim.tif", np.arange(24 * 20, dtype=np.float32).reshape(24, 20))
    inner, outer = tmp_path / "sub" / "a.vrt", tmp_path / "b.vrt"
    with rasterio.open(victim) as src:
        rio_copy(src, inner, driver="VRT")
    outer.write_text(
        '<VRTDataset rasterXSize="20" rasterYSize="24"><VRTRasterBand dataType="Float32" band="1"><SimpleSource>'
        '<SourceFilename relativeToVRT="1">sub/a.vrt</SourceFilename><SourceBand>1</SourceBand></SimpleSource>'
        "</VRTRasterBand></VRTDataset>"
    )
    with rasterio.open(outer) as nested:
        assert str(victim) not in nested.files  # what GDAL lists
    before = victim.read_bytes()
    result = cli("downscale", outer, "--scale", 2, "--model", "backprojection", "-o", victim, "--overwrite")
    assert_one_line_error(result.err, result.code, "is one of the files GDAL reads for the input")
    assert victim.read_bytes() == before


# ------------------------------------------------------------------------------------------------
# A fourth audit (a GIS analyst's journeys): the default output of a grouped NetCDF4 / HDF5 subdataset
# (NETCDF:"imerg.nc":/Grid/precipitation) was taken for a folder that does not exist; a GeoTIFF of GDAL's
# complex integers (CInt16: SAR) gave a bare TypeError; a NetCDF output on a full disk said only "NetCDF: HDF
# error", and a NetCDF output too large for its folder was not refused before the work
# ------------------------------------------------------------------------------------------------


def test_the_default_output_of_a_grouped_subdataset_goes_beside_its_file(cli, tmp_path, monkeypatch):
    netCDF4 = pytest.importorskip("netCDF4")
    monkeypatch.chdir(tmp_path)
    with netCDF4.Dataset("imerg.nc", "w") as nc:
        grid = nc.createGroup("Grid")
        grid.createDimension("lat", 12)
        grid.createDimension("lon", 16)
        lat = grid.createVariable("lat", "f8", ("lat",))
        lat[:], lat.units = np.linspace(50.05, 51.15, 12), "degrees_north"
        lon = grid.createVariable("lon", "f8", ("lon",))
        lon[:], lon.units = np.linspace(5.05, 6.55, 16), "degrees_east"
        rain = grid.createVariable("precipitation", "f4", ("lat", "lon"), fill_value=-9999.9)
        rain[:] = fbm_surface((12, 16), seed=2, relief=3.0, base=5.0)
    for name in ('NETCDF:"imerg.nc":/Grid/precipitation', 'HDF5:"imerg.nc"://Grid/precipitation'):
        r = cli("downscale", name, "--scale", 2, "--model", "backprojection", "--quiet", "--overwrite")
        assert r.code == 0, r.err
        with rasterio.open(tmp_path / "imerg_precipitation_x2.tif") as out:
            assert out.shape == (24, 32)


def test_a_gdal_name_whose_file_cannot_be_told_asks_for_an_output(cli, tmp_path):
    from geosr.pipeline import default_output

    with pytest.raises(InputError, match="cannot tell which file the GDAL name 'WMS:x' reads"):
        default_output(Path("WMS:x"), 2, None)


def test_complex_integers_are_refused_in_one_line(cli, tmp_path):
    path = tmp_path / "slc.tif"
    with rasterio.open(
        path, "w", driver="GTiff", height=12, width=12, count=1, dtype="complex_int16", crs=CRS, transform=TRANSFORM
    ):
        pass
    for command in (("downscale", path, "--scale", 2, "-o", tmp_path / "o.tif"), ("evaluate", path, "--scale", 2)):
        r = cli(*command, "--model", "backprojection")
        assert_one_line_error(r.err, r.code, "holds complex_int16 values, not real numbers")
    assert not (tmp_path / "o.tif").exists()


def _grid_nc(path: Path) -> Path:
    data = np.stack([fbm_surface((12, 16), seed=i, relief=5.0, base=280.0) for i in range(2)])
    coords = {"time": [0, 1], "lat": 50.0 - 0.5 * np.arange(12), "lon": 5.0 + 0.5 * np.arange(16)}
    xr.Dataset({"tas": (("time", "lat", "lon"), data)}, coords=coords).to_netcdf(path)
    return path


def test_a_netcdf_output_on_a_full_disk_says_so(cli, tmp_path, monkeypatch):
    pytest.importorskip("netCDF4")
    src = _grid_nc(tmp_path / "tas.nc")

    def full(self, path, *args, **kwargs):  # what netCDF4 raises when HDF5 cannot write (seen on a 64 kB tmpfs)
        Path(path).write_bytes(b"CDF")
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    out = tmp_path / "out.nc"
    r = cli("downscale", src, "--variable", "tas", "--scale", 2, "-o", out, "--model", "backprojection", "--quiet")
    assert_one_line_error(r.err, r.code, "could not be written in full", "NetCDF: HDF error", "MB free there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tas.nc"]


def test_a_netcdf_output_too_large_for_its_folder_is_refused_before_the_work(cli, tmp_path, monkeypatch):
    pytest.importorskip("netCDF4")
    src = _grid_nc(tmp_path / "tas.nc")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1, 0, 1))
    monkeypatch.setattr(geosr.io, "write_grid", lambda *a, **k: pytest.fail("the run went on"))
    out = tmp_path / "out.nc"
    r = cli("downscale", src, "--variable", "tas", "--scale", 2, "-o", out, "--model", "backprojection", "--quiet")
    assert_one_line_error(r.err, r.code, "32 x 24 pixels x 2 bands", "cannot fit")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# A packaging and environments audit: without netCDF4 (or zarr) a NetCDF input was "not a netcdf dataset
# xarray can read (... their dependencies may not be installed, see:)" and an output a bare ValueError; a
# GeoTIFF run with --scheduler and no distributed a bare ModuleNotFoundError after the statistics pass; a
# Zarr --overwrite failed for good once its fixed side folder '.NAME.geosr-old' was left behind; a run
# without --overwrite replaced the output another run had written meanwhile, and an output that is a
# dangling link; the training sources gave a traceback without matplotlib
# ------------------------------------------------------------------------------------------------


def _without(monkeypatch, *modules: str) -> None:
    """As if ``modules`` were not installed (xarray finds its backends by find_spec, and caches the list)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else find_spec(name, *a))
    _forget_backends()


def _forget_backends() -> None:
    from xarray.backends.plugins import list_engines
    from xarray.namedarray.utils import module_available

    list_engines.cache_clear()
    module_available.cache_clear()


@pytest.fixture
def engines_after():
    yield
    _forget_backends()  # the backends there are, once the test's find_spec is gone


@pytest.mark.usefixtures("engines_after")
@pytest.mark.parametrize(
    ("missing", "out", "words"),
    [
        (("netCDF4", "h5netcdf"), "o.zarr", ("the input", "is a NetCDF file, which needs the netCDF4 package")),
        (("zarr",), "o.zarr", ("the output", "is a Zarr store, which needs the zarr package")),
        (("netCDF4", "h5netcdf"), "o.nc", ("the input", "which needs the netCDF4 package", "geosr[climate]")),
    ],
)
def test_a_grid_library_not_installed_is_named_with_its_install(cli, tmp_path, monkeypatch, missing, out, words):
    pytest.importorskip("netCDF4")
    src = _grid_nc(tmp_path / "tas.nc")  # NetCDF-4, which scipy cannot read
    _without(monkeypatch, *missing)
    r = cli("downscale", src, "--variable", "tas", "--scale", 2, "--model", "backprojection", "-o", tmp_path / out)
    assert_one_line_error(r.err, r.code, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tas.nc"]


@pytest.mark.usefixtures("engines_after")
def test_a_netcdf3_input_reads_without_netcdf4(cli, tmp_path, monkeypatch):
    pytest.importorskip("zarr")
    src = tmp_path / "n3.nc"
    data = np.stack([fbm_surface((12, 16), seed=i, relief=5.0, base=280.0) for i in range(2)])
    coords = {"time": [0, 1], "lat": 50.0 - 0.5 * np.arange(12), "lon": 5.0 + 0.5 * np.arange(16)}
    xr.Dataset({"tas": (("time", "lat", "lon"), data)}, coords=coords).to_netcdf(src, engine="scipy")
    _without(monkeypatch, "netCDF4", "h5netcdf")
    r = cli("downscale", src, "--variable", "tas", "--scale", 2, "--model", "backprojection", "-o", tmp_path / "o.zarr")
    assert r.code == 0, r.err


def test_scheduler_without_distributed_is_refused_before_any_work(cli, dem_tif, tmp_path, monkeypatch):
    _without(monkeypatch, "distributed")
    _no_stats_pass(monkeypatch)
    r = cli("downscale", dem_tif, "--scale", 2, "-o", tmp_path / "o.tif", "--scheduler", "tcp://127.0.0.1:1")
    assert_one_line_error(r.err, r.code, "--scheduler needs dask.distributed", "pip install distributed")


def test_a_zarr_overwrite_is_not_blocked_by_a_side_folder_left_behind(cli, tmp_path):
    pytest.importorskip("zarr")
    src = _grid_nc(tmp_path / "tas.nc")
    out = tmp_path / "t.zarr"
    command = ("downscale", src, "--variable", "tas", "--model", "backprojection", "-o", out, "--quiet")
    assert cli(*command, "--scale", 2).code == 0
    left = tmp_path / ".t.zarr.geosr-old" / "tas"  # as an interrupted removal of the old store leaves it
    left.mkdir(parents=True)
    (left / "zarr.json").write_text("{}")
    r = cli(*command, "--scale", 3, "--overwrite")
    assert r.code == 0, r.err
    assert xr.open_zarr(out).tas.shape == (2, 36, 48)


@pytest.mark.parametrize("kind", ["file", "store"])
def test_an_output_written_meanwhile_is_never_replaced_without_overwrite(tmp_path, kind):
    from geosr.errors import OutputExistsError

    new, dst = tmp_path / "new", tmp_path / "out"
    if kind == "file":
        new.write_bytes(b"this run's")
        dst.write_bytes(b"another run's")
    else:
        (new / "a").mkdir(parents=True)
        (dst / "b").mkdir(parents=True)
    with pytest.raises(OutputExistsError, match="appeared while this run was writing it"):
        geosr.io._publish(new, dst, overwrite=False)
    assert (dst.read_bytes() == b"another run's") if kind == "file" else (dst / "b").is_dir()
    geosr.io._publish(new, dst, overwrite=True)
    assert (dst.read_bytes() == b"this run's") if kind == "file" else (dst / "a").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    geosr.io._publish(_fresh(tmp_path / "again", kind), tmp_path / "elsewhere", overwrite=False)
    assert (tmp_path / "elsewhere").exists() and not (tmp_path / "again").exists()


def _fresh(path: Path, kind: str) -> Path:
    if kind == "file":
        path.write_bytes(b"x")
    else:
        path.mkdir()
    return path


def test_an_output_that_is_a_dangling_link_needs_overwrite(cli, dem_tif, tmp_path):
    out = tmp_path / "out.tif"
    out.symlink_to(tmp_path / "gone.tif")
    r = cli("downscale", dem_tif, "--scale", 2, "--model", "backprojection", "-o", out)
    assert_one_line_error(r.err, r.code, "already exists; pass --overwrite")
    assert out.is_symlink()


def test_the_training_sources_say_what_to_install_without_matplotlib(monkeypatch):
    import sys

    from geosr.training import sources

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.cbook", None)
    with pytest.raises(SystemExit, match="install it with `pip install matplotlib`"):
        sources.jacksboro()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_grid_output_gets_the_mode_of_a_new_file(cli, tmp_path, overwrite):
    # published without --overwrite, a NetCDF output kept mkstemp's private mode (0600)
    pytest.importorskip("netCDF4")
    src = _grid_nc(tmp_path / "tas.nc")
    out = tmp_path / "out.nc"
    r = cli("downscale", src, "--variable", "tas", "--scale", 2, "--model", "backprojection", "-o", out, *overwrite)
    assert r.code == 0, r.err
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_zarr_store_behind_a_link_is_replaced_with_overwrite(cli, tmp_path):
    # its link was renamed onto an empty folder, which fails (EISDIR), after all the work
    pytest.importorskip("zarr")
    src = _grid_nc(tmp_path / "tas.nc")
    command = ("downscale", src, "--variable", "tas", "--model", "backprojection", "--quiet")
    assert cli(*command, "--scale", 2, "-o", tmp_path / "real.zarr").code == 0
    (tmp_path / "link.zarr").symlink_to(tmp_path / "real.zarr")
    r = cli(*command, "--scale", 3, "-o", tmp_path / "link.zarr", "--overwrite")
    assert r.code == 0, r.err
    assert xr.open_zarr(tmp_path / "link.zarr").tas.shape == (2, 36, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.zarr", "real.zarr", "tas.nc"]


# ------------------------------------------------------------------------------------------------
# A bad-input sweep: Python calls failed with bare library errors (scale '2', nodata 'x', batch_size None,
# tile_size 'abc' on dask, a list as data, progress=5, y_dim = x_dim), and empty values were taken as
# absent with exit code 0 (evaluate --model '', train --bands '', models '', train --name ''), or ignored
# (evaluate --no-model --device cuda)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda a, da: geosr.downscale(a, 2, "backprojection", nodata="x"), "nodata must be a number, got 'x'"),
        (lambda a, da: geosr.downscale(a, 2, "backprojection", nodata=[1, 2]), "nodata must be a number"),
        (lambda a, da: geosr.downscale(a, 2, "backprojection", batch_size=None), "batch size must be a whole number"),
        (lambda a, da: geosr.downscale(da.from_array(a), 2, "backprojection", tile_size="abc"), "tile size must be"),
        (lambda a, da: geosr.downscale(a.tolist(), 2, "backprojection"), "data must be a NumPy or dask array"),
        (lambda a, da: geosr.downscale(a, 2, "backprojection", progress=5), "progress must be a function"),
        (
            lambda a, da: xr.DataArray(
                a, dims=("lat", "lon"), coords={"lat": np.arange(12.0), "lon": np.arange(14.0)}
            ).geosr.downscale(2, model="backprojection", y_dim="lon"),
            "y and x name the same dimension 'lon'",
        ),
    ],
)
def test_bad_python_arguments_are_geosr_errors(call, words):
    import dask.array as da

    a = fbm_surface((12, 14), seed=1).astype(np.float32)
    with pytest.raises(geosr.errors.GeosrError, match=words):
        call(a, da)


@pytest.mark.parametrize(
    ("tile_size", "words"),
    [("big", "tile size must be a positive number"), ((3, 40), "GeoTIFF is written in square tiles")],
)
def test_downscale_raster_is_public_and_refuses_a_bad_tile_size_in_one_line(make_geotiff, tmp_path, tile_size, words):
    # the error of geosr.downscale for a path names geosr.downscale_raster, which was only geosr.pipeline's;
    # and its tile_size 'big' or (3, 40) raised bare ValueError and TypeError (a fuzzing audit)
    from geosr.pipeline import downscale_raster

    assert geosr.downscale_raster is downscale_raster and "downscale_raster" in geosr.__all__
    with pytest.raises(geosr.errors.InputError, match="geosr.downscale_raster"):
        geosr.downscale("dem.tif", 2)
    src = make_geotiff("dem.tif", fbm_surface((13, 17), seed=1))
    with pytest.raises(geosr.errors.InputError, match=re.escape(words)):
        geosr.downscale_raster(src, tmp_path / "out.tif", scale=2, model="backprojection", tile_size=tile_size)
    assert not (tmp_path / "out.tif").exists()


def test_a_scale_given_as_text_is_read_as_the_command_line_reads_it():
    a = fbm_surface((12, 14), seed=1).astype(np.float32)
    grid = xr.Dataset(
        {"t": xr.DataArray(a, dims=("lat", "lon"), coords={"lat": np.arange(12.0), "lon": np.arange(14.0)})}
    )
    np.testing.assert_array_equal(geosr.downscale(a, "2", "backprojection"), geosr.downscale(a, 2, "backprojection"))
    assert grid.geosr.downscale("2", model="backprojection").t.shape == (24, 28)


def test_empty_values_are_refused_not_taken_as_absent(cli, dem_tif, tmp_path):
    r = cli("evaluate", dem_tif, "--scale", 2, "--model", "")
    assert_one_line_error(r.err, r.code, "unknown model ''")
    r = cli("models", "")
    assert_one_line_error(r.err, r.code, "unknown model ''")
    r = cli("evaluate", dem_tif, "--scale", 2, "--no-model", "--device", "cuda")
    assert_one_line_error(r.err, r.code, "drop --device")
    for option, value, words in (("--bands", "", "--bands"), ("--name", "", "--name"), ("--name", "a\nb", "--name")):
        r = cli("train", dem_tif, "-o", tmp_path / "m.safetensors", option, value, "--epochs", "1")
        assert_one_line_error(r.err, r.code, words)
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(("option", "value"), [("--scales", "2,,3"), ("--scales", "2,3,"), ("--bands", ",1")])
def test_a_list_with_an_empty_entry_is_refused_not_read_without_it(cli, dem_tif, tmp_path, option, value):
    # '2,,3' is a value left out by a slip: it was read as 2,3 and trained those scales
    r = cli("train", dem_tif, "-o", tmp_path / "m.safetensors", option, value, "--epochs", "1")
    assert_one_line_error(r.err, r.code, f"{option} has an empty entry in '{value}'")
    assert not (tmp_path / "m.safetensors").exists()
    r = cli("evaluate", dem_tif, "--scale", 2, "--no-model", "--bands", "1,")
    assert_one_line_error(r.err, r.code, "--bands has an empty entry in '1,'")


@pytest.mark.parametrize(("resolution", "free"), [(1e-300, 10**15), (1e-3, 1)])
def test_output_too_large_under_resolution_names_the_resolution(
    cli, make_geotiff, model1, tmp_path, monkeypatch, resolution, free
):
    # the user gave no scale: the advice says which way to move the resolution too
    src = make_geotiff("dem.tif", fbm_surface((13, 17), seed=1))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(free, 0, free))
    out = tmp_path / "out.tif"
    r = cli("downscale", src, "--resolution", resolution, "-o", out, "--model", model1, "--quiet")
    assert_one_line_error(r.err, r.code, "choose a smaller scale (a coarser resolution)")
    assert not out.exists()


def test_evaluate_refuses_an_unavailable_device_before_reading_the_raster(cli, tmp_path):
    # it was refused only after every classical method had run (7 s on a 1500 x 1500 raster)
    result = cli("evaluate", tmp_path / "missing.tif", "--scale", 2, "--device", "cuda")
    assert_one_line_error(result.err, result.code, "no CUDA GPU is available")
