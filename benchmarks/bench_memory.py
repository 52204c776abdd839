"""Peak memory of `geosr downscale` on a raster whose float32 output is larger than 4 GB.

Writes a smooth synthetic input raster, runs the `geosr downscale` command on it in a fresh process
with a tiny VDSR (2 layers of 4 features: the network's cost is beside the point here, the data
volume is), and prints the output size as float32, the wall time, the throughput and the command's
peak resident memory (target: under 2 GB, whatever the raster size, since the input is read and
the output written tile by tile).

Usage: python benchmarks/bench_memory.py [--size 8192] [--scale 4] [--tile-size 1024] [--keep DIR]
(the defaults give a 32768 x 32768 output: 4.29 GB of float32; the compressed GeoTIFF is smaller).

With ``--sizes 2000,6000,12000`` (and ``--tile-sizes 256,512``) it checks instead that the peak depends on the
tile size and not on the raster size: one run per input side and tile size, each on a raster written
strip by strip (its maker's memory bounded too) and deleted after its run, then a table of peak RSS and,
per tile size, how much it grows from the smallest raster to the largest (target: under
``GROWTH_MIB``). An audit found 16 MiB more per 1000 columns from the statistics pass, which read strips of
the full width (342 MiB at 2000 x 2000, 484 MiB at 12000 x 12000, tile 256, scale 2). With ``--netcdf`` the
inputs are NetCDF variables run with ``--variable`` (through dask): 493 / 657 / 1127 MiB at sides 2000 / 6000 /
12000 (tile 512, scale 2) before the statistics were computed ahead of the tiles and the tile graph was written
out one task per tile.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench_downscale import downscale_cmd, in_fresh_process, make_raster, raster_profile, run_measured

from geosr.testing import random_model

#: Peak resident memory the command must stay under, in MiB.
TARGET_MIB = 2048
#: How much the peak may grow from the smallest raster of ``--sizes`` to the largest, in MiB.
GROWTH_MIB = 32


def make_smooth_raster(path: Path, size: int) -> None:
    """A smooth float32 ``size`` x ``size`` GeoTIFF (tiled, DEFLATE), written 512 rows at a time."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    profile = raster_profile(size)
    x = np.linspace(0.0, size / 100, size)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 512):
            y = x[top : top + 512, None]
            values = 300 + 100 * np.sin(x[None, :]) * np.cos(y) + 10 * np.sin(5 * x[None, :] + 3 * y)
            dst.write(values.astype(np.float32), 1, window=Window(0, top, size, len(y)))


def make_smooth_netcdf(path: Path, size: int) -> None:
    """The same field as :func:`make_smooth_raster` as a NetCDF variable ``tas`` (chunks of 512 x 512,
    DEFLATE, projected y/x coordinates), written 512 rows at a time."""
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", size)
        ds.createDimension("x", size)
        ds.createVariable("y", "f8", ("y",))[:] = 5.0e6 - 90.0 * (np.arange(size) + 0.5)
        ds.createVariable("x", "f8", ("x",))[:] = 4.0e5 + 90.0 * (np.arange(size) + 0.5)
        side = min(512, size)
        tas = ds.createVariable("tas", "f4", ("y", "x"), chunksizes=(side, side), zlib=True)
        x = np.linspace(0.0, size / 100, size)
        for top in range(0, size, 512):
            y = x[top : top + 512, None]
            values = 300 + 100 * np.sin(x[None, :]) * np.cos(y) + 10 * np.sin(5 * x[None, :] + 3 * y)
            tas[top : top + len(y), :] = values.astype(np.float32)


def netcdf_cmd(src: Path, model: Path, args: argparse.Namespace) -> list[str]:
    """`geosr downscale SRC --variable tas` into a NetCDF beside it, as :func:`downscale_cmd` for a GeoTIFF."""
    cmd = downscale_cmd(src, model, args)
    cmd[cmd.index("-o") + 1] = str(src.with_name(src.stem + "_out.nc"))
    return [*cmd, "--variable", "tas"]


def scaling(folder: Path, model: Path, args: argparse.Namespace) -> None:
    """Peak RSS of `geosr downscale` for each input side of ``--sizes`` and tile size of ``--tile-sizes``."""
    sizes = [int(n) for n in args.sizes.split(",")]
    tile_sizes = [int(n) for n in args.tile_sizes.split(",")]
    peaks: dict[tuple[int, int], float] = {}
    kind = "NetCDF (--variable)" if args.netcdf else "GeoTIFF"
    print(f"{kind} input, scale {args.scale}, tiny VDSR (depth 2, width 4); peak RSS in MiB")
    print("input side | " + " | ".join(f"tile {t}" for t in tile_sizes))
    for size in sizes:
        src = folder / f"side{size}{'.nc' if args.netcdf else '.tif'}"
        in_fresh_process(make_smooth_netcdf if args.netcdf else make_smooth_raster, src, size)
        command = netcdf_cmd if args.netcdf else downscale_cmd
        try:
            for tile in tile_sizes:
                run = argparse.Namespace(**{**vars(args), "tile_size": tile})
                _, peaks[size, tile], _ = run_measured(command(src, model, run))
                src.with_name(src.stem + "_out" + src.suffix).unlink()
        finally:
            src.unlink(missing_ok=True)
        print(f"{size:>10} | " + " | ".join(f"{peaks[size, t]:>{len(f'tile {t}')}.0f}" for t in tile_sizes))
    for tile in tile_sizes:
        growth = peaks[sizes[-1], tile] - peaks[sizes[0], tile]
        verdict = "under" if growth < GROWTH_MIB else "OVER"
        print(
            f"tile {tile}: {growth:+.0f} MiB from side {sizes[0]} to {sizes[-1]}: {verdict} the {GROWTH_MIB} MiB target"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192, help="input raster side (pixels)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep the files")
    parser.add_argument("--sizes", default=None, help="input sides to compare, such as 2000,6000,12000")
    parser.add_argument("--tile-sizes", default="256,512", help="tile sizes to compare with --sizes")
    parser.add_argument("--netcdf", action="store_true", help="with --sizes: NetCDF inputs run with --variable")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="geosr-bench-memory-")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model, src = folder / "tiny.safetensors", folder / "large.tif"
        in_fresh_process(random_model, model, depth=2, width=4)
        if args.sizes:
            scaling(folder, model, args)
            return
        in_fresh_process(make_raster, src, args.size)
        out_side = args.size * args.scale
        gigabytes = out_side**2 * 4 / 1e9
        print(
            f"input {args.size}x{args.size} -> output {out_side}x{out_side}: {gigabytes:.3g} GB of float32, "
            f"tile {args.tile_size}, tiny VDSR (depth 2, width 4)"
        )
        seconds, rss, _ = run_measured(downscale_cmd(src, model, args))
        written = src.with_name(src.stem + "_out.tif").stat().st_size / 1e9
        verdict = "under" if rss < TARGET_MIB else "OVER"
        print(
            f"geosr downscale: {seconds:.0f} s, {out_side**2 / 1e6 / seconds:.2f} MP/s, "
            f"GeoTIFF {written:.3g} GB on disk"
        )
        share = 100 * rss * 2**20 / (gigabytes * 1e9)
        print(f"peak RSS {rss:.0f} MiB: {verdict} the {TARGET_MIB} MiB target ({share:.1f}% of the output's size)")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
