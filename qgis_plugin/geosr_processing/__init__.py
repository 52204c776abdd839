"""geosr for QGIS: the ``geosr:downscale`` Processing algorithm (super-resolution of raster layers).

The plugin folder is ``geosr_processing`` (not ``geosr``) so that it never shadows the geosr package
it runs when geosr is installed in QGIS's Python.
"""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:  # noqa: N802 (the name QGIS calls)
    """Entry point QGIS calls with its interface object; returns the plugin."""
    from geosr_processing.plugin import GeosrPlugin

    return GeosrPlugin(iface)
