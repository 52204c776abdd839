"""``geosr:downscale`` in a real, headless QGIS: processing.run end to end, same result as the CLI,
band subsets, cancel, clear errors for bad parameters, and ``qgis_process``."""

from __future__ import annotations

import configparser
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["plugin_fixtures"]
pytest.importorskip(
    "qgis.core",
    reason="QGIS's Python bindings are not importable here: run `make test-qgis` (Debian: apt-get install "
    "python3-qgis qgis-providers qgis)",
)
import numpy as np  # noqa: E402  (QGIS's Python has numpy when it has QGIS)
from geosr_processing import runner  # noqa: E402
from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)

PARAMETERS = [
    "INPUT",
    "BANDS",
    "SCALE",
    "RESOLUTION",
    "MODEL",
    "DEVICE",
    "TILE_SIZE",
    "CONSERVE",
    "ENSEMBLE",
    "CALIBRATE",
    "OUTPUT",
    # added later, after OUTPUT: the parameters above keep their order
    "PRECISION",
    "BATCH_SIZE",
    "COG",
    "KEEP_DTYPE",
]


def read_raster(path: Path) -> dict[str, Any]:
    """Size, geotransform, CRS, nodata, band descriptions and values of a raster, read with GDAL."""
    from osgeo import gdal

    dataset = gdal.Open(str(path))
    assert dataset is not None, path
    bands = [dataset.GetRasterBand(i + 1) for i in range(dataset.RasterCount)]
    return {
        "size": (dataset.RasterXSize, dataset.RasterYSize, dataset.RasterCount),
        "transform": dataset.GetGeoTransform(),
        "crs": dataset.GetSpatialRef().ExportToWkt(),
        "nodata": [band.GetNoDataValue() for band in bands],
        "descriptions": [band.GetDescription() for band in bands],
        "values": dataset.ReadAsArray(),
    }


def corners(layer: QgsRasterLayer) -> list[float]:
    extent = layer.extent()
    return [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]


def assert_same_raster(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert {k: v for k, v in a.items() if k != "values"} == {k: v for k, v in b.items() if k != "values"}
    np.testing.assert_array_equal(a["values"], b["values"])


def write_bands(path: Path, values: np.ndarray, descriptions: list[str]) -> Path:
    """A float32 GeoTIFF of ``values`` (band, y, x) in UTM 33N with 30 m pixels and band descriptions."""
    from osgeo import gdal, osr

    dataset = gdal.GetDriverByName("GTiff").Create(
        str(path), values.shape[2], values.shape[1], values.shape[0], gdal.GDT_Float32
    )
    dataset.SetGeoTransform((500_000.0, 30.0, 0.0, 4_200_000.0, 0.0, -30.0))
    crs = osr.SpatialReference()
    crs.ImportFromEPSG(32633)
    dataset.SetProjection(crs.ExportToWkt())
    for i, description in enumerate(descriptions):
        band = dataset.GetRasterBand(i + 1)
        band.WriteArray(values[i])
        band.SetDescription(description)
    dataset = None  # closing writes the file
    return path


def test_plugin_registers_provider_and_algorithm(processing, plugin_folder):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("geosr")
    assert provider is not None and not provider.icon().isNull()
    algorithm = registry.algorithmById("geosr:downscale")
    assert algorithm is not None and algorithm.provider() is provider
    assert [p.name() for p in algorithm.parameterDefinitions()] == PARAMETERS
    assert algorithm.canExecute() == (True, "")
    assert "GEOSR_EXECUTABLE" in algorithm.shortHelpString() and "Cancel" in algorithm.shortHelpString()
    metadata = configparser.ConfigParser()
    metadata.read(plugin_folder / "geosr_processing" / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    for field in ("name", "description", "about", "version", "author", "email", "icon"):
        assert general[field], field
    assert general["qgisMinimumVersion"] == "3.22" and general["hasProcessingProvider"] == "yes"
    assert general["supportsQt6"] == "True"
    assert (plugin_folder / "geosr_processing" / general["icon"]).is_file()


def test_downscale_the_bundled_dem(processing, jacksboro, tiny_model, tmp_path):
    feedback = QgsProcessingFeedback()
    progress: list[float] = []
    feedback.progressChanged.connect(progress.append)
    out = tmp_path / "jacksboro_x2.tif"
    parameters = {"INPUT": str(jacksboro), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu", "OUTPUT": str(out)}
    result = processing.run("geosr:downscale", parameters, feedback=feedback)
    assert result["OUTPUT"] == str(out)
    layer, source = QgsRasterLayer(str(out), "out"), QgsRasterLayer(str(jacksboro), "in")
    assert layer.isValid()
    assert (layer.width(), layer.height(), layer.bandCount()) == (806, 688, 1)
    assert layer.crs().authid() == source.crs().authid() == "EPSG:4326"
    assert corners(layer) == pytest.approx(corners(source), abs=1e-9)
    assert layer.rasterUnitsPerPixelX() == pytest.approx(source.rasterUnitsPerPixelX() / 2)
    assert progress[-1] == 100


@pytest.mark.parametrize(
    ("options", "cli_options"),
    [
        ({"SCALE": 2.5}, ["--scale", "2.5"]),
        (
            {"RESOLUTION": 1 / 2400, "CONSERVE": True, "TILE_SIZE": 300},
            ["--resolution", repr(1 / 2400), "--conserve", "--tile-size", "300"],
        ),
        ({"SCALE": 2, "ENSEMBLE": "4", "TILE_SIZE": 200}, ["--scale", "2", "--ensemble", "4", "--tile-size", "200"]),
        ({"SCALE": "2", "ENSEMBLE": 4, "DEVICE": 1}, ["--scale", "2", "--ensemble", "4"]),
        ({"SCALE": 2, "CALIBRATE": "on"}, ["--scale", "2", "--calibrate"]),
        ({"SCALE": 2, "CONSERVE": "off", "CALIBRATE": 2}, ["--scale", "2", "--no-conserve", "--no-calibrate"]),
        ({"SCALE": 2, "CONSERVE": "true"}, ["--scale", "2", "--conserve"]),
    ],
    ids=[
        "scale 2.5",
        "resolution, conserve, tiles",
        "ensemble",
        "ensemble as a number, scale as text, device 1",
        "calibrate on",
        "conserve off, calibrate off by number",
        "conserve true as the box of earlier versions",
    ],
)
def test_same_result_as_the_cli(processing, jacksboro, tiny_model, geosr_executable, tmp_path, options, cli_options):
    ours, theirs = tmp_path / "qgis.tif", tmp_path / "cli.tif"
    common = {"INPUT": str(jacksboro), "MODEL": str(tiny_model), "DEVICE": "cpu"}
    processing.run("geosr:downscale", {**common, **options, "OUTPUT": str(ours)})
    cli = [str(geosr_executable), "downscale", str(jacksboro), "-o", str(theirs), "--model", str(tiny_model)]
    subprocess.run([*cli, "--device", "cpu", "--quiet", *cli_options], check=True, timeout=300)
    assert_same_raster(read_raster(ours), read_raster(theirs))


def test_data_defined_choices_are_read_as_the_tool_reads_them(processing, jacksboro, tiny_model, tmp_path):
    # a data-defined Conserve that evaluates to 'true' (the box of earlier versions) means on; one that
    # evaluates to something else is one clear error, not a KeyError
    from qgis.core import QgsProperty

    common = {"INPUT": str(jacksboro), "MODEL": str(tiny_model), "DEVICE": "cpu", "SCALE": 2}
    on, forced = tmp_path / "on.tif", tmp_path / "forced.tif"
    processing.run("geosr:downscale", {**common, "CONSERVE": "on", "OUTPUT": str(on)})
    expression = QgsProperty.fromExpression("'true'")
    processing.run("geosr:downscale", {**common, "CONSERVE": expression, "OUTPUT": str(forced)})
    assert_same_raster(read_raster(forced), read_raster(on))
    with pytest.raises(QgsProcessingException, match="CALIBRATE must be model, on or off"):
        bad = QgsProperty.fromExpression("'sometimes'")
        processing.run("geosr:downscale", {**common, "CALIBRATE": bad, "OUTPUT": str(tmp_path / "bad.tif")})


def test_bands_are_chosen_and_ordered(processing, tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    values = np.cumsum(np.cumsum(rng.normal(size=(3, 12, 15)), axis=1), axis=2).astype(np.float32)
    source = write_bands(tmp_path / "three.tif", values * [[[1]], [[10]], [[100]]], ["red", "green", "blue"])
    common = {"INPUT": str(source), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu"}
    processing.run("geosr:downscale", {**common, "OUTPUT": str(tmp_path / "all.tif")})
    processing.run("geosr:downscale", {**common, "BANDS": [3, 1], "OUTPUT": str(tmp_path / "some.tif")})
    every, some = read_raster(tmp_path / "all.tif"), read_raster(tmp_path / "some.tif")
    assert some["size"] == (30, 24, 2) and some["descriptions"] == ["blue", "red"]
    assert some["transform"] == every["transform"]
    np.testing.assert_array_equal(some["values"], every["values"][[2, 0]])
    # BANDS left empty as text (qgis_process BANDS=) is every band, as the label says
    processing.run("geosr:downscale", {**common, "BANDS": "", "OUTPUT": str(tmp_path / "empty.tif")})
    assert_same_raster(read_raster(tmp_path / "empty.tif"), every)


def test_an_alpha_band_is_left_out_with_bands_as_geosr_says(processing, tiny_model, tmp_path):
    """An RGBA raster is refused whole, with the fix in the tool's words (the Bands that leave the alpha
    band out); those bands then run, transparent pixels coming out as nodata, as with the CLI (the tool
    once refused any band subset of it, contradicting that advice)."""
    from osgeo import gdal, osr

    source = tmp_path / "rgba.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(source), 15, 12, 4, gdal.GDT_Byte, ["ALPHA=YES"])
    dataset.SetGeoTransform((500_000.0, 30.0, 0.0, 4_200_000.0, 0.0, -30.0))
    crs = osr.SpatialReference()
    crs.ImportFromEPSG(32633)
    dataset.SetProjection(crs.ExportToWkt())
    rng = np.random.default_rng(0)
    for b in range(1, 4):
        dataset.GetRasterBand(b).WriteArray(rng.integers(40 * b, 40 * b + 50, (12, 15)).astype(np.uint8))
    alpha = np.full((12, 15), 255, np.uint8)
    alpha[:4, :5] = 0  # transparent
    dataset.GetRasterBand(4).WriteArray(alpha)
    dataset = None
    common = {"INPUT": str(source), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu"}
    with pytest.raises(QgsProcessingException) as error:
        processing.run("geosr:downscale", {**common, "OUTPUT": str(tmp_path / "all.tif")})
    assert "band 4 of" in str(error.value) and "Bands (BANDS)" in str(error.value), error.value
    assert "1;2;3" in str(error.value) and "--" not in str(error.value), error.value
    for bands in ([1, 2, 3], [2]):
        out = tmp_path / f"bands{len(bands)}.tif"
        processing.run("geosr:downscale", {**common, "BANDS": bands, "OUTPUT": str(out)})
        fine = read_raster(out)
        assert fine["size"] == (30, 24, len(bands))
        missing = np.isnan(np.asarray(fine["values"], np.float64).reshape(len(bands), 24, 30))
        assert missing[:, :8, :10].all() and missing.sum() == len(bands) * 8 * 10


def test_runs_without_a_feedback_object(processing, jacksboro, tiny_model, tmp_path):
    """QgsProcessingAlgorithm.run(parameters, context, None), as a script may call it: no feedback given."""
    from qgis.core import QgsProcessingContext

    algorithm = QgsApplication.processingRegistry().algorithmById("geosr:downscale").create()
    out = tmp_path / "no_feedback.tif"
    parameters = {"INPUT": str(jacksboro), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu", "OUTPUT": str(out)}
    results, ok = algorithm.run(parameters, QgsProcessingContext(), None)
    assert ok and results["OUTPUT"] == str(out) and QgsRasterLayer(str(out), "out").width() == 806


def test_a_temporary_output_checked_then_run_leaves_no_layer_unmade(processing, jacksboro, tiny_model, tmp_path):
    """The dialog checks the parameters, runs and loads the results with one context: the check made a
    temporary output's file name and added it to the layers to load, the run wrote another, and every run to
    a temporary layer ended in "The following layers were not correctly generated" (an audit)."""
    from qgis.core import QgsProcessingContext, QgsProcessingOutputLayerDefinition, QgsProject, QgsProperty

    algorithm = QgsApplication.processingRegistry().algorithmById("geosr:downscale").create()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    base = {"INPUT": str(jacksboro), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu"}
    temporary = {**base, "OUTPUT": QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT", QgsProject.instance())}
    assert algorithm.checkParameterValues(temporary, context) == (True, "")
    assert list(context.layersToLoadOnCompletion()) == []
    results, ok = algorithm.run(temporary, context, QgsProcessingFeedback())
    assert ok and Path(results["OUTPUT"]).suffix == ".tif"
    assert list(context.layersToLoadOnCompletion()) == [results["OUTPUT"]] and Path(results["OUTPUT"]).is_file()
    # a named output is still checked before the run, as text, as a definition or as an expression
    for bad in (
        str(tmp_path / "out.vrt"),
        QgsProcessingOutputLayerDefinition(str(tmp_path / "out.vrt")),
        QgsProcessingOutputLayerDefinition(QgsProperty.fromExpression(f"'{tmp_path}/out' || '.png'")),
    ):
        ok, message = algorithm.checkParameterValues({**base, "OUTPUT": bad}, context)
        assert not ok and "geosr writes GeoTIFF" in message, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("SCALE", 0.5, "scale must be greater than 1, got 0.5 (the Scale factor, SCALE); geosr only refines"),
        ("SCALE", -2, "scale must be greater than 1, got -2 (the Scale factor, SCALE)"),
        ("SCALE", float("inf"), "got inf (the Scale factor, SCALE); give a factor such as 2 or 4"),
        ("SCALE", "nan", "got nan (the Scale factor, SCALE)"),
        ("RESOLUTION", 0, "resolution must be a positive number, got 0 (the Target resolution, RESOLUTION"),
        ("RESOLUTION", "-30", "resolution must be a positive number, got -30"),
    ],
)
def test_a_scale_or_resolution_out_of_range_is_refused_in_geosr_words(
    processing, jacksboro, tiny_model, name, value, words
):
    """QGIS's own range check said only "Incorrect parameter value for SCALE" (an audit)."""
    from qgis.core import QgsProcessingContext

    algorithm = QgsApplication.processingRegistry().algorithmById("geosr:downscale").create()
    parameters = {"INPUT": str(jacksboro), name: value, "MODEL": str(tiny_model), "DEVICE": "cpu"}
    ok, message = algorithm.checkParameterValues(parameters, QgsProcessingContext())
    assert not ok and words in message, message


def test_target_resolution_keeps_twelve_decimals_in_the_dialog():
    """1 arc-second is 0.000277777...: the default 6 decimals would give a scale of 2.9976, not 3."""
    algorithm = QgsApplication.processingRegistry().algorithmById("geosr:downscale")
    assert algorithm.parameterDefinition("RESOLUTION").metadata()["widget_wrapper"]["decimals"] >= 10


def test_runs_in_a_processing_model(processing, jacksboro, tiny_model, tmp_path):
    """geosr:downscale as a model builder step, its input raster and scale wired to the model's inputs."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("refine a DEM", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("dem", "DEM"), QgsProcessingModelParameter("dem"))
    model.addModelParameter(QgsProcessingParameterNumber("factor", "Factor"), QgsProcessingModelParameter("factor"))
    child = QgsProcessingModelChildAlgorithm("geosr:downscale")
    child.setChildId("geosr")
    for name, source in (
        ("INPUT", QgsProcessingModelChildParameterSource.fromModelParameter("dem")),
        ("SCALE", QgsProcessingModelChildParameterSource.fromModelParameter("factor")),
        ("MODEL", QgsProcessingModelChildParameterSource.fromStaticValue(str(tiny_model))),
        ("DEVICE", QgsProcessingModelChildParameterSource.fromStaticValue("cpu")),
    ):
        child.addParameterSources(name, [source])
    output = QgsProcessingModelOutput("fine", "Fine DEM")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"fine": output})
    model.addChildAlgorithm(child)
    out = tmp_path / "jacksboro_x3.tif"
    result = processing.run(model, {"dem": str(jacksboro), "factor": 3, "geosr:fine": str(out)})
    assert result["geosr:fine"] == str(out)
    assert read_raster(out)["size"] == (1209, 1032, 1)


def test_cancel_stops_geosr_promptly_and_leaves_no_output(processing, jacksboro, make_model, tmp_path):
    feedback = QgsProcessingFeedback()
    canceled_at: list[float] = []

    def cancel_once_running(progress: float) -> None:
        if progress > 0 and not canceled_at:
            canceled_at.append(time.monotonic())
            feedback.cancel()

    feedback.progressChanged.connect(cancel_once_running)
    out = tmp_path / "out" / "cancelled.tif"
    out.parent.mkdir()
    slow = {"SCALE": 4, "TILE_SIZE": 64, "MODEL": str(make_model(8, 32))}  # hundreds of tiles
    with pytest.raises(QgsProcessingException, match="Canceled: geosr stopped and wrote no output"):
        processing.run(
            "geosr:downscale", {"INPUT": str(jacksboro), **slow, "DEVICE": "cpu", "OUTPUT": str(out)}, feedback=feedback
        )
    assert canceled_at and time.monotonic() - canceled_at[0] < runner.STOP_SECONDS
    assert list(out.parent.iterdir()) == []


# (parameters changed from a good run, words the message must contain)
BAD_PARAMETERS = {
    "neither scale nor resolution": ({"SCALE": None}, ["Set the Scale factor", "or the Target resolution"]),
    "scale and resolution": ({"RESOLUTION": 0.0004}, ["either the Scale factor", "not both"]),
    "scale 1 (from geosr)": ({"SCALE": 1}, ["scale must be greater than 1"]),
    "coarser resolution (from geosr)": ({"SCALE": None, "RESOLUTION": 0.01}, ["resolution 0.01 is not finer"]),
    "missing model file (from geosr)": ({"MODEL": "{tmp}/nope.safetensors"}, ["nope.safetensors"]),
    "not a GeoTIFF": ({"OUTPUT": "{tmp}/out.png"}, ["geosr writes GeoTIFF", "out.png"]),
    "no such band": ({"BANDS": [1, 2]}, ["has 1 band(s); there is no band 2"]),
    "tile too small": ({"TILE_SIZE": 8}, ["TILE_SIZE"]),
    "scale not a number": ({"SCALE": "abc"}, ["SCALE", "'abc'", "a number"]),
    "resolution not a number": ({"SCALE": None, "RESOLUTION": "fine"}, ["RESOLUTION", "'fine'", "a number"]),
    "ensemble not 1, 4 or 8": ({"ENSEMBLE": 3}, ["ENSEMBLE", "1, 4 or 8", "3"]),
    "conserve not model, on or off": ({"CONSERVE": "maybe"}, ["CONSERVE", "model, on or off", "maybe"]),
    "device unknown": ({"DEVICE": "tpu"}, ["DEVICE must be one of auto, cpu, cuda, mps, got tpu"]),
    "conserve at a fractional scale (from geosr, in the tool's words)": (
        {"SCALE": 2.5, "CONSERVE": True},
        ["conservation needs a whole scale", "set Conserve (CONSERVE) to model or off"],
    ),
    "not a raster": ({"INPUT": "{tmp}/notes.txt"}, ["INPUT"]),
}


@pytest.mark.parametrize(("changes", "words"), BAD_PARAMETERS.values(), ids=BAD_PARAMETERS.keys())
def test_bad_parameters_raise_a_clear_error(processing, jacksboro, tiny_model, tmp_path, changes, words):
    (tmp_path / "notes.txt").write_text("not a raster\n")
    parameters = {"INPUT": str(jacksboro), "SCALE": 2, "MODEL": str(tiny_model), "OUTPUT": str(tmp_path / "out.tif")}
    for name, value in changes.items():
        parameters[name] = value.format(tmp=tmp_path) if isinstance(value, str) else value
    with pytest.raises(QgsProcessingException) as error:
        processing.run("geosr:downscale", parameters)
    for word in words:
        assert word in str(error.value), f"{word!r} not in {error.value}"
    assert " --" not in str(error.value) and " -o" not in str(error.value)  # the dialog has no such options
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_can_execute_says_how_to_set_up_geosr(processing, monkeypatch, tmp_path, jacksboro):
    from geosr_processing.algorithm import EXECUTABLE_SETTING
    from processing.core.ProcessingConfig import ProcessingConfig

    ProcessingConfig.setSettingValue(EXECUTABLE_SETTING, "")
    monkeypatch.delenv(runner.EXECUTABLE_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runner, "geosr_importable", lambda: False)
    ok, message = QgsApplication.processingRegistry().algorithmById("geosr:downscale").canExecute()
    assert not ok
    assert "pip install geosr" in message and "Processing > Options > Providers > geosr" in message
    assert runner.EXECUTABLE_ENV in message
    with pytest.raises(QgsProcessingException, match="geosr is not available"):
        processing.run("geosr:downscale", {"INPUT": str(jacksboro), "SCALE": 2, "OUTPUT": str(tmp_path / "o.tif")})


def test_qgis_process_runs_downscale(qgis_profile, run_qgis_process, jacksboro, tiny_model, tmp_path):
    call = run_qgis_process
    enabled = call("plugins", "enable", "geosr_processing")
    assert enabled.returncode == 0, enabled.stderr
    helped = call("help", "geosr:downscale")
    assert helped.returncode == 0, helped.stderr
    for name in PARAMETERS:
        assert name in helped.stdout
    out = tmp_path / "out.tif"
    options = [f"INPUT={jacksboro}", f"MODEL={tiny_model}", "DEVICE=cpu", f"OUTPUT={out}"]
    done = call("--json", "run", "geosr:downscale", "--", "SCALE=2", *options)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["results"]["OUTPUT"] == str(out)
    assert read_raster(out)["size"] == (806, 688, 1)
    refused = call("run", "geosr:downscale", "--", "SCALE=1", *options)
    assert refused.returncode != 0
    assert "scale must be greater than 1" in refused.stdout + refused.stderr
    refused = call("run", "geosr:downscale", "--", "SCALE=abc", *options)
    assert refused.returncode != 0
    assert "SCALE must be a number (for example 4), got 'abc'" in refused.stdout + refused.stderr
    refused = call("run", "geosr:downscale", "--", "SCALE=0.5", *options)  # QGIS said "Incorrect parameter value"
    assert refused.returncode != 0
    assert "scale must be greater than 1, got 0.5 (the Scale factor, SCALE)" in refused.stdout + refused.stderr
