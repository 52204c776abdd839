"""geosr: super-resolution of geospatial rasters with a multichannel VDSR network.

``import geosr`` stays light: torch, rasterio and dask are imported where they are used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "downscale", "downscale_raster"]

from geosr import accessor as _accessor  # noqa: E402,F401  (registers the .geosr accessor)


def __getattr__(name: str) -> Any:
    """``geosr.downscale`` is :func:`geosr.predict.downscale` itself and ``geosr.downscale_raster``
    :func:`geosr.pipeline.downscale_raster` (a raster file to a GeoTIFF), imported when first asked for (so
    that their warnings name the caller's line, not a wrapper's)."""
    if name == "downscale":
        from geosr.predict import downscale

        return downscale
    if name == "downscale_raster":
        from geosr.pipeline import downscale_raster

        return downscale_raster
    raise AttributeError(f"module 'geosr' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with the two loaded on first use: tab completion and ``dir(geosr)`` show them."""
    return sorted({*globals(), "downscale", "downscale_raster"})
