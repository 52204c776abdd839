"""The ``geosr`` Processing provider and its one setting, the geosr executable."""

from __future__ import annotations

from pathlib import Path

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from geosr_processing.algorithm import EXECUTABLE_SETTING, DownscaleAlgorithm

ICON = Path(__file__).with_name("icon.svg")


class GeosrProvider(QgsProcessingProvider):
    """Provider ``geosr``: its algorithm ids (``geosr:downscale``) are stable."""

    def id(self) -> str:
        return "geosr"

    def name(self) -> str:
        return "geosr"

    def longName(self) -> str:  # noqa: N802 (QGIS's names)
        return QCoreApplication.translate("geosr", "geosr super-resolution (VDSR)")

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def svgIconPath(self) -> str:  # noqa: N802
        return str(ICON)

    def load(self) -> bool:
        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                EXECUTABLE_SETTING,
                QCoreApplication.translate("geosr", "geosr executable (empty: geosr in QGIS's Python, or on the PATH)"),
                "",
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        ProcessingConfig.removeSetting(EXECUTABLE_SETTING)

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(DownscaleAlgorithm())

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]
