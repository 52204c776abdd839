"""``geosr:downscale`` on layers as QGIS names them: GDAL open options in the layer source
(``path|option:KEY=VALUE``), a CRS set in QGIS, bands typed and checked as ``geosr --bands`` does,
and an output that would replace a file the input is read from."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["plugin_fixtures"]
pytest.importorskip(
    "qgis.core",
    reason="QGIS's Python bindings are not importable here: run `make test-qgis` (Debian: apt-get install "
    "python3-qgis qgis-providers qgis)",
)
import numpy as np  # noqa: E402  (QGIS's Python has numpy when it has QGIS)
from qgis.core import QgsProcessingException, QgsRasterLayer  # noqa: E402


def write_raster(path: Path, bands: int = 1, size: int = 40) -> Path:
    """A float32 GeoTIFF (UTM 33N, 30 m pixels, nodata -9999 in one corner) with described bands."""
    from osgeo import gdal, osr

    dataset = gdal.GetDriverByName("GTiff").Create(str(path), size, size, bands, gdal.GDT_Float32)
    dataset.SetGeoTransform((500_000.0, 30.0, 0.0, 4_200_000.0, 0.0, -30.0))
    crs = osr.SpatialReference()
    crs.ImportFromEPSG(32633)
    dataset.SetProjection(crs.ExportToWkt())
    rows, cols = np.mgrid[0:size, 0:size]
    for i in range(bands):
        values = (rows * 10.0 + cols * 3.0 + np.sin(rows * cols + i) * 5 + 100 * i).astype(np.float32)
        values[:3, :3] = -9999
        band = dataset.GetRasterBand(i + 1)
        band.WriteArray(values)
        band.SetNoDataValue(-9999)
        band.SetDescription(f"band {i + 1}")
    dataset = None  # closing writes the file
    return path


def read(path: Path) -> tuple[tuple[int, int, int], tuple[float, ...], list[str], np.ndarray]:
    from osgeo import gdal

    dataset = gdal.Open(str(path))
    assert dataset is not None, path
    descriptions = [dataset.GetRasterBand(i + 1).GetDescription() for i in range(dataset.RasterCount)]
    size = (dataset.RasterXSize, dataset.RasterYSize, dataset.RasterCount)
    return size, dataset.GetGeoTransform(), descriptions, dataset.ReadAsArray()


def run(processing, tiny_model: Path, **parameters) -> dict:
    return processing.run(
        "geosr:downscale", {"SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu", "TILE_SIZE": 64, **parameters}
    )


@pytest.mark.parametrize("bands", [None, [3, 1]], ids=["all bands", "bands 3;1"])
def test_a_layer_opened_with_gdal_open_options_is_downscaled(processing, tiny_model, tmp_path, bands):
    """QGIS keeps a raster's GDAL open options in its source (``dem.tif|option:NUM_THREADS=2``), a name
    neither GDAL nor geosr opens: the layer must run as it reads in QGIS, not fail as a missing file."""
    dem = write_raster(tmp_path / "dem.tif", bands=3)
    layer = QgsRasterLayer(f"{dem}|option:NUM_THREADS=2|option:GEOREF_SOURCES=INTERNAL", "dem", "gdal")
    assert layer.isValid() and "|option:" in layer.source()
    extra = {"BANDS": bands} if bands else {}
    plain, optioned = tmp_path / "plain.tif", tmp_path / "optioned.tif"
    run(processing, tiny_model, INPUT=str(dem), OUTPUT=str(plain), **extra)
    assert run(processing, tiny_model, INPUT=layer, OUTPUT=str(optioned), **extra)["OUTPUT"] == str(optioned)
    expected, got = read(plain), read(optioned)
    assert got[:3] == expected[:3]
    assert got[0] == (80, 80, len(bands or [1, 2, 3])) and got[1] == (500_000.0, 15.0, 0.0, 4_200_000.0, 0.0, -15.0)
    np.testing.assert_array_equal(got[3], expected[3])


def test_bands_are_taken_separated_by_commas_as_geosr_takes_them(processing, tiny_model, tmp_path):
    """``BANDS=3,1`` (geosr's ``--bands 3,1``) selects bands 3 and 1, as ``BANDS=3;1`` does; QGIS alone
    reads it as band 0 and the user is told 'there is no band 0'."""
    dem = write_raster(tmp_path / "dem.tif", bands=3)
    semicolons, commas = tmp_path / "semicolons.tif", tmp_path / "commas.tif"
    run(processing, tiny_model, INPUT=str(dem), BANDS="3;1", OUTPUT=str(semicolons))
    run(processing, tiny_model, INPUT=str(dem), BANDS="3, 1", OUTPUT=str(commas))
    assert read(commas)[2] == ["band 3", "band 1"]
    np.testing.assert_array_equal(read(commas)[3], read(semicolons)[3])
    with pytest.raises(QgsProcessingException, match=r"BANDS must be band numbers separated by ';' .*'a;1'"):
        run(processing, tiny_model, INPUT=str(dem), BANDS="a;1", OUTPUT=str(tmp_path / "never.tif"))
    assert not (tmp_path / "never.tif").exists()


def _vrt_of(source: Path, path: Path) -> str:
    from osgeo import gdal

    gdal.Translate(str(path), str(source), format="VRT")
    return str(path)


def _vrt_of_vrt(source: Path, folder: Path) -> str:
    from osgeo import gdal

    inner = _vrt_of(source, folder / "a.vrt")
    gdal.BuildVRT(str(folder / "b.vrt"), [inner]).FlushCache()  # its source: a.vrt, not the file behind it
    assert str(source) not in gdal.Open(str(folder / "b.vrt")).GetFileList()
    return str(folder / "b.vrt")


# how the input is given, from the file ``dem.tif`` that is also the output
INPUTS_READING_THE_OUTPUT = {
    "a band subset": lambda dem, tmp: {"INPUT": str(dem), "BANDS": [2, 1]},
    # as a source string: a QgsRasterLayer kept alive by the exception's traceback outlives QGIS and crashes
    "open options": lambda dem, tmp: {"INPUT": f"{dem}|option:NUM_THREADS=2"},
    "a VRT of it": lambda dem, tmp: {"INPUT": _vrt_of(dem, tmp / "dem.vrt")},
    # GDAL lists a VRT's sources, not those of a VRT among them: the file behind two VRTs was replaced
    "a VRT of a VRT of it": lambda dem, tmp: {"INPUT": _vrt_of_vrt(dem, tmp)},
    "the file itself": lambda dem, tmp: {"INPUT": str(dem)},
}


@pytest.mark.parametrize("given", INPUTS_READING_THE_OUTPUT.values(), ids=INPUTS_READING_THE_OUTPUT.keys())
def test_an_output_that_would_replace_the_input_is_refused(processing, tiny_model, tmp_path, given):
    """Processing replaces an existing output, but never the file the input is read from: geosr refuses
    its own input by name, which it cannot see behind the VRT the tool makes (band subsets, open
    options) or the user gives; the user's raster was silently replaced by its downscaled bands."""
    dem = write_raster(tmp_path / "dem.tif", bands=2)
    before = dem.read_bytes()
    with pytest.raises(QgsProcessingException) as error:
        run(processing, tiny_model, **given(dem, tmp_path), OUTPUT=str(dem))
    message = str(error.value)
    assert "would replace" in message and "choose another Downscaled raster (OUTPUT)" in message, message
    assert "\n" not in message.strip()
    assert dem.read_bytes() == before
    assert not list(tmp_path.glob(".dem.tif.*"))


def test_a_crs_given_in_qgis_to_a_file_without_one_is_kept(processing, tiny_model, tmp_path):
    """A raster whose file has no CRS (an ASCII grid without .prj) gets one in QGIS (Set CRS, or the
    project's): the output must be in the CRS the layer has, as the promise 'same CRS as the input' reads
    in QGIS, not come out without any."""
    from osgeo import gdal
    from qgis.core import QgsCoordinateReferenceSystem

    grid = tmp_path / "dem.asc"
    gdal.Translate(str(grid), str(write_raster(tmp_path / "dem.tif")), format="AAIGrid")
    grid.with_suffix(".prj").unlink(missing_ok=True)
    assert gdal.Open(str(grid)).GetSpatialRef() is None
    layer = QgsRasterLayer(str(grid), "dem", "gdal")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    out = tmp_path / "fine.tif"
    run(processing, tiny_model, INPUT=layer, OUTPUT=str(out))
    fine = QgsRasterLayer(str(out), "fine", "gdal")
    assert fine.crs().authid() == "EPSG:32633"
    assert fine.extent() == layer.extent() and read(out)[1] == (500_000.0, 15.0, 0.0, 4_200_000.0, 0.0, -15.0)
    # a file that has a CRS keeps its own
    run(processing, tiny_model, INPUT=str(tmp_path / "dem.tif"), OUTPUT=str(tmp_path / "tif.tif"))
    assert QgsRasterLayer(str(tmp_path / "tif.tif"), "tif", "gdal").crs().authid() == "EPSG:32633"


def test_bands_are_checked_against_a_multiband_models_bands_as_the_cli_does(processing, geosr_executable, tmp_path):
    """A 3-band model whose card names its bands: Bands that pick other bands are refused as by
    ``geosr downscale --bands``, with the Bands that are right in the input's own numbering (through a
    VRT of the chosen bands, geosr saw only those: it ran a wrong choice, or advised the wrong bands)."""
    import subprocess

    model = tmp_path / "three.safetensors"
    code = f"from geosr.testing import random_model; random_model({str(model)!r}, in_channels=3)"
    subprocess.run([str(geosr_executable.with_name("python")), "-c", code], check=True, timeout=300)
    from osgeo import gdal

    raster = write_raster(tmp_path / "four.tif", bands=4)
    dataset = gdal.Open(str(raster), gdal.GA_Update)
    for i, name in enumerate(["extra", "band1", "band2", "band3"], 1):  # the card's names: band1, band2, band3
        dataset.GetRasterBand(i).SetDescription(name)
    dataset = None
    common = {"INPUT": str(raster), "MODEL": str(model)}
    for bands in ("1;2;3", "4;2;3"):
        with pytest.raises(QgsProcessingException) as error:
            run(processing, model, **common, BANDS=bands, OUTPUT=str(tmp_path / "wrong.tif"))
        message = str(error.value)
        assert "set the Bands (BANDS) to 2;3;4" in message and str(raster) in message, message
    assert not (tmp_path / "wrong.tif").exists()
    out = tmp_path / "right.tif"
    run(processing, model, **common, BANDS="2;3;4", OUTPUT=str(out))
    assert read(out)[2] == ["band1", "band2", "band3"]
