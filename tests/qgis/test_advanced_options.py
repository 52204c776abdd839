"""The advanced options of ``geosr downscale`` in ``geosr:downscale``: Precision (``--precision``), Batch
size (``--batch-size``), Cloud Optimized GeoTIFF (``--cog``) and Keep data type (``--keep-dtype``).

Their defaults are geosr's (the tool's results stay as they were), they reach both runners, they take
their labels and option numbers as the other choices do, bad values are one clear line, and their
outputs have the properties asked for: a valid COG, the input's int16 and nodata, bf16 close to fp32.

The :class:`~geosr_processing.runner.Job` tests need no QGIS (they also run in geosr's environment);
the others run in QGIS's Python, as ``tests/qgis/test_algorithm.py`` does.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from geosr_processing import runner
from geosr_processing.runner import Job

pytest_plugins = ["plugin_fixtures"]


def _qgis_importable() -> bool:
    # not find_spec("qgis"): run from the repository, tests/qgis itself is found as a namespace package "qgis"
    try:
        import qgis.core  # noqa: F401
    except ImportError:
        return False
    return True


needs_qgis = pytest.mark.skipif(
    not _qgis_importable(), reason="QGIS's Python bindings are not importable here: run `make test-qgis`"
)

NEW_PARAMETERS = ["PRECISION", "BATCH_SIZE", "COG", "KEEP_DTYPE"]
NODATA = -9999


def make_job(source: Path, output: Path, **changes: Any) -> Job:
    options: dict[str, Any] = {
        "source": str(source),
        "output": str(output),
        "scale": 2.0,
        "resolution": None,
        "model": "m.safetensors",
        "device": "cpu",
        "tile_size": 256,
        "conserve": None,
    }
    return Job(**{**options, **changes})


def geosr_defaults(geosr_executable: Path) -> dict[str, Any]:
    """The keyword parameters of geosr.pipeline.downscale_raster and their defaults, read in geosr's Python."""
    code = (
        "import inspect, json; from geosr.pipeline import downscale_raster; "
        "print(json.dumps({n: (p.default if p.default is not inspect.Parameter.empty else None) "
        "for n, p in inspect.signature(downscale_raster).parameters.items() "
        "if n not in ('src', 'dst', 'progress')}))"
    )
    python = geosr_executable.with_name("python")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return json.loads(done.stdout)


def read_raster(path: Path) -> dict[str, Any]:
    """Size, data type, nodata, image structure metadata and values of a raster, read with GDAL."""
    from osgeo import gdal

    dataset = gdal.Open(str(path))
    assert dataset is not None, path
    band = dataset.GetRasterBand(1)
    return {
        "size": (dataset.RasterXSize, dataset.RasterYSize, dataset.RasterCount),
        "transform": dataset.GetGeoTransform(),
        "dtype": gdal.GetDataTypeName(band.DataType),
        "nodata": band.GetNoDataValue(),
        "overviews": band.GetOverviewCount(),
        "structure": dataset.GetMetadata("IMAGE_STRUCTURE"),
        "values": dataset.ReadAsArray(),
    }


def cog_errors(path: Path) -> list[str]:
    """GDAL's own check of a Cloud Optimized GeoTIFF (its samples' validate_cloud_optimized_geotiff)."""
    from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate

    _, errors, _ = validate(str(path), full_check=True)
    return errors


def write_int16(path: Path) -> Path:
    """A 40 x 30 int16 GeoTIFF (UTM 33N, 30 m pixels), smooth values of 100 to 400 m, nodata -9999 in
    its top-left 5 x 4 pixels."""
    from osgeo import gdal, osr

    y, x = np.mgrid[0:30, 0:40]
    values = (250 + 120 * np.sin(x / 7.0) * np.cos(y / 5.0) + 2 * x).astype(np.int16)
    values[:4, :5] = NODATA
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 40, 30, 1, gdal.GDT_Int16)
    dataset.SetGeoTransform((500_000.0, 30.0, 0.0, 4_200_000.0, 0.0, -30.0))
    crs = osr.SpatialReference()
    crs.ImportFromEPSG(32633)
    dataset.SetProjection(crs.ExportToWkt())
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(NODATA)
    band.WriteArray(values)
    dataset = None  # closing writes the file
    return path


# --- the job: both runners get the options, with geosr's defaults (no QGIS needed) ---------------------------


def test_defaults_are_geosrs_and_leave_the_command_as_it_was(tmp_path, geosr_executable):
    job = make_job(tmp_path / "in.tif", tmp_path / "out.tif")
    defaults = geosr_defaults(geosr_executable)
    for name in ("precision", "batch_size", "cog", "keep_dtype"):
        assert getattr(job, name) == defaults[name], name
    assert (runner.DEFAULT_BATCH_SIZE, runner.PRECISIONS[0]) == (defaults["batch_size"], defaults["precision"])
    # geosr's defaults are not spelled out: the command line is the one of the versions before these options
    arguments = job.cli_arguments()
    assert arguments == [
        "downscale",
        str(tmp_path / "in.tif"),
        "--output",
        str(tmp_path / "out.tif"),
        "--overwrite",
        "--progress-lines",
        "--scale",
        "2.0",
        "--model",
        "m.safetensors",
        "--device",
        "cpu",
        "--tile-size",
        "256",
    ]
    keywords = job.pipeline_keywords()
    assert {k: keywords[k] for k in ("precision", "batch_size", "cog", "keep_dtype")} == {
        "precision": "fp32",
        "batch_size": 1,
        "cog": False,
        "keep_dtype": False,
    }
    # every keyword is one of downscale_raster's (a misspelt one would fail only in QGIS's Python)
    assert set(keywords) <= set(defaults)


def test_the_options_reach_both_runners(tmp_path):
    job = make_job(tmp_path / "in.tif", tmp_path / "out.tif", bands=(2, 1))
    changed = dataclasses.replace(job, precision="bf16", batch_size=4, cog=True, keep_dtype=True)
    assert changed.cli_arguments() == [
        *job.cli_arguments(),
        "--precision",
        "bf16",
        "--batch-size",
        "4",
        "--cog",
        "--keep-dtype",
    ]
    assert {k: v for k, v in changed.pipeline_keywords().items() if job.pipeline_keywords()[k] != v} == {
        "precision": "bf16",
        "batch_size": 4,
        "cog": True,
        "keep_dtype": True,
    }
    assert dataclasses.replace(job, precision="fp16").cli_arguments()[-2:] == ["--precision", "fp16"]
    assert dataclasses.replace(job, keep_dtype=True).cli_arguments()[-1] == "--keep-dtype"
    assert "--cog" not in dataclasses.replace(job, keep_dtype=True).cli_arguments()


def test_in_process_run_takes_the_options(jacksboro, tmp_path, tiny_model):
    """In geosr's environment: the pipeline gets cog and keep_dtype (in QGIS's Python geosr runs as a subprocess)."""
    if not runner.geosr_importable():
        pytest.skip("geosr is not installed in this Python; its in-process path is tested in geosr's environment")
    import rasterio

    class Quiet:
        def isCanceled(self) -> bool:  # noqa: N802
            return False

        def setProgress(self, progress: float) -> None:  # noqa: N802
            pass

        def pushInfo(self, info: str) -> None:  # noqa: N802
            pass

    job = make_job(jacksboro, tmp_path / "out.tif", model=str(tiny_model), cog=True, keep_dtype=True, batch_size=2)
    runner.run(job, Quiet(), None)
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.dtypes == ("int16",) and out.nodata == -32768
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "'masked.tif' has masked pixels but no nodata value, which a int16 output cannot hold; drop --keep-dtype "
            "to write float32 with NaN as nodata",
            "'masked.tif' has masked pixels but no nodata value, which a int16 output cannot hold; turn Keep data "
            "type (KEEP_DTYPE) off to write float32 with NaN as nodata",
        ),
        (
            "band 1 of 'x.tif' holds values beyond the range of the float32 output; pass --keep-dtype to write the "
            "input's float64",
            "band 1 of 'x.tif' holds values beyond the range of the float32 output; turn Keep data type (KEEP_DTYPE) "
            "on to write the input's float64",
        ),
        ("--precision fp16 and --batch-size 8", "the Precision (PRECISION) fp16 and the Batch size (BATCH_SIZE) 8"),
        ("--cog needs a GeoTIFF", "the Cloud Optimized GeoTIFF (COG) option needs a GeoTIFF"),
        ("with --keep-dtype", "with the Keep data type (KEEP_DTYPE) option"),
        # click quotes the option whose value it refuses (a Processing model does not apply a minimum)
        (
            "Invalid value for '--tile-size': 8 is not in the range x>=16.",
            "Invalid value for the Tile size (TILE_SIZE): 8 is not in the range x>=16.",
        ),
        ("Invalid value for '--scale': 'x'", "Invalid value for the Scale factor (SCALE): 'x'"),
        # an unforeseen failure: the tool has no --verbose, the command in the log has
        (
            "TypeError: bad (rerun with --verbose for details)",
            "TypeError: bad (run the geosr command in the log with --verbose in a terminal for details)",
        ),
    ],
)
def test_messages_name_the_new_parameters_not_geosrs_options(message, expected):
    assert runner.for_qgis(message) == expected


# --- the tool in QGIS ----------------------------------------------------------------------------------------


@needs_qgis
def test_new_parameters_are_advanced_with_geosrs_defaults(processing):
    from geosr_processing.algorithm import ADVANCED
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById("geosr:downscale")
    names = [p.name() for p in algorithm.parameterDefinitions()]
    assert names[-len(NEW_PARAMETERS) :] == NEW_PARAMETERS and names.index("OUTPUT") == len(names) - 5
    for name in [*NEW_PARAMETERS, "ENSEMBLE", "CALIBRATE"]:
        definition = algorithm.parameterDefinition(name)
        assert definition.flags() & ADVANCED, name
        assert not definition.flags() & definition.FlagOptional, name
    precision = algorithm.parameterDefinition("PRECISION")
    assert precision.options() == ["fp32", "bf16", "fp16"] and precision.defaultValue() == "fp32"
    assert precision.usesStaticStrings()
    batch = algorithm.parameterDefinition("BATCH_SIZE")
    assert (batch.defaultValue(), batch.minimum()) == (runner.DEFAULT_BATCH_SIZE, 1)
    assert batch.dataType() == batch.Integer
    for name in ("COG", "KEEP_DTYPE"):
        assert algorithm.parameterDefinition(name).type() == "boolean"
        assert algorithm.parameterDefinition(name).defaultValue() is False
    help_text = algorithm.shortHelpString()
    for words in ("<b>Precision</b>", "<b>Batch size</b>", "<b>Cloud Optimized GeoTIFF</b>", "<b>Keep data type</b>"):
        assert words in help_text, words
    for option in ("--precision", "--batch-size", "--cog", "--keep-dtype", "KEEP_DTYPE=true"):
        assert option in help_text, option


@pytest.fixture
def captured(processing, monkeypatch):
    """The jobs the tool hands to geosr, which does not run (the options' reading is checked, not geosr)."""
    from geosr_processing import algorithm

    jobs: list[Job] = []
    monkeypatch.setattr(algorithm, "run", lambda job, feedback, executable: jobs.append(job))
    return jobs


# (a parameter given as the dialog, processing.run or qgis_process may give it, the job's field and value)
READINGS = {
    "precision by label": ({"PRECISION": "bf16"}, "precision", "bf16"),
    "precision by label in capitals": ({"PRECISION": "FP16"}, "precision", "fp16"),
    "precision by number": ({"PRECISION": 1}, "precision", "bf16"),
    "precision by number as text (qgis_process)": ({"PRECISION": "2"}, "precision", "fp16"),
    "precision left out": ({}, "precision", "fp32"),
    "batch size": ({"BATCH_SIZE": 4}, "batch_size", 4),
    "batch size as text (qgis_process)": ({"BATCH_SIZE": "8"}, "batch_size", 8),
    "batch size as a whole float": ({"BATCH_SIZE": 2.0}, "batch_size", 2),
    "batch size left out": ({}, "batch_size", 1),
    "cog true": ({"COG": True}, "cog", True),
    "cog as text (qgis_process)": ({"COG": "true"}, "cog", True),
    "cog false as text": ({"COG": "FALSE"}, "cog", False),
    "cog as 1": ({"COG": 1}, "cog", True),
    "cog left out": ({}, "cog", False),
    "keep dtype true": ({"KEEP_DTYPE": True}, "keep_dtype", True),
    "keep dtype as text (qgis_process)": ({"KEEP_DTYPE": "true"}, "keep_dtype", True),
    "keep dtype 0": ({"KEEP_DTYPE": "0"}, "keep_dtype", False),
    "keep dtype left out": ({}, "keep_dtype", False),
}


@needs_qgis
@pytest.mark.parametrize(("given", "field", "value"), READINGS.values(), ids=READINGS.keys())
def test_labels_numbers_and_booleans_are_taken(captured, processing, tmp_path, given, field, value):
    source = write_int16(tmp_path / "small.tif")
    parameters = {"INPUT": str(source), "SCALE": 2, "DEVICE": "cpu", "OUTPUT": str(tmp_path / "out.tif"), **given}
    processing.run("geosr:downscale", parameters)
    assert len(captured) == 1
    assert getattr(captured[0], field) == value
    assert type(getattr(captured[0], field)) is type(value)


@needs_qgis
def test_data_defined_options_are_read_as_given_ones(captured, processing, tmp_path):
    from qgis.core import QgsProcessingException, QgsProperty

    source = write_int16(tmp_path / "small.tif")
    common = {"INPUT": str(source), "SCALE": 2, "DEVICE": "cpu", "OUTPUT": str(tmp_path / "out.tif")}
    expressions = {"PRECISION": "'bf16'", "BATCH_SIZE": "2 + 2", "COG": "'true'", "KEEP_DTYPE": "1 = 1"}
    processing.run("geosr:downscale", {**common, **{k: QgsProperty.fromExpression(v) for k, v in expressions.items()}})
    assert (captured[0].precision, captured[0].batch_size, captured[0].cog, captured[0].keep_dtype) == (
        "bf16",
        4,
        True,
        True,
    )
    for name, expression, words in (
        ("PRECISION", "'fp64'", "PRECISION must be one of fp32, bf16, fp16, got fp64"),
        ("COG", "'maybe'", "COG must be true or false, got maybe"),
    ):
        with pytest.raises(QgsProcessingException, match=words):
            processing.run("geosr:downscale", {**common, name: QgsProperty.fromExpression(expression)})


@needs_qgis
def test_data_defined_device_ensemble_tile_size_and_bands_are_read_and_checked(captured, processing, tmp_path):
    # they were read with parameterAsEnumString / parameterAsInt / parameterAsInts, which take a value they
    # cannot read as the default (DEVICE 'gpu' ran on auto, ENSEMBLE 3 as 1, BANDS '3;1' as band 0)
    from osgeo import gdal
    from qgis.core import QgsProcessingException, QgsProperty

    source = write_int16(tmp_path / "small.tif")
    three = tmp_path / "three.tif"
    gdal.Translate(str(three), str(source), bandList=[1, 1, 1]).FlushCache()
    common = {"INPUT": str(three), "SCALE": 2, "OUTPUT": str(tmp_path / "out.tif")}
    for expressions, expected in (
        ({"DEVICE": "'cpu'", "ENSEMBLE": "2 * 2", "TILE_SIZE": "256", "BANDS": "'3;1'"}, ("cpu", 4, 256, (3, 1))),
        ({"DEVICE": "1", "ENSEMBLE": "'8'", "TILE_SIZE": "'64'", "BANDS": "'3,1'"}, ("cpu", 8, 64, (3, 1))),
    ):
        captured.clear()
        processing.run(
            "geosr:downscale", {**common, **{k: QgsProperty.fromExpression(v) for k, v in expressions.items()}}
        )
        job = captured[0]
        assert (job.device, job.ensemble, job.tile_size, job.bands) == expected
    for name, expression, words in (
        ("DEVICE", "'gpu'", "DEVICE must be one of auto, cpu, cuda, mps, got gpu"),
        ("ENSEMBLE", "3", "ENSEMBLE must be 1, 4 or 8 (copies of the layer averaged), got 3"),
        ("TILE_SIZE", "'abc'", "TILE_SIZE must be a whole number of output pixels a side, at least 16"),
        ("TILE_SIZE", "8", "TILE_SIZE must be a whole number of output pixels a side, at least 16"),
        ("BANDS", "'3 and 1'", "BANDS must be band numbers separated by ';' (for example 3;1), got '3 and 1'"),
    ):
        with pytest.raises(QgsProcessingException, match=re.escape(words)):
            processing.run("geosr:downscale", {**common, name: QgsProperty.fromExpression(expression)})


# (parameters changed from a good run, the line the message ends with)
BAD_VALUES = {
    "precision unknown": ({"PRECISION": "fp64"}, "PRECISION must be one of fp32, bf16, fp16, got fp64"),
    "precision number too high": ({"PRECISION": 3}, "PRECISION must be one of fp32, bf16, fp16, got 3"),
    "batch size 0": (
        {"BATCH_SIZE": 0},
        "BATCH_SIZE must be a whole number of tile images, at least 1 (for example 4), got 0",
    ),
    "batch size fractional": (
        {"BATCH_SIZE": 2.5},
        "BATCH_SIZE must be a whole number of tile images, at least 1 (for example 4), got 2.5",
    ),
    "batch size text": (
        {"BATCH_SIZE": "many"},
        "BATCH_SIZE must be a whole number of tile images, at least 1 (for example 4), got many",
    ),
    # beyond QGIS's integers, which it would read as 0 (and geosr then refuse with its option's name)
    "batch size beyond an integer": (
        {"BATCH_SIZE": 3_000_000_000},
        "BATCH_SIZE must be a whole number of tile images, at least 1 (for example 4), got 3000000000",
    ),
    "tile size beyond an integer": (
        {"TILE_SIZE": 3_000_000_000},
        "TILE_SIZE must be a whole number of output pixels a side, at least 16 (for example 1024), got 3000000000",
    ),
    "cog not a boolean": ({"COG": "maybe"}, "COG must be true or false, got maybe"),
    "keep dtype not a boolean": ({"KEEP_DTYPE": 2}, "KEEP_DTYPE must be true or false, got 2"),
}


@needs_qgis
@pytest.mark.parametrize(("changes", "line"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_one_clear_line(processing, tmp_path, changes, line):
    from qgis.core import QgsProcessingException

    source = write_int16(tmp_path / "small.tif")
    out = tmp_path / "out" / "out.tif"
    out.parent.mkdir()
    parameters = {"INPUT": str(source), "SCALE": 2, "DEVICE": "cpu", "OUTPUT": str(out), **changes}
    with pytest.raises(QgsProcessingException) as error:
        processing.run("geosr:downscale", parameters)
    # processing.run puts "Unable to execute algorithm" above the tool's message
    assert str(error.value).splitlines()[-1] == line
    assert list(out.parent.iterdir()) == []


@needs_qgis
def test_geosrs_keep_dtype_refusal_names_the_parameter(processing, tiny_model, tmp_path):
    """An int16 raster with masked pixels and no nodata cannot keep its type: geosr says so, in the tool's words."""
    from osgeo import gdal, osr
    from qgis.core import QgsProcessingException

    source = tmp_path / "masked.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(source), 40, 30, 1, gdal.GDT_Int16)
    dataset.SetGeoTransform((500_000.0, 30.0, 0.0, 4_200_000.0, 0.0, -30.0))
    crs = osr.SpatialReference()
    crs.ImportFromEPSG(32633)
    dataset.SetProjection(crs.ExportToWkt())
    dataset.GetRasterBand(1).WriteArray((np.arange(1200).reshape(30, 40) % 97).astype(np.int16))
    gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
    try:
        dataset.CreateMaskBand(gdal.GMF_PER_DATASET)
        mask = np.full((30, 40), 255, np.uint8)
        mask[:5, :5] = 0  # masked, with no nodata value
        dataset.GetRasterBand(1).GetMaskBand().WriteArray(mask)
        dataset = None
    finally:
        gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
    out = tmp_path / "out" / "out.tif"
    out.parent.mkdir()
    parameters = {"INPUT": str(source), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu", "OUTPUT": str(out)}
    with pytest.raises(QgsProcessingException) as error:
        processing.run("geosr:downscale", {**parameters, "KEEP_DTYPE": True})
    message = str(error.value).splitlines()[-1]
    assert "masked pixels but no nodata value" in message
    assert "turn Keep data type (KEEP_DTYPE) off to write float32" in message and "--" not in message
    assert list(out.parent.iterdir()) == []


@needs_qgis
def test_options_give_the_clis_result_and_their_properties(
    processing, jacksboro, tiny_model, geosr_executable, tmp_path
):
    """The bundled int16 DEM (806 x 688 px at scale 2, 12 tiles of 256): bf16 is close to fp32 but not equal,
    a batch of 4 changes nothing, and COG with Keep data type is a valid int16 COG with overviews, the
    same file as `geosr downscale --cog --keep-dtype` writes."""
    common = {"INPUT": str(jacksboro), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu", "TILE_SIZE": 256}

    def tool(name: str, **options: Any) -> dict[str, Any]:
        processing.run("geosr:downscale", {**common, **options, "OUTPUT": str(tmp_path / name)})
        return read_raster(tmp_path / name)

    fp32 = tool("fp32.tif")
    assert fp32["dtype"] == "Float32" and fp32["structure"].get("LAYOUT") != "COG" and fp32["overviews"] == 0
    bf16 = tool("bf16.tif", PRECISION="bf16")
    relief = float(np.ptp(fp32["values"]))
    difference = np.abs(bf16["values"].astype(np.float64) - fp32["values"])
    assert difference.max() > 0  # bf16 did run
    assert difference.max() < 0.01 * relief and difference.mean() < 0.001 * relief
    batched = tool("bf16_batch4.tif", PRECISION=1, BATCH_SIZE=4)  # bf16 by its number
    np.testing.assert_array_equal(batched["values"], bf16["values"])

    cog = tool("cog.tif", COG=True, KEEP_DTYPE="true")
    assert cog["structure"].get("LAYOUT") == "COG" and cog_errors(tmp_path / "cog.tif") == []
    assert cog["overviews"] >= 1  # 806 x 688 px: one overview of 403 x 344
    assert (cog["dtype"], cog["nodata"]) == ("Int16", -32768.0)
    assert cog["size"] == fp32["size"] and cog["transform"] == fp32["transform"]
    assert np.abs(cog["values"] - np.rint(fp32["values"])).max() <= 1
    cli = tmp_path / "cli.tif"
    options = ["--scale", "2", "--device", "cpu", "--tile-size", "256", "--cog", "--keep-dtype", "--quiet"]
    command = [str(geosr_executable), "downscale", str(jacksboro), "-o", str(cli), "--model", str(tiny_model)]
    subprocess.run([*command, *options], check=True, timeout=300)
    theirs = read_raster(cli)
    assert {k: v for k, v in theirs.items() if k != "values"} == {k: v for k, v in cog.items() if k != "values"}
    np.testing.assert_array_equal(theirs["values"], cog["values"])


@needs_qgis
def test_keep_dtype_writes_the_inputs_int16_and_nodata(processing, tiny_model, tmp_path):
    source = write_int16(tmp_path / "small.tif")
    common = {"INPUT": str(source), "SCALE": 2, "MODEL": str(tiny_model), "DEVICE": "cpu"}
    processing.run("geosr:downscale", {**common, "OUTPUT": str(tmp_path / "float.tif")})
    processing.run("geosr:downscale", {**common, "KEEP_DTYPE": True, "OUTPUT": str(tmp_path / "int.tif")})
    floats, ints = read_raster(tmp_path / "float.tif"), read_raster(tmp_path / "int.tif")
    assert (floats["dtype"], ints["dtype"]) == ("Float32", "Int16")
    assert floats["nodata"] == ints["nodata"] == NODATA
    assert ints["size"] == floats["size"] == (80, 60, 1) and ints["transform"] == floats["transform"]
    hole = np.zeros((60, 80), bool)
    hole[:8, :10] = True  # the input's 5 x 4 nodata pixels, at scale 2
    assert (ints["values"][hole] == NODATA).all() and (ints["values"][~hole] != NODATA).all()
    # the float32 result, rounded
    assert np.abs(ints["values"][~hole] - np.rint(floats["values"][~hole])).max() <= 1


@needs_qgis
def test_qgis_process_takes_the_options_by_number_and_as_true(qgis_profile, run_qgis_process, tiny_model, tmp_path):
    call = run_qgis_process

    assert call("plugins", "enable", "geosr_processing").returncode == 0
    source = write_int16(tmp_path / "small.tif")
    out = tmp_path / "out.tif"
    options = [f"INPUT={source}", "SCALE=2", f"MODEL={tiny_model}", "DEVICE=cpu", f"OUTPUT={out}"]
    done = call("run", "geosr:downscale", "--", *options, "PRECISION=1", "BATCH_SIZE=2", "COG=true", "KEEP_DTYPE=true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--precision bf16 --batch-size 2 --cog --keep-dtype" in done.stdout + done.stderr
    fine = read_raster(out)
    assert (fine["dtype"], fine["nodata"], fine["structure"].get("LAYOUT")) == ("Int16", NODATA, "COG")
    assert cog_errors(out) == []
    out.unlink()
    refused = call("run", "geosr:downscale", "--", *options, "COG=maybe")
    assert refused.returncode != 0 and not out.exists()
    assert "COG must be true or false, got maybe" in refused.stdout + refused.stderr
