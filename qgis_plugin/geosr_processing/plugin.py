"""The plugin object: registers the geosr Processing provider (in the desktop and in ``qgis_process``)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from geosr_processing.provider import GeosrProvider


class GeosrPlugin:
    """Adds the ``geosr`` provider to the Processing toolbox; it has no menu or toolbar of its own."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: GeosrProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (called by QGIS and qgis_process)
        """Register the provider."""
        self.provider = GeosrProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
