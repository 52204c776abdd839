"""Write examples/jacksboro_fault_dem.tif from matplotlib's bundled SRTM sample.

matplotlib ships ``sample_data/jacksboro_fault_dem.npz``: a real SRTM 3-arc-second DEM (344 x 403,
int16, metres) of the Jacksboro fault, Tennessee, with its longitude/latitude bounds. Row 0 of the
array is the northern edge, which the file calls ``ymin`` (its ``ymax`` is the southern edge). The
GeoTIFF gets EPSG:4326 and the transform that maps those bounds exactly onto the grid.

Usage: python examples/make_jacksboro_dem.py [OUTPUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.cbook
import numpy as np
import rasterio
from rasterio.transform import from_bounds


def main(output: Path) -> None:
    with matplotlib.cbook.get_sample_data("jacksboro_fault_dem.npz") as sample:
        elevation = np.asarray(sample["elevation"], dtype=np.int16)
        west, east = float(sample["xmin"]), float(sample["xmax"])
        north, south = float(sample["ymin"]), float(sample["ymax"])
    height, width = elevation.shape
    transform = from_bounds(west, south, east, north, width, height)
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": "int16",
        "crs": "EPSG:4326",
        "transform": transform,
        "nodata": -32768,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
        "predictor": 2,
    }
    with rasterio.open(output, "w", **profile) as dst:
        dst.write(elevation, 1)
        dst.set_band_description(1, "elevation")
        dst.set_band_unit(1, "m")
        dst.update_tags(
            SOURCE="SRTM 3-arc-second DEM of the Jacksboro fault, Tennessee (matplotlib sample_data)",
            VERTICAL_UNITS="metres",
        )
    print(f"wrote {output}: {width} x {height}, bounds {west}, {south}, {east}, {north}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("jacksboro_fault_dem.tif"))
