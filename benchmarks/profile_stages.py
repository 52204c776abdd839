"""Where the time of a GeoTIFF run goes: wall time per pipeline stage, with and without overlap.

Runs ``geosr.pipeline.downscale_raster`` in this process (no start-up counted) on a synthetic
SIZE x SIZE float32 GeoTIFF at x4 with a random model of the shipped shape (20 layers of 64
channels, consistent interpolation, conserving), alternately with the worker threads of
``geosr.background`` (overlap) and with ``Downscaler.run`` one step after another (the pipeline's
writing thread runs in both), and prints the run's wall time and, per
stage, the seconds spent in it summed over tiles, each in its own thread (in the overlapped runs
those overlap, and contend for the processor and the GIL). The first two runs warm up.

Usage: python benchmarks/profile_stages.py [--size 2048] [--device cpu|cuda] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rasterio
from rasterio.transform import from_origin

from geosr import io as gio
from geosr import pipeline, predict
from geosr.testing import fbm_surface, random_model

SPENT: collections.Counter[str] = collections.Counter()


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="input raster side (pixels)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    predict.Downscaler.__init__ = timed("model load", predict.Downscaler.__init__)
    pipeline.BandStats.combine = timed("statistics", pipeline.BandStats.combine)
    pipeline.read_window = timed("read", pipeline.read_window)
    predict.Downscaler._prepare = timed("normalise + interpolate", predict.Downscaler._prepare)
    predict.Downscaler._residuals = timed("network (with transfers)", predict.Downscaler._residuals)
    predict.Downscaler._complete = timed("conserve + un-normalise", predict.Downscaler._complete)
    gio.TileWriter.write = timed("write", gio.TileWriter.write)
    gio.TileWriter.commit = timed("commit", gio.TileWriter.commit)
    run = predict.Downscaler.run
    with tempfile.TemporaryDirectory() as tmp:
        src, model = Path(tmp) / "in.tif", Path(tmp) / "vdsr20.safetensors"
        data = fbm_surface((args.size, args.size), seed=0)
        profile = {"driver": "GTiff", "height": args.size, "width": args.size, "count": 1, "dtype": "float32"}
        with rasterio.open(
            src, "w", crs="EPSG:32633", transform=from_origin(5e5, 4e6, 90, 90), tiled=True, **profile
        ) as f:
            f.write(data, 1)
        random_model(model, depth=20, width=64, interpolation="consistent", conserve=True)
        for overlap in (True, False, True, False):
            predict.Downscaler.run = lambda self, *a, overlap=overlap, **k: run(self, *a, **{**k, "overlap": overlap})
            SPENT.clear()
            start = time.perf_counter()
            pipeline.downscale_raster(
                src,
                Path(tmp) / "out.tif",
                scale=4,
                model=model,
                device=args.device,
                precision=args.precision,
                overwrite=True,
            )
            wall = time.perf_counter() - start
            stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in SPENT.items())
            print(
                f"{args.size}x{args.size} x4 {args.device} {args.precision} overlap={overlap}: {wall:.2f} s; {stages}"
            )


if __name__ == "__main__":
    main()
