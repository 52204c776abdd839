"""An output named as GDAL's side file of another raster (``-o dem.tif.ovr``) is refused (promise 8).

GDAL opens ``NAME.ovr`` (any case) as the overviews of ``NAME``, ``NAME.msk`` as its mask, ``NAME.aux`` and
``NAME.aux.xml`` as its metadata: a GeoTIFF written under such a name would attach itself to the input (or
another raster of the folder), which GDAL and QGIS would then draw from the wrong pixels.
"""

from __future__ import annotations

import pytest
import rasterio
from conftest import assert_one_line_error

from geosr.errors import InputError
from geosr.pipeline import downscale_raster

SIDE_NAMES = ["dem.tif.ovr", "dem.TIF.OVR", "dem.tif.msk", "dem.msk", "dem.tif.aux.xml", "dem.aux", "dem.tif.AUX"]


@pytest.mark.parametrize("name", SIDE_NAMES)
def test_an_output_named_as_a_side_file_of_the_input_is_refused_and_nothing_written(cli, dem_tif, model1, name):
    dst = dem_tif.parent / name
    assert dem_tif.name == "dem.tif"
    before = sorted(p.name for p in dem_tif.parent.iterdir())
    result = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", dst)
    assert result.code == 2  # wrong as typed: a usage error
    assert_one_line_error(result.err, 2, name, "side file", "-o ")
    assert sorted(p.name for p in dem_tif.parent.iterdir()) == before
    with rasterio.open(dem_tif) as src:
        assert src.overviews(1) == []  # the input still has no overviews


@pytest.mark.parametrize("name", ["dem.tif.ovr", "dem.msk"])
def test_the_python_door_refuses_a_side_file_name_too(dem_tif, model1, name):
    with pytest.raises(InputError, match="side file"):
        downscale_raster(dem_tif, dem_tif.parent / name, scale=2, model=model1, device="cpu")
    assert not (dem_tif.parent / name).exists()


@pytest.mark.parametrize("name", ["dem_x2.tif", "dem.ovr.tif", "ovr.tif", "dem.aux.tif"])
def test_names_that_only_contain_a_side_suffix_are_written(cli, dem_tif, model1, name):
    dst = dem_tif.parent / name
    result = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", dst, "--device", "cpu")
    assert result.code == 0, result.err
    with rasterio.open(dst) as out:
        assert out.width == 2 * rasterio.open(dem_tif).width
