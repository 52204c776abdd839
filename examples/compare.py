"""Show what `geosr downscale` did to a DEM: georeferencing, consistency, and a hillshade picture.

Usage: python examples/compare.py INPUT.tif OUTPUT.tif [PICTURE.png]

OUTPUT is geosr's output of INPUT (finer, same CRS and bounds; anything else is refused in one line).
Prints both rasters' CRS, bounds, size and pixel size and the scale along each axis; compares the output
averaged back onto the input grid with the input (how well the fine raster respects the coarse cell
values; at a non-whole scale such as x2.5 each fine pixel counts with the fraction of it inside the
input cell); and writes a PNG with hillshades of the input (nearest neighbour), bicubic interpolation,
classical back-projection (the best classical method, `--model backprojection`) and the geosr output
over a zoomed window.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

USAGE = "usage: python examples/compare.py INPUT.tif OUTPUT.tif [PICTURE.png]"


class Refused(Exception):
    """Bad input: its message is the one line printed."""


def describe(name: str, ds: rasterio.DatasetReader) -> None:
    print(f"{name}: {ds.width} x {ds.height} px, pixel {ds.res[0]:.3g} x {ds.res[1]:.3g}, {ds.crs}, bounds {ds.bounds}")


def open_raster(path: Path, role: str) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        reason = "no such file" if not path.exists() else str(exc)
        raise Refused(f"cannot open {role} {path}: {reason}; give an existing GeoTIFF ({USAGE})") from None


def check_pair(src: rasterio.DatasetReader, out: rasterio.DatasetReader, src_path: Path, out_path: Path) -> None:
    """Refuse an OUTPUT that is not a finer raster over the same CRS and bounds as INPUT."""
    if out.width <= src.width or out.height <= src.height:
        raise Refused(
            f"OUTPUT {out_path} ({out.width} x {out.height} px) is not finer than INPUT {src_path} "
            f"({src.width} x {src.height} px); give the input first, then geosr's output of it ({USAGE})"
        )
    if src.crs != out.crs:
        raise Refused(
            f"OUTPUT {out_path} has CRS {out.crs}, INPUT {src_path} has {src.crs}; geosr keeps the CRS, so give "
            f"the output of `geosr downscale {src_path}`"
        )
    # geosr keeps the bounds exactly: allow float rounding only (a thousandth of an output pixel)
    tolerance = 1e-3 * min(out.res)
    offset = max(abs(a - b) for a, b in zip(src.bounds, out.bounds, strict=True))
    if not offset <= tolerance:
        raise Refused(
            f"OUTPUT {out_path} has bounds {tuple(out.bounds)}, INPUT {src_path} has {tuple(src.bounds)} (apart by "
            f"up to {offset / min(out.res):.3g} output pixels); geosr keeps the bounds, so give the output of "
            f"`geosr downscale {src_path}`"
        )


def overlap_matrix(n_coarse: int, n_fine: int) -> np.ndarray:
    """(n_coarse, n_fine) weights: the fraction of coarse cell i covered by fine cell j, over one shared extent."""
    coarse_edges = np.arange(n_coarse + 1) / n_coarse
    fine_edges = np.arange(n_fine + 1) / n_fine
    lo = np.maximum(coarse_edges[:-1, None], fine_edges[None, :-1])
    hi = np.minimum(coarse_edges[1:, None], fine_edges[None, 1:])
    weights = np.where(hi - lo > 1e-12, hi - lo, 0.0)  # no float-rounding slivers at shared edges
    return weights / weights.sum(axis=1, keepdims=True)


def average_back(fine: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``fine`` averaged onto a coarser grid of ``shape`` over the same extent (area-weighted; NaN where
    any fine pixel touching the cell is NaN). At a whole scale this is geosr.degrade.area_average."""
    rows, cols = overlap_matrix(shape[0], fine.shape[0]), overlap_matrix(shape[1], fine.shape[1])
    missing = rows @ np.isnan(fine).astype(np.float64) @ cols.T > 0
    return np.where(missing, np.nan, rows @ np.nan_to_num(fine) @ cols.T)


def nearest(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour enlargement of ``coarse`` to ``shape`` over the same extent (any factor)."""
    (h, w), (ho, wo) = coarse.shape, shape
    rows = ((np.arange(ho) + 0.5) * h / ho).astype(int)
    cols = ((np.arange(wo) + 0.5) * w / wo).astype(int)
    return coarse[np.ix_(rows, cols)]


def bicubic(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from geosr.tiling import Span, interpolation_matrix

    (h, w), (ho, wo) = coarse.shape, shape
    rows = interpolation_matrix(Span(0, ho), Span(0, h), h, ho)
    cols = interpolation_matrix(Span(0, wo), Span(0, w), w, wo)
    return rows @ coarse @ cols.T


def one_scale(src: rasterio.DatasetReader, out: rasterio.DatasetReader) -> float | None:
    """The one scale s that gives round(n * s) output pixels on both axes, as `geosr downscale` makes them
    (its GEOSR_SCALE tag when that fits, such as 2.5 for 1008 x 860 pixels from 403 x 344), or None."""
    candidates = [out.width / src.width, out.height / src.height]
    with contextlib.suppress(ValueError):  # no tag, or not a number
        candidates.insert(0, float(out.tags().get("GEOSR_SCALE", "")))
    for s in candidates:
        if round(src.width * s) == out.width and round(src.height * s) == out.height:
            return s
    return None


def main(src_path: Path, out_path: Path, picture: Path) -> None:
    if not picture.parent.is_dir():
        raise Refused(f"cannot write {picture}: folder {picture.parent} does not exist; create it or give another path")
    with open_raster(src_path, "INPUT") as src, open_raster(out_path, "OUTPUT") as out:
        describe("input ", src)
        describe("output", out)
        check_pair(src, out, src_path, out_path)
        sx, sy = out.width / src.width, out.height / src.height
        scale = one_scale(src, out)
        label = f"x{sx:.4g} by x{sy:.4g}" if scale is None else f"x{scale:.4g}"
        print(f"same CRS and bounds: True; scale {label} ({sx:.4g} east-west, {sy:.4g} north-south)")
        coarse = src.read(1, masked=True).astype(np.float64).filled(np.nan)
        fine = out.read(1, masked=True).astype(np.float64).filled(np.nan)
        for path, role, data in ((src_path, "INPUT", coarse), (out_path, "OUTPUT", fine)):
            if not np.isfinite(data).any():
                raise Refused(f"{role} {path} holds no data in band 1 (all nodata); give a raster with values")
        whole = sx == sy and sx == int(sx)
        diff = average_back(fine, coarse.shape) - coarse
        how = "" if whole else " (non-whole scale: fine pixels weighted by their area inside each cell)"
        print(
            f"output averaged back onto the input grid vs input{how}: RMSE {np.sqrt(np.nanmean(diff**2)):.3f}, "
            f"max |error| {np.nanmax(np.abs(diff)):.3f} (units of the raster)"
        )
        draw(out, coarse, fine, scale, label, picture)


def draw(out, coarse: np.ndarray, fine: np.ndarray, scale: float | None, label: str, picture: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LightSource

    import geosr
    from geosr.georef import metres_per_degree

    filled = np.nan_to_num(coarse, nan=np.nanmean(coarse))
    panels = [("input (nearest)", nearest(coarse, fine.shape)), ("bicubic", bicubic(filled, fine.shape))]
    if scale is None:
        print("back-projection panel left out: the output's axes are not scaled by one factor")
    else:
        panels.append(("back-projection", geosr.downscale(coarse, scale, "backprojection", device="cpu")))
    panels.append(("geosr", fine))
    h, w = fine.shape
    window = (slice(h // 3, h // 3 + h // 3), slice(w // 3, w // 3 + w // 3))
    shade = LightSource(azdeg=315, altdeg=45)
    dx, dy = out.res
    if out.crs and out.crs.is_geographic:  # degrees to metres (WGS 84) at the centre, for a true-scale hillshade
        per_lon, per_lat = metres_per_degree((out.bounds.top + out.bounds.bottom) / 2)
        dx, dy = dx * float(per_lon), dy * float(per_lat)
    size = (5 * len(panels), 5 * (h // 3) / (w // 3) + 0.6)  # 5 inches a panel, and a line for the titles
    fig, axes = plt.subplots(1, len(panels), figsize=size, constrained_layout=True)
    for ax, (title, data) in zip(axes, panels, strict=True):
        ax.imshow(shade.hillshade(data[window], vert_exag=2, dx=dx, dy=dy), cmap="gray")
        ax.set_title(f"{title}, {label}")
        ax.set_axis_off()
    try:
        fig.savefig(picture, dpi=80)
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot write {picture}: {exc}; give a writable .png path") from None
    print(f"wrote {picture}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0)
    if len(args) not in (2, 3):
        print(f"Error: expected 2 or 3 arguments, got {len(args)}; {USAGE}", file=sys.stderr)
        raise SystemExit(2)
    out = Path(args[1])
    try:
        main(Path(args[0]), out, Path(args[2]) if len(args) > 2 else out.with_suffix(".png"))
    except Refused as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
