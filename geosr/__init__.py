"""geosr: super-resolution of geospatial rasters with a multichannel VDSR network.

``import geosr`` stays light: torch, rasterio and dask are imported where they are used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "downscale"]

from geosr import accessor as _accessor  # noqa: E402,F401  (registers the .geosr accessor)


def downscale(data: Any, scale: float, model: Any = None, **options: Any) -> Any:
    """Super-resolve a numpy or dask array; see :func:`geosr.predict.downscale`."""
    from geosr.predict import downscale as _downscale

    return _downscale(data, scale, model, **options)
