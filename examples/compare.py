"""Show what `geosr downscale` did to a DEM: georeferencing, consistency, and a hillshade picture.

Usage: python examples/compare.py INPUT.tif OUTPUT.tif [PICTURE.png]

Prints both rasters' CRS, bounds, size and pixel size; checks that the output's bounds and CRS equal
the input's; compares the output averaged back onto the input grid with the input (how well the fine
raster respects the coarse cell values); and writes a PNG with hillshades of the input (nearest
neighbour), bicubic interpolation and the geosr output over a zoomed window.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import rasterio
from matplotlib.colors import LightSource

from geosr.degrade import area_average
from geosr.tiling import Span, interpolation_matrix


def describe(name: str, ds: rasterio.DatasetReader) -> None:
    print(f"{name}: {ds.width} x {ds.height} px, pixel {ds.res[0]:.3g} x {ds.res[1]:.3g}, {ds.crs}, bounds {ds.bounds}")


def bicubic(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    (h, w), (ho, wo) = coarse.shape, shape
    rows = interpolation_matrix(Span(0, ho), Span(0, h), h, ho)
    cols = interpolation_matrix(Span(0, wo), Span(0, w), w, wo)
    return rows @ coarse @ cols.T


def main(src_path: Path, out_path: Path, picture: Path) -> None:
    with rasterio.open(src_path) as src, rasterio.open(out_path) as out:
        describe("input ", src)
        describe("output", out)
        same = src.crs == out.crs and np.allclose(src.bounds, out.bounds, rtol=1e-9, atol=0)
        print(f"same CRS and bounds: {same}")
        coarse = src.read(1, masked=True).astype(np.float64).filled(np.nan)
        fine = out.read(1, masked=True).astype(np.float64).filled(np.nan)
        scale = out.width // src.width
        if out.width == src.width * scale and out.height == src.height * scale:
            back = area_average(fine, scale)
            diff = back - coarse
            print(
                f"output averaged back onto the input grid vs input: RMSE {np.sqrt(np.nanmean(diff**2)):.3f}, "
                f"max |error| {np.nanmax(np.abs(diff)):.3f} (units of the raster)"
            )
        cubic = bicubic(np.nan_to_num(coarse, nan=np.nanmean(coarse)), fine.shape)
        nearest = np.repeat(np.repeat(coarse, scale, 0), scale, 1)[: fine.shape[0], : fine.shape[1]]
        h, w = fine.shape
        window = (slice(h // 3, h // 3 + h // 3), slice(w // 3, w // 3 + w // 3))
        shade = LightSource(azdeg=315, altdeg=45)
        dx, dy = out.res
        if out.crs and out.crs.is_geographic:  # degrees to metres, for a true-scale hillshade
            dx *= 111_320 * np.cos(np.radians((out.bounds.top + out.bounds.bottom) / 2))
            dy *= 110_540
        fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
        for ax, (title, data) in zip(
            axes, [("input (nearest)", nearest), ("bicubic", cubic), ("geosr", fine)], strict=True
        ):
            ax.imshow(shade.hillshade(data[window], vert_exag=2, dx=dx, dy=dy), cmap="gray")
            ax.set_title(f"{title}, x{scale}")
            ax.set_axis_off()
        fig.savefig(picture, dpi=80)
        print(f"wrote {picture}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out = Path(sys.argv[2])
    main(Path(sys.argv[1]), out, Path(sys.argv[3]) if len(sys.argv) > 3 else out.with_suffix(".png"))
