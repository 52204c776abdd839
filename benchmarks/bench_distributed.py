"""Throughput of `geosr downscale --scheduler` on a dask.distributed LocalCluster: 1 worker against 2.

Each cluster has worker processes with one thread each (torch and BLAS on one thread too). A small
warm-up run first makes every worker import torch and load the model, so the timed run measures
the steady state. The client plans, computes the statistics and writes; the workers read their
windows, interpolate and run the network. Prints output megapixels/s for 1 and 2 workers and the
speed-up (target >= 1.7 on a 2-core machine), and checks that both outputs are identical.

The model is a randomly initialised VDSR of the shipped shape (speed does not depend on weights).

Usage: python benchmarks/bench_distributed.py [--size 192] [--scale 4] [--tile-size 192] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from bench_downscale import make_raster
from distributed import LocalCluster

from geosr.pipeline import downscale_raster
from geosr.testing import random_model


def timed_run(src: Path, dst: Path, model: Path, args: argparse.Namespace, address: str) -> float:
    start = time.perf_counter()
    downscale_raster(
        src,
        dst,
        scale=args.scale,
        model=model,
        device="cpu",
        tile_size=args.tile_size,
        overwrite=True,
        scheduler=address,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=192, help="input raster side (pixels)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=192, help="output pixels per tile side")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    counts = [int(n) for n in args.workers.split(",")]
    out_side = args.size * args.scale
    mp = out_side**2 / 1e6
    tiles = math.ceil(out_side / args.tile_size) ** 2
    print(
        f"{os.cpu_count()} cores; input {args.size}x{args.size} -> {out_side}x{out_side} ({mp:.2f} MP), "
        f"scale {args.scale}, {tiles} tiles of {args.tile_size}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = random_model(folder / "vdsr20.safetensors", depth=20, width=64)
        src, warm = folder / "bench.tif", folder / "warm.tif"
        make_raster(src, args.size)
        make_raster(warm, 16, seed=1)
        rates = {}
        for n in counts:
            with LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
            ) as cluster:
                # 16 small tiles: every worker imports torch and loads the model before the timed run
                warm_args = argparse.Namespace(scale=4, tile_size=16)
                timed_run(warm, folder / "warm_out.tif", model, warm_args, cluster.scheduler_address)
                seconds = timed_run(src, folder / f"out{n}.tif", model, args, cluster.scheduler_address)
            rates[n] = mp / seconds
            print(f"{n} worker(s): {seconds:.1f} s, {rates[n]:.4f} MP/s")
        outputs = [rasterio.open(folder / f"out{n}.tif").read() for n in counts]
        print("outputs identical:", all(np.array_equal(outputs[0], o) for o in outputs[1:]))
        if len(counts) == 2:
            print(
                f"speed-up {counts[1]} vs {counts[0]} workers: {rates[counts[1]] / rates[counts[0]]:.2f} "
                "(target >= 1.7 with 2 workers on 2 free cores)"
            )


if __name__ == "__main__":
    main()
