"""``geosr:downscale`` as a GIS analyst drives it, from an audit (2026-12-08): values that QGIS reads
quietly as something else (CALIBRATE=false ran calibrated, a MODEL given twice ran ``dem``, a data-defined
SCALE of text ran at 0), a layer QGIS could not open, and a layer whose QGIS settings (no-data, Set Layer CRS)
differ from its file's, which were ignored without a word."""

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
from qgis.core import (  # noqa: E402
    QgsCoordinateReferenceSystem,
    QgsProcessingException,
    QgsProperty,
    QgsRasterLayer,
    QgsRasterRange,
)


def write_raster(path: Path, srs: str | None = "EPSG:32633", nodata: float | None = -9999) -> Path:
    """A 40 x 40 float32 GeoTIFF, 30 m pixels, in ``srs`` (a WKT or EPSG code; None: none), nodata in a corner."""
    from osgeo import gdal, osr

    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 40, 40, 1, gdal.GDT_Float32)
    dataset.SetGeoTransform((500_000.0, 30.0, 0.0, 4_200_000.0, 0.0, -30.0))
    if srs is not None and srs.startswith("EPSG:"):
        crs = osr.SpatialReference()
        crs.ImportFromEPSG(int(srs[5:]))
        dataset.SetProjection(crs.ExportToWkt())
    elif srs is not None:
        dataset.SetProjection(srs)
    rows, cols = np.mgrid[0:40, 0:40]
    values = (rows * 10.0 + cols * 3.0 + np.sin(rows * cols) * 5).astype(np.float32)
    band = dataset.GetRasterBand(1)
    if nodata is not None:
        values[:3, :3] = nodata
        band.SetNoDataValue(nodata)
    band.WriteArray(values)
    dataset = None  # closing writes the file
    return path


def run(processing, tiny_model: Path, feedback=None, **parameters) -> dict:
    base = {"SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu", "TILE_SIZE": 64}
    return processing.run("geosr:downscale", {**base, **parameters}, feedback=feedback)


@pytest.fixture
def captured(processing, monkeypatch):
    """The jobs the tool hands to geosr, which does not run."""
    from geosr_processing import algorithm

    jobs: list = []
    monkeypatch.setattr(algorithm, "run", lambda job, feedback, executable: jobs.append(job))
    return jobs


@pytest.mark.parametrize("false", [False, "false", "FALSE"])
def test_calibrate_false_is_off_and_conserve_false_is_as_the_model_says(processing, captured, tmp_path, false):
    dem = write_raster(tmp_path / "dem.tif")
    run(processing, Path("m.safetensors"), INPUT=str(dem), OUTPUT=str(tmp_path / "a.tif"), CALIBRATE=false)
    run(processing, Path("m.safetensors"), INPUT=str(dem), OUTPUT=str(tmp_path / "b.tif"), CONSERVE=false)
    run(processing, Path("m.safetensors"), INPUT=str(dem), OUTPUT=str(tmp_path / "c.tif"), CALIBRATE=True)
    assert captured[0].calibrate is False  # it was None: as the model says, on for both shipped models
    assert captured[1].conserve is None  # the Conserve box of earlier versions: unticked, as the model says
    assert captured[2].calibrate is True


@pytest.mark.parametrize("name", ["MODEL", "SCALE"])
def test_a_value_given_twice_is_refused(processing, tiny_model, tmp_path, name):
    # qgis_process MODEL=a MODEL=b passes a list, which QGIS read as "" (the default model, dem) or 0
    values = {"MODEL": [str(tiny_model), "climate"], "SCALE": [2, 3]}[name]
    dem = write_raster(tmp_path / "dem.tif")
    with pytest.raises(QgsProcessingException, match=f"{name} takes one value, got"):
        run(processing, tiny_model, INPUT=str(dem), OUTPUT=str(tmp_path / "out.tif"), **{name: values})
    assert not (tmp_path / "out.tif").exists()


def test_a_data_defined_scale_that_is_not_a_number_is_refused_naming_scale(processing, tiny_model, tmp_path):
    dem = write_raster(tmp_path / "dem.tif")
    scale = QgsProperty.fromExpression("'abc'")
    with pytest.raises(QgsProcessingException, match="SCALE must be a number .* got 'abc'"):
        run(processing, tiny_model, INPUT=str(dem), OUTPUT=str(tmp_path / "out.tif"), SCALE=scale)
    doubled = QgsProperty.fromExpression("1 + 2")
    run(processing, tiny_model, INPUT=str(dem), OUTPUT=str(tmp_path / "x3.tif"), SCALE=doubled)
    assert QgsRasterLayer(str(tmp_path / "x3.tif"), "x3", "gdal").width() == 120


def test_a_layer_qgis_could_not_open_is_refused_in_qgis_words(processing, tiny_model, tmp_path):
    layer = QgsRasterLayer(str(tmp_path / "missing.tif"), "missing", "gdal")
    assert not layer.isValid()
    with pytest.raises(QgsProcessingException, match="is not a layer QGIS could open") as error:
        run(processing, tiny_model, INPUT=layer, OUTPUT=str(tmp_path / "out.tif"))
    assert "--variable" not in str(error.value)


def test_the_layers_own_nodata_settings_are_warned_about(processing, tiny_model, tmp_path, warnings_feedback):
    dem = write_raster(tmp_path / "dem.tif")
    layer = QgsRasterLayer(str(dem), "dem", "gdal")
    feedback = warnings_feedback
    run(processing, tiny_model, feedback, INPUT=layer, OUTPUT=str(tmp_path / "plain.tif"))
    assert not [w for w in feedback.warnings if "no-data" in w]
    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(0, 150)])
    run(processing, tiny_model, feedback, INPUT=layer, OUTPUT=str(tmp_path / "user.tif"))
    assert [w for w in feedback.warnings if "own no-data settings in QGIS (band 1" in w and "gdal_edit.py" in w]


def test_set_layer_crs_replaces_gdals_unnamed_local_crs_and_a_differing_one_is_warned_about(
    processing, tiny_model, tmp_path, warnings_feedback
):
    unnamed = 'LOCAL_CS["unnamed",UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    local = write_raster(tmp_path / "local.tif", srs=unnamed)
    layer = QgsRasterLayer(str(local), "local", "gdal")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32633"))
    run(processing, tiny_model, INPUT=layer, OUTPUT=str(tmp_path / "local_x2.tif"))
    assert QgsRasterLayer(str(tmp_path / "local_x2.tif"), "x2", "gdal").crs().authid() == "EPSG:32633"  # was unnamed
    # a file with a CRS of its own keeps it, with a warning when the layer's differs
    utm = QgsRasterLayer(str(write_raster(tmp_path / "utm.tif")), "utm", "gdal")
    feedback = warnings_feedback
    run(processing, tiny_model, feedback, INPUT=utm, OUTPUT=str(tmp_path / "same.tif"))
    assert not [w for w in feedback.warnings if "CRS" in w]
    utm.setCrs(QgsCoordinateReferenceSystem.fromProj("+proj=utm +zone=33 +datum=WGS84 +units=m +no_defs"))
    run(processing, tiny_model, feedback, INPUT=utm, OUTPUT=str(tmp_path / "spelled.tif"))
    assert not [w for w in feedback.warnings if "CRS" in w]  # the same CRS spelled otherwise: no warning
    geographic = QgsRasterLayer(str(write_raster(tmp_path / "wgs84.tif", srs="EPSG:4326")), "wgs84", "gdal")
    geographic.setCrs(QgsCoordinateReferenceSystem("OGC:CRS84"))  # the same, longitude first
    run(processing, tiny_model, feedback, INPUT=geographic, OUTPUT=str(tmp_path / "crs84.tif"))
    assert not [w for w in feedback.warnings if "CRS" in w]
    utm.setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    run(processing, tiny_model, feedback, INPUT=utm, OUTPUT=str(tmp_path / "kept.tif"))
    assert QgsRasterLayer(str(tmp_path / "kept.tif"), "kept", "gdal").crs().authid() == "EPSG:32633"
    assert [w for w in feedback.warnings if "the layer's CRS (EPSG:3857) is not its file's (EPSG:32633)" in w]


def test_named_metadata_domains_come_through_a_layer_opened_with_open_options(processing, tiny_model, tmp_path):
    # the plugin reads such a layer through a VRT, which gdal.Translate made with the default domain only
    from osgeo import gdal

    dem = write_raster(tmp_path / "dem.tif")
    dataset = gdal.Open(str(dem), gdal.GA_Update)
    dataset.SetMetadata({"FOO": "bar"}, "MYDOMAIN")
    dataset.GetRasterBand(1).SetMetadata({"SENSOR": "lidar"}, "BANDDOMAIN")
    dataset = None
    layer = QgsRasterLayer(f"{dem}|option:NUM_THREADS=2", "dem", "gdal")
    for name, given in (("plain.tif", str(dem)), ("optioned.tif", layer)):
        run(processing, tiny_model, INPUT=given, OUTPUT=str(tmp_path / name))
        out = gdal.Open(str(tmp_path / name))
        assert out.GetMetadata("MYDOMAIN") == {"FOO": "bar"}, name
        assert out.GetRasterBand(1).GetMetadata("BANDDOMAIN") == {"SENSOR": "lidar"}, name
