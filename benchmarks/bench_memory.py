"""Peak memory of `geosr downscale` on a raster whose float32 output is larger than 4 GB.

Writes a smooth synthetic input raster, runs the `geosr downscale` command on it in a fresh process
with a tiny VDSR (2 layers of 4 features: the network's cost is beside the point here, the data
volume is), and prints the output size as float32, the wall time, the throughput and the command's
peak resident memory (target: under 2 GB, whatever the raster size, since the input is read and
the output written tile by tile).

Usage: python benchmarks/bench_memory.py [--size 8192] [--scale 4] [--tile-size 1024] [--keep DIR]
(the defaults give a 32768 x 32768 output: 4.29 GB of float32; the compressed GeoTIFF is smaller).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench_downscale import downscale_cmd, in_fresh_process, make_raster, run_measured

from geosr.testing import random_model

#: Peak resident memory the command must stay under, in MiB.
TARGET_MIB = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192, help="input raster side (pixels)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep the files")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="geosr-bench-memory-")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model, src = folder / "tiny.safetensors", folder / "large.tif"
        in_fresh_process(random_model, model, depth=2, width=4)
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
