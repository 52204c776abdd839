"""``geosr:downscale``: super-resolve a raster layer into a GeoTIFF, as ``geosr downscale`` does."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from processing.core.ProcessingConfig import ProcessingConfig
from qgis.core import (
    Qgis,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsProperty,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from geosr_processing.runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TILE_SIZE,
    PRECISIONS,
    Canceled,
    GeosrNotFound,
    Job,
    RunError,
    find_geosr,
    run,
)

#: The Processing setting (Options > Processing > Providers > geosr) holding the geosr executable.
EXECUTABLE_SETTING = "GEOSR_EXECUTABLE"

HELP = """Super-resolves a raster layer (a DEM, a climate grid, any GDAL raster) with geosr's VDSR network and \
writes a GeoTIFF with the same CRS and extent and finer pixels: the same result as \
<code>geosr downscale</code> on the command line.

<h3>Parameters</h3>
<ul>
<li><b>Input raster</b>: any raster layer stored in a file GDAL reads.</li>
<li><b>Bands</b>: the bands to downscale, in this order (empty: all); in <code>qgis_process</code> \
separated by ; or , (<code>BANDS=3;1</code>).</li>
<li><b>Scale factor</b> or <b>Target resolution</b>: set exactly one. A scale of 4 makes each pixel 4 x 4 \
pixels (it may be fractional, like 2.5); a target resolution is a pixel size in the layer's CRS units.</li>
<li><b>Model</b>: the name of a model shipped with geosr (<code>geosr models</code> lists them) or a \
<code>.safetensors</code> model file. Empty: geosr's default model, <i>dem</i>. A 1-band model \
applies to every band; an N-band model needs N bands.</li>
<li><b>Device</b>: where the network runs; <i>auto</i> picks CUDA, then Apple MPS, then the CPU.</li>
<li><b>Tile size</b>: output pixels per tile side (rounded up to a multiple of 16, GeoTIFF's block \
unit); memory grows with its square. Tiles are seam-free, \
and a global layer (a geographic CRS, its columns a full 360 degrees of longitude) wraps around: no seam \
where its last column meets its first.</li>
<li><b>Conserve</b>: <i>model</i> (default): as the model says (the shipped models conserve at whole \
scales); <i>on</i>: make the output pixels of each input cell average exactly to its value (whole scales \
only); <i>off</i>: never.</li>
<li><b>Ensemble</b>: average the model over 4 flipped copies of the layer, or 8 flipped and rotated copies \
(square pixels only): 4 or 8 times slower, usually a little more accurate. 1: the model once.</li>
<li><b>Calibrate</b>: <i>model</i> (default): as the model says (both shipped models \
self-calibrate); <i>on</i>: scale each band's added detail by how much of it the \
layer's own coarser copy supports (0 to 1, whole scales); <i>off</i>: never.</li>
<li><b>Precision</b>: the network's arithmetic. <i>fp32</i> (default): float32, the result of earlier \
versions; <i>bf16</i> or <i>fp16</i>: faster on a GPU (bf16 also on CPUs with bfloat16 support), with \
results that differ slightly from fp32's.</li>
<li><b>Batch size</b>: tile images (one per band for a 1-band model) per network call (default 1); more \
helps on a GPU and uses more memory.</li>
<li><b>Cloud Optimized GeoTIFF</b>: write a COG, with overviews where it is larger than one 512 x 512 \
block, for web and cloud use.</li>
<li><b>Keep data type</b>: write the input's data type (for example int16; values rounded and clipped to \
its range, nodata kept) instead of float32.</li>
</ul>
<p>Nodata stays nodata (the file's: no-data values set on the layer in QGIS are not used, with a \
warning); band descriptions, units and tags carry over. The output is float32 GeoTIFF \
(the input's data type with Keep data type) in the file's CRS (the one set in QGIS when the file has \
none; a warning where the layer's differs). \
An existing output file is replaced, as Processing outputs are, but never a file the input is read \
from. In <code>qgis_process</code> the advanced parameters are <code>PRECISION=bf16</code> (or its option \
number, <code>PRECISION=1</code>), <code>BATCH_SIZE=4</code>, <code>COG=true</code> and \
<code>KEEP_DTYPE=true</code>, as <code>geosr downscale</code>'s <code>--precision</code>, \
<code>--batch-size</code>, <code>--cog</code> and <code>--keep-dtype</code>.</p>

<h3>Setup</h3>
<p>geosr runs inside QGIS when it is installed in QGIS's Python. Otherwise install geosr anywhere \
(<code>pip install geosr</code>, in a virtual environment or conda) and give the path of its \
<code>geosr</code> executable in Processing &gt; Options &gt; Providers &gt; geosr, or in the \
<code>GEOSR_EXECUTABLE</code> environment variable; a configured executable is used even when geosr \
also imports in QGIS. Progress is shown per tile; Cancel stops geosr and leaves no output.</p>
"""


def _tr(text: str) -> str:
    return QCoreApplication.translate("geosr", text)


# QGIS 3.36 moved these enums to Qgis (the only spelling in Qt6 builds); 3.22 has only the old ones.
if hasattr(Qgis, "ProcessingParameterFlag"):
    ADVANCED, DOUBLE = Qgis.ProcessingParameterFlag.Advanced, Qgis.ProcessingNumberParameterType.Double
else:
    ADVANCED, DOUBLE = QgsProcessingParameterDefinition.FlagAdvanced, QgsProcessingParameterNumber.Double


def _advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    parameter.setFlags(parameter.flags() | ADVANCED)
    return parameter


class DownscaleAlgorithm(QgsProcessingAlgorithm):
    """Processing algorithm ``geosr:downscale``; parameter names are stable (scripts and models use them)."""

    INPUT = "INPUT"
    BANDS = "BANDS"
    SCALE = "SCALE"
    RESOLUTION = "RESOLUTION"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    CONSERVE = "CONSERVE"
    ENSEMBLE = "ENSEMBLE"
    CALIBRATE = "CALIBRATE"
    OUTPUT = "OUTPUT"
    PRECISION = "PRECISION"
    BATCH_SIZE = "BATCH_SIZE"
    COG = "COG"
    KEEP_DTYPE = "KEEP_DTYPE"
    DEVICES = ["auto", "cpu", "cuda", "mps"]
    ENSEMBLES = ["1", "4", "8"]
    #: the network's arithmetic, as ``geosr downscale --precision`` takes it (fp32 first: the default)
    PRECISIONS = list(PRECISIONS)
    #: the choices of Conserve and Calibrate: as the model's card says, on, off
    SWITCHES = {"model": None, "on": True, "off": False}

    def name(self) -> str:
        return "downscale"

    def displayName(self) -> str:  # noqa: N802 (QGIS's names)
        return _tr("Downscale raster (super-resolution)")

    def tags(self) -> list[str]:
        return ["super-resolution", "downscaling", "upsampling", "DEM", "elevation", "deep learning", "VDSR", "geosr"]

    def shortHelpString(self) -> str:  # noqa: N802
        return _tr(HELP)

    def createInstance(self) -> DownscaleAlgorithm:  # noqa: N802
        return DownscaleAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, _tr("Input raster")))
        self.addParameter(
            QgsProcessingParameterBand(
                self.BANDS, _tr("Bands (empty: all)"), None, self.INPUT, optional=True, allowMultiple=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SCALE, _tr("Scale factor, > 1 (or set a target resolution)"), DOUBLE, None, True, 1.0
            )
        )
        resolution = QgsProcessingParameterNumber(
            self.RESOLUTION,
            _tr("Target resolution, in the layer's CRS units (or set a scale)"),
            DOUBLE,
            None,
            True,
            0.0,
        )
        # the dialog's spin box rounds to 6 decimals by default: 1 arc-second (1/3600 degree) would become
        # 0.000278 and a scale of 2.9976 instead of 3
        resolution.setMetadata({"widget_wrapper": {"decimals": 12}})
        self.addParameter(resolution)
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                _tr("Model: a shipped model's name or a .safetensors file (empty: dem)"),
                optional=True,
                fileFilter=_tr("geosr models (*.safetensors);;All files (*)"),
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.DEVICE, _tr("Device"), self.DEVICES, defaultValue="auto", usesStaticStrings=True
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    self.TILE_SIZE,
                    _tr("Tile size (output pixels per side)"),
                    defaultValue=DEFAULT_TILE_SIZE,
                    minValue=16,
                )
            )
        )
        self.addParameter(
            self._switch_parameter(
                self.CONSERVE,
                "Conserve: output pixels average to their input cell (model: as the model says, on or off)",
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterEnum(
                    self.ENSEMBLE,
                    _tr("Ensemble: copies averaged, 1, 4 (flips) or 8 (flips and rotations); give the number itself"),
                    self.ENSEMBLES,
                    defaultValue="1",
                    usesStaticStrings=True,
                )
            )
        )
        calibrate = self._switch_parameter(self.CALIBRATE, "Calibrate: model (as the model says), on or off")
        self.addParameter(_advanced(calibrate))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, _tr("Downscaled raster")))
        # added after OUTPUT, so that the parameters above keep their places (scripts, models and
        # qgis_process help list them in this order); the dialog shows outputs last anyway
        self.addParameter(
            _advanced(
                QgsProcessingParameterEnum(
                    self.PRECISION,
                    _tr("Precision: the network's arithmetic, fp32 (default), bf16 or fp16 (faster on a GPU)"),
                    self.PRECISIONS,
                    defaultValue="fp32",
                    usesStaticStrings=True,
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterNumber(
                    self.BATCH_SIZE,
                    _tr("Batch size: tile images per network call (more helps on a GPU)"),
                    defaultValue=DEFAULT_BATCH_SIZE,
                    minValue=1,
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterBoolean(
                    self.COG, _tr("Cloud Optimized GeoTIFF (COG, with overviews)"), defaultValue=False
                )
            )
        )
        self.addParameter(
            _advanced(
                QgsProcessingParameterBoolean(
                    self.KEEP_DTYPE,
                    _tr("Keep data type: write the input's data type (rounded, clipped) instead of float32"),
                    defaultValue=False,
                )
            )
        )

    def _switch_parameter(self, name: str, description: str) -> QgsProcessingParameterEnum:
        """A model / on / off choice (:data:`SWITCHES`), ``model`` by default."""
        return QgsProcessingParameterEnum(
            name, _tr(description), list(self.SWITCHES), defaultValue="model", usesStaticStrings=True
        )

    def canExecute(self) -> tuple[bool, str]:  # noqa: N802
        try:
            find_geosr(_configured_executable())
        except GeosrNotFound as exc:
            return False, str(exc)
        return True, ""

    def checkParameterValues(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[bool, str]:
        try:
            parameters = self._normalised(parameters)
        except QgsProcessingException as exc:
            return False, str(exc)
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        try:
            self._scale_and_resolution(parameters, context)
            _check_output_name(self._output_name(parameters, context))
        except QgsProcessingException as exc:
            return False, str(exc)
        return True, ""

    def processAlgorithm(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        feedback = feedback or QgsProcessingFeedback()  # alg.run(parameters, context, None) passes none
        parameters = self._normalised(parameters)
        scale, resolution = self._scale_and_resolution(parameters, context)
        output = self._output(parameters, context)
        source, bands = self._source(parameters, context, output, feedback)
        job = Job(
            source=source,
            output=output,
            scale=scale,
            resolution=resolution,
            model=self.parameterAsFile(parameters, self.MODEL, context).strip(),
            device=self._device_value(parameters, context),
            tile_size=self._tile_size_value(parameters, context),
            conserve=self._switch_value(parameters, self.CONSERVE, context),
            ensemble=self._ensemble_value(parameters, context),
            calibrate=self._switch_value(parameters, self.CALIBRATE, context),
            bands=tuple(bands),
            precision=self._precision_value(parameters, context),
            batch_size=self._batch_size_value(parameters, context),
            cog=self._flag_value(parameters, self.COG, context),
            keep_dtype=self._flag_value(parameters, self.KEEP_DTYPE, context),
        )
        try:
            run(job, feedback, find_geosr(_configured_executable()))
        except (GeosrNotFound, RunError) as exc:
            raise QgsProcessingException(str(exc)) from exc
        except Canceled as exc:
            raise QgsProcessingException(_tr("Canceled: geosr stopped and wrote no output")) from exc
        return {self.OUTPUT: output}

    def _normalised(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """``parameters`` with a device or a precision given by its number, the Conserve and Calibrate
        choices by their number or as true/false (:meth:`_switch`), an ensemble as a number
        (``{"ENSEMBLE": 4}``), bands separated by ',' (as geosr's ``--bands``) and the COG and Keep data
        type switches as true/false or 1/0 (:meth:`_flag`) turned into their options, and text that is not
        a number refused for the scale and the resolution (QGIS would read it as 0), and a batch size that
        is not a whole number of at least 1 refused (QGIS would quietly make 2.5 a whole number)."""
        for name in (self.MODEL, self.SCALE, self.RESOLUTION):
            if isinstance(parameters.get(name), (list, tuple)):  # given twice in qgis_process: QGIS read "" or 0
                raise QgsProcessingException(
                    _tr("{} takes one value, got {}").format(name, ", ".join(map(str, parameters[name])))
                )
        for name in (self.SCALE, self.RESOLUTION):
            value = parameters.get(name)
            if isinstance(value, str) and value.strip():
                try:
                    float(value)
                except ValueError:
                    raise QgsProcessingException(
                        _tr("{} must be a number (for example {}), got '{}'").format(
                            name, "4" if name == self.SCALE else "10", value
                        )
                    ) from None
            self._check_range(name, value)
        bands = parameters.get(self.BANDS)
        if isinstance(bands, str) and bands.strip():
            parameters = {**parameters, self.BANDS: ";".join(map(str, self._bands(bands)))}
        device = parameters.get(self.DEVICE)
        if _is_set(device) and not isinstance(device, QgsProperty):
            parameters = {**parameters, self.DEVICE: self._device(device)}
        value = parameters.get(self.TILE_SIZE)
        if _is_set(value) and not isinstance(value, QgsProperty):
            parameters = {**parameters, self.TILE_SIZE: self._whole(value, self.TILE_SIZE, 16)}
        for name in (self.CONSERVE, self.CALIBRATE):
            parameters = self._switch(parameters, name)
        value = parameters.get(self.PRECISION)
        if _is_set(value) and not isinstance(value, QgsProperty):
            parameters = {**parameters, self.PRECISION: self._precision(value)}
        value = parameters.get(self.BATCH_SIZE)
        if _is_set(value) and not isinstance(value, QgsProperty):
            parameters = {**parameters, self.BATCH_SIZE: self._batch_size(value)}
        for name in (self.COG, self.KEEP_DTYPE):
            value = parameters.get(name)
            if _is_set(value) and not isinstance(value, QgsProperty):
                parameters = {**parameters, name: self._flag(value, name)}
        value = parameters.get(self.ENSEMBLE)
        if not _is_set(value) or isinstance(value, QgsProperty):
            return parameters
        return {**parameters, self.ENSEMBLE: self._ensemble(value)}

    def _bands(self, value: Any) -> list[int]:
        """Band numbers given as text: separated by ';' (QGIS's way, which reads anything else as band 0) or
        by ',' (geosr's --bands, and its messages)."""
        numbers = [part.strip() for part in re.split(r"[;,]", str(value))]
        if not all(number.isdigit() for number in numbers):
            raise QgsProcessingException(
                _tr("BANDS must be band numbers separated by ';' (for example 3;1), got '{}'").format(value)
            )
        return [int(number) for number in numbers]

    def _device(self, value: Any) -> str:
        """A device by name, or by its number in ``qgis_process help`` ("0: auto, 1: cpu")."""
        text = _as_text(value)
        if text.isdigit() and int(text) < len(self.DEVICES):
            text = self.DEVICES[int(text)]
        if text not in self.DEVICES:
            raise QgsProcessingException(_tr("DEVICE must be one of {}, got {}").format(", ".join(self.DEVICES), value))
        return text

    def _ensemble(self, value: Any) -> str:
        """An ensemble size, 1, 4 or 8, given as the number itself (``4``, ``4.0`` or ``"4"``)."""
        text = str(value).strip()
        try:
            number = float(text) if not isinstance(value, bool) else float("nan")
        except ValueError:
            number = float("nan")
        if number.is_integer():
            text = str(int(number))
        if text not in self.ENSEMBLES:
            raise QgsProcessingException(
                _tr("ENSEMBLE must be 1, 4 or 8 (copies of the layer averaged), got {}").format(value)
            )
        return text

    def _evaluated(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> Any:
        """A parameter's value as given, a data-defined one (a QgsProperty) evaluated to its text ("" for none)."""
        value = parameters.get(name)
        if isinstance(value, QgsProperty):
            text, _ = value.valueAsString(context.expressionContext(), "")
            return text
        return value

    def _precision(self, value: Any) -> str:
        """A precision as its option: given by name (any case) or by its number in ``qgis_process help``
        (0 fp32, 1 bf16, 2 fp16)."""
        text = _as_text(value).lower()
        if text.isdigit() and int(text) < len(self.PRECISIONS):
            text = self.PRECISIONS[int(text)]
        if text not in self.PRECISIONS:
            raise QgsProcessingException(
                _tr("PRECISION must be one of {}, got {}").format(", ".join(self.PRECISIONS), value)
            )
        return text

    def _batch_size(self, value: Any) -> int:
        """A batch size as a whole number of at least 1 (``4``, ``4.0`` or ``"4"``)."""
        return self._whole(value, self.BATCH_SIZE, 1)

    def _whole(self, value: Any, name: str, least: int) -> int:
        """A batch or tile size as a whole number from ``least`` to the largest QGIS's integers hold (beyond
        it QGIS would read 0)."""
        try:
            number = float(str(value).strip()) if not isinstance(value, bool) else float("nan")
        except ValueError:
            number = float("nan")
        if not (number.is_integer() and least <= number <= 2**31 - 1):
            what, example = ("tile images", 4) if name == self.BATCH_SIZE else ("output pixels a side", 1024)
            raise QgsProcessingException(
                _tr("{} must be a whole number of {}, at least {} (for example {}), got {}").format(
                    name, what, least, example, value
                )
            )
        return int(number)

    def _flag(self, value: Any, name: str) -> bool:
        """A COG or Keep data type switch as a bool: true or false (any case), 1 or 0. QGIS itself would
        read any other text as true."""
        text = _as_text(value).lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise QgsProcessingException(_tr("{} must be true or false, got {}").format(name, value))

    def _precision_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        """The precision's option, a data-defined one (a QgsProperty, evaluated only here) included."""
        value = parameters.get(self.PRECISION)
        if isinstance(value, QgsProperty):  # QGIS would take a value outside the options as the default
            text, _ = value.valueAsString(context.expressionContext(), "fp32")
        else:
            text = self.parameterAsEnumString(parameters, self.PRECISION, context)
        return self._precision(text or "fp32")

    def _device_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        """The device, a data-defined one included (QGIS would take a value outside the options as auto)."""
        value = self._evaluated(parameters, self.DEVICE, context)
        return self._device(value) if _is_set(value) else self.DEVICES[0]

    def _ensemble_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> int:
        """The ensemble size, a data-defined one included (QGIS would take 3 as the default, 1)."""
        value = self._evaluated(parameters, self.ENSEMBLE, context)
        return int(self._ensemble(value)) if _is_set(value) else 1

    def _tile_size_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> int:
        """The tile size, a data-defined one included (QGIS would take text as the default), checked as
        given: a Processing model does not apply the parameter's minimum, and QGIS reads 3e9 as 0."""
        value = self._evaluated(parameters, self.TILE_SIZE, context)
        return self._whole(value, self.TILE_SIZE, 16) if _is_set(value) else DEFAULT_TILE_SIZE

    def _bands_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[int]:
        """The bands chosen (empty: all), a data-defined text ('3;1', '3,1') included; "" (qgis_process BANDS=)
        means all bands, as the label says (QGIS would read it as band 0)."""
        value = self._evaluated(parameters, self.BANDS, context)
        if not _is_set(value):
            return []
        if isinstance(value, str):
            return self._bands(value) if value.strip() else []
        return self.parameterAsInts(parameters, self.BANDS, context)

    def _batch_size_value(self, parameters: dict[str, Any], context: QgsProcessingContext) -> int:
        """The batch size, a data-defined one included (checked as a given one is)."""
        value = parameters.get(self.BATCH_SIZE)
        if isinstance(value, QgsProperty):
            text, _ = value.valueAsString(context.expressionContext(), str(DEFAULT_BATCH_SIZE))
            return self._batch_size(text or DEFAULT_BATCH_SIZE)
        return self.parameterAsInt(parameters, self.BATCH_SIZE, context)

    def _flag_value(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> bool:
        """The COG or Keep data type switch, a data-defined one included (QGIS would read 'no' as true)."""
        value = parameters.get(name)
        if isinstance(value, QgsProperty):
            text, _ = value.valueAsString(context.expressionContext(), "false")
            return self._flag(text or "false", name)
        return self.parameterAsBoolean(parameters, name, context)

    def _switch(self, parameters: dict[str, Any], name: str) -> dict[str, Any]:
        """``parameters`` with a Conserve or Calibrate choice given as its option (:meth:`_choice`)."""
        value = parameters.get(name)
        if not _is_set(value) or isinstance(value, QgsProperty):
            return parameters
        return {**parameters, name: self._choice(value, name)}

    def _choice(self, value: Any, name: str) -> str:
        """A Conserve or Calibrate choice as its option: given by name, by its number in ``qgis_process help``
        (0 model, 1 on, 2 off), or as true (on) or false: off for Calibrate, and for Conserve, as the box of
        earlier versions took it, as the model says."""
        choices = list(self.SWITCHES)
        text = _as_text(value).lower()
        if text in ("true", "false"):
            text = "on" if text == "true" else "model" if name == self.CONSERVE else "off"
        if text.isdigit() and int(text) < len(choices):
            text = choices[int(text)]
        if text not in choices:
            raise QgsProcessingException(_tr("{} must be model, on or off, got {}").format(name, value))
        return text

    def _switch_value(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> bool | None:
        """True, False or None (as the model says) for a Conserve or Calibrate choice, data-defined ones
        (a QgsProperty, evaluated only here) included."""
        value = parameters.get(name)
        if isinstance(value, QgsProperty):  # QGIS would take a value outside the options as the default
            text, _ = value.valueAsString(context.expressionContext(), "model")
        else:
            text = self.parameterAsEnumString(parameters, name, context)
        return self.SWITCHES[self._choice(text or "model", name)]

    def _check_range(self, name: str, value: Any) -> None:
        """A scale of 1 or less, or a resolution of 0 or less, or either not finite, refused in geosr's words:
        QGIS's own check said only "Incorrect parameter value for SCALE" (SCALE=0.5, -2, inf)."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or not str(value).strip():
            return  # unset, or a QgsProperty evaluated at the run
        number = float(value)
        if name == self.SCALE and not (math.isfinite(number) and number > 1.0):
            fix = (
                "geosr only refines rasters (use gdalwarp to coarsen one)"
                if math.isfinite(number)
                else "give a factor such as 2 or 4"
            )
            raise QgsProcessingException(
                _tr("scale must be greater than 1, got {} (the Scale factor, SCALE); {}").format(value, fix)
            )
        if name == self.RESOLUTION and not (math.isfinite(number) and number > 0.0):
            raise QgsProcessingException(
                _tr(
                    "resolution must be a positive number, got {} "
                    "(the Target resolution, RESOLUTION, in the layer's CRS units)"
                ).format(value)
            )

    def _scale_and_resolution(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[float | None, float | None]:
        """The scale factor and the target resolution, exactly one of them set."""
        for name in (self.SCALE, self.RESOLUTION):
            value = parameters.get(name)
            if isinstance(value, QgsProperty):  # QGIS reads an expression's text as 0: refused as given text is
                text, _ = value.valueAsString(context.expressionContext(), "")
                if _is_set(text):
                    self._normalised({name: text})
        scale, resolution = (
            self.parameterAsDouble(parameters, name, context) if _is_set(parameters.get(name)) else None
            for name in (self.SCALE, self.RESOLUTION)
        )
        if scale is None and resolution is None:
            raise QgsProcessingException(
                _tr("Set the Scale factor (SCALE, for example 4) or the Target resolution (RESOLUTION)")
            )
        if scale is not None and resolution is not None:
            raise QgsProcessingException(
                _tr("Set either the Scale factor (SCALE) or the Target resolution (RESOLUTION), not both")
            )
        return scale, resolution

    def _output(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        _check_output_name(output)
        return output

    def _output_name(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        """The output as given, without making it: ``parameterAsOutputLayer`` makes a temporary output's file
        name and adds it to the layers to load, and the check before the run (the dialog's, with the context
        of the run) then left one that the run never wrote ("The following layers were not correctly
        generated" after every run to a temporary layer). "" for a temporary output."""
        value = parameters.get(self.OUTPUT, self.parameterDefinition(self.OUTPUT).defaultValue())
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            value = value.sink
        if isinstance(value, QgsProperty):
            value, _ = value.valueAsString(context.expressionContext(), "")  # PyQGIS returns (value, ok)
        name = "" if value is None else str(value)
        return "" if name in ("", QgsProcessing.TEMPORARY_OUTPUT) else name

    def _source(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        output: str,
        feedback: QgsProcessingFeedback | None = None,
    ) -> tuple[str, list[int]]:
        """The input as GDAL opens it, and the bands chosen (empty: all), which geosr picks itself.

        The input is the layer's source, or a VRT of it when QGIS opens it with GDAL open options
        (``path|option:KEY=VALUE``, which GDAL and geosr do not read as a name) or when the file has no
        CRS but the layer has one in QGIS (Set CRS, or the project's). Refused when ``output`` is one of
        the input's files (behind a VRT, geosr could not tell)."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        if not layer.isValid():  # QGIS could not open it (a NetCDF of several variables): geosr's words would not fit
            raise QgsProcessingException(
                _tr(
                    "'{}' is not a layer QGIS could open; add it as a layer that draws first (of a NetCDF or HDF5 "
                    'file of several variables, one of them: NETCDF:"file.nc":name)'
                ).format(layer.source())
            )
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                _tr("'{}' is a {} layer; geosr reads files through GDAL: save it as a GeoTIFF first").format(
                    layer.name(), layer.providerType()
                )
            )
        name, open_options = _gdal_name(layer.source())
        _refuse_input_as_output(layer, name, open_options, output)
        bands = self._bands_value(parameters, context)
        if bands == list(range(1, layer.bandCount() + 1)):
            bands = []
        _check_bands(layer, bands)
        crs, note = _assigned_crs(layer, name, open_options)
        for warning in [note, _user_nodata_note(layer)]:
            if warning and feedback is not None:
                feedback.pushWarning(warning)
        if not open_options and not crs:
            return name, bands
        return _vrt(layer, name, open_options, crs), bands


def _configured_executable() -> str:
    return ProcessingConfig.getSetting(EXECUTABLE_SETTING) or ""


def _as_text(value: Any) -> str:
    """A parameter value as text, a whole number given as a float (4.0, as QGIS passes numbers) as ``4``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _is_set(value: Any) -> bool:
    """Whether an optional parameter value was given (not None, NULL or an empty string)."""
    return value is not None and value != "" and not (hasattr(value, "isNull") and value.isNull())


def _gdal_name(source: str) -> tuple[str, list[str]]:
    """A GDAL layer source split into the name GDAL opens and the open options QGIS adds to it
    (``path|option:KEY=VALUE``)."""
    from qgis.core import QgsProviderRegistry

    registry = QgsProviderRegistry.instance()
    parts = registry.decodeUri("gdal", source)
    open_options = [str(option) for option in parts.pop("openOptions", None) or []]
    if not open_options:
        return source, []
    return registry.encodeUri("gdal", parts), open_options


def _open(name: str, open_options: list[str]) -> Any:
    from osgeo import gdal

    try:
        return gdal.OpenEx(name, gdal.OF_RASTER, open_options=open_options)
    except RuntimeError:  # with gdal.UseExceptions()
        return None


def _check_output_name(output: str) -> None:
    """Refuse an output that is not a GeoTIFF (nothing to check of a temporary output, ``""``: its name is
    made with the parameter's .tif extension)."""
    if output and Path(output).suffix.lower() not in (".tif", ".tiff"):
        raise QgsProcessingException(
            _tr("geosr writes GeoTIFF: give the output a .tif name instead of '{}'").format(output)
        )


def _refuse_input_as_output(layer: QgsRasterLayer, name: str, open_options: list[str], output: str) -> None:
    """Refuse an ``output`` that is one of the files the input is read from: geosr replaces an existing
    output, and it recognises its input only by name, not behind a VRT (the plugin's or the user's)."""
    target = Path(output)
    if not target.is_file():
        return
    for file in [*_files_read(name, open_options), name]:
        try:
            same = Path(file).is_file() and target.samefile(file)
        except OSError:
            same = False
        if same:
            raise QgsProcessingException(
                _tr(
                    "output '{}' would replace '{}', which the input '{}' is read from; choose another "
                    "Downscaled raster (OUTPUT)"
                ).format(output, file, layer.name())
            )


def _files_read(name: str, open_options: list[str]) -> list[str]:
    """The files GDAL reads for the raster ``name``, through VRTs of VRTs (GDAL lists a VRT's own sources, not
    those of a VRT among them)."""
    dataset = _open(name, open_options)
    listed = list((dataset.GetFileList() or []) if dataset is not None else [])
    dataset = None
    opened = {name}
    pending = [f for f in listed if f.lower().endswith(".vrt")]
    while pending:
        inner_name = pending.pop()
        if inner_name in opened:
            continue
        opened.add(inner_name)
        inner = _open(inner_name, [])
        more = (inner.GetFileList() or []) if inner is not None else []
        inner = None
        for file in more:
            if file not in listed:
                listed.append(file)
                if file.lower().endswith(".vrt"):
                    pending.append(file)
    return listed


def _assigned_crs(layer: QgsRasterLayer, name: str, open_options: list[str]) -> tuple[str, str]:
    """The layer's CRS (WKT) when QGIS gives the layer one that its georeferenced file lacks, else "", and a
    warning to show, else "".

    A file without a CRS, or with only GDAL's unnamed local one (``LOCAL_CS["unnamed"]``, which QGIS shows as an
    unknown CRS), takes the layer's (Set Layer CRS, or the project's). A CRS the file has is kept even if the
    layer's differs, the file's may hold what QGIS's does not, with a warning: the output will not overlay the
    layer as QGIS draws it."""
    if not layer.crs().isValid():
        return "", ""
    dataset = _open(name, open_options)
    if dataset is None or dataset.GetGCPCount():
        return "", ""
    if dataset.GetGeoTransform(can_return_null=True) is None:  # pixel space: nothing to place in a CRS
        return "", ""
    from qgis.core import QgsCoordinateReferenceSystem

    stored = dataset.GetProjectionRef()
    own = layer.dataProvider().crs()  # the file's, as QGIS reads it; the layer's is Set Layer CRS's
    if not _differ(own, layer.crs(), layer.extent()):
        return "", ""  # as the file says (a GDAL 'unnamed' local CRS too, unless the layer was given another)
    if stored and not _unnamed_local(stored):
        return "", _tr(
            "the layer's CRS ({}) is not its file's ({}); the output keeps the file's, as geosr downscale does: "
            "assign the layer's to the file first (gdal_edit.py -a_srs) to have it"
        ).format(_crs_name(layer.crs()), _crs_name(own))
    return layer.crs().toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL), ""


def _differ(a: Any, b: Any, extent: Any) -> bool:
    """Whether two CRSs place the coordinates of ``extent`` differently: not merely in name, axis order or spelling
    (EPSG:4326 and OGC:CRS84, a CRS and the same one read from its PROJ string), which QGIS counts as different."""
    from qgis.core import QgsCoordinateTransform, QgsPointXY, QgsProject

    if not a.isValid() or not b.isValid():
        return a.isValid() != b.isValid()
    if a == b:
        return False
    if not a.toProj() or not b.toProj():  # an engineering CRS ('unnamed'): nothing to transform with
        return True
    try:
        transform = QgsCoordinateTransform(a, b, QgsProject.instance())
        corners = [
            QgsPointXY(x, y)
            for x in (extent.xMinimum(), extent.xMaximum())
            for y in (extent.yMinimum(), extent.yMaximum())
        ]
        size = max(extent.width(), extent.height(), 1e-9)
        return any(transform.transform(p).distance(p) > 1e-6 * size for p in corners)
    except Exception:  # noqa: BLE001 - no transformation between them: they differ
        return True


def _crs_name(crs: Any) -> str:
    """A CRS in a few words: its code, else its name, else its PROJ string."""
    return crs.authid() or (crs.description() if crs.description() not in ("", "unknown") else "") or crs.toProj()


def _unnamed_local(wkt: str) -> bool:
    """Whether a file's CRS is only GDAL's placeholder for none: a local (engineering) CRS named 'unnamed' or
    'Unknown', as a GeoTIFF without CRS keys but with linear units reads."""
    head = wkt.lstrip().upper()
    if not head.startswith(("LOCAL_CS[", "ENGCRS[")):
        return False
    name = head.split("[", 1)[1].split(",", 1)[0].strip().strip('"').lower()
    return name in ("unnamed", "unknown", "")


def _user_nodata_note(layer: QgsRasterLayer) -> str:
    """A warning where the layer has no-data settings of its own in QGIS (Properties > Transparency: additional
    no-data values, or the file's no-data value not used), which geosr, reading the file, does not see; else ""."""
    provider = layer.dataProvider()
    changed = [
        band
        for band in range(1, layer.bandCount() + 1)
        if len(provider.userNoDataValues(band))
        or (provider.sourceHasNoDataValue(band) and not provider.useSourceNoDataValue(band))
    ]
    if not changed:
        return ""
    return _tr(
        "the layer's own no-data settings in QGIS (band {}: Properties > Transparency) are not used: geosr reads "
        "the file's nodata; to change it, set it in the file (gdal_edit.py -a_nodata VALUE) or save the layer as "
        "a GeoTIFF with it"
    ).format(changed[0])


def _check_bands(layer: QgsRasterLayer, bands: list[int]) -> None:
    """Refuse bands the layer lacks (geosr picks the bands; it reads an alpha band left out as a mask)."""
    missing = [band for band in bands if not 1 <= band <= layer.bandCount()]
    if missing:
        raise QgsProcessingException(
            _tr("'{}' has {} band(s); there is no band {}").format(layer.name(), layer.bandCount(), missing[0])
        )


def _vrt(layer: QgsRasterLayer, name: str, open_options: list[str], crs: str) -> str:
    """A temporary VRT of ``layer`` (GDAL name ``name`` opened with ``open_options``, which the VRT keeps
    for its source), in ``crs`` (WKT) when it is given, with all bands and their metadata."""
    from osgeo import gdal

    source = _open(name, open_options)
    if source is None:
        raise QgsProcessingException(_tr("GDAL could not open '{}'").format(layer.source()))
    path = QgsProcessingUtils.generateTempFilename("geosr_input.vrt")
    try:
        dataset = gdal.Translate(path, source, format="VRT", outputSRS=crs or None)
    except RuntimeError:  # with gdal.UseExceptions()
        dataset = None
    source = None
    if dataset is None:
        raise QgsProcessingException(_tr("GDAL could not read '{}'").format(layer.source()))
    _copy_metadata_domains(_open(name, open_options), dataset)
    dataset = None  # closing the dataset writes the VRT
    return path


def _copy_metadata_domains(source: Any, vrt: Any) -> None:
    """The named metadata domains of ``source`` and its bands, onto ``vrt``: gdal.Translate copies only the
    default one, and geosr carries the others to the output (as it does reading the file itself)."""
    if source is None:
        return
    # GDAL's own domains describe the file's structure or its georeferencing, which the VRT states itself
    own = ("", "IMAGE_STRUCTURE", "DERIVED_SUBDATASETS", "SUBDATASETS", "RPC", "GEOLOCATION", "xml:XMP")
    pairs = [(source, vrt)] + [
        (source.GetRasterBand(i), vrt.GetRasterBand(i)) for i in range(1, source.RasterCount + 1)
    ]
    for src, dst in pairs:
        for domain in src.GetMetadataDomainList() or []:
            if domain not in own and not domain.startswith(("xml:", "json:")):
                dst.SetMetadata(src.GetMetadata(domain), domain)
