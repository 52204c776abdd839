"""Throughput and memory of `geosr downscale` against the bare network.

Prints, for one synthetic raster:
  * end-to-end output megapixels/s of the `geosr downscale` command (a fresh process: imports,
    model loading, statistics pass, halos, interpolation, reading and writing included);
  * megapixels/s of the bare model forward pass over the same output pixels, in tiles of the same
    size without halos (a fresh process too);
  * their ratio (target >= 0.85) and the peak RSS of the command;
and the peak RSS of `geosr downscale` on two rasters whose areas differ 16x (target: the larger
within 1.5x of the smaller).

The model is a randomly initialised VDSR of the shipped shape and configuration (consistent
interpolation, conserving by default; speed does not depend on the weights).

With ``--ensemble N`` the command averages N flipped/rotated copies and the bare pass runs the
network N times per tile, so the ratio still measures the pipeline's overhead. With ``--calibrate``
the command also self-calibrates (geosr.calibrate: the model run once more on the input averaged by
the scale, at most its central 1024 x 1024 pixels), which the bare pass does not: the ratio then
includes calibration's cost. A random network's detail is noise, whose gain comes out 0 (and a band
whose gain is 0 skips the network), so ``--model climate`` measures a trained model instead (the
bare pass runs the same network); the gains are printed from the output's GEOSR_CALIBRATE tag.

Usage: python benchmarks/bench_downscale.py [--size 768] [--scale 4] [--tile-size 1024]
       [--precision fp32] [--memory-sizes 256,1024] [--skip-memory] [--device cpu|cuda] [--ensemble 1|4|8]
       [--calibrate] [--model climate] [--coast]

With ``--coast`` the raster's east, about 45% of it behind a wavy coastline, is nodata: the command fills the
missing cells next to the coast (``geosr.tiling.extend_into_missing``) and reads padded windows, which the
bare pass does not, so the ratio includes that cost (every tile's input reaches the coast, so the network
runs on every tile; a tile whose input held no data would skip it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from geosr.io import geotiff_tile_size
from geosr.testing import fbm_surface, random_model

BARE = r"""
import sys, time, torch
from geosr.models.files import load_model
model, precision, device = sys.argv[1], sys.argv[5], sys.argv[6]
h, w, tile, copies = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[7])
net = load_model(model).network.to(device=device, memory_format=torch.channels_last)
dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
if dtype is None:  # fp32 is IEEE fp32 on CUDA, as in geosr.predict (cuDNN would otherwise use TF32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
def run(th, tw):
    x = torch.randn(1, net.body[0].in_channels, th, tw, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
        for _ in range(copies):
            net.residual(x)
run(64, 64)
run(min(tile, h), min(tile, w))
if device.startswith("cuda"):
    torch.cuda.synchronize()
start = time.perf_counter()
for r in range(0, h, tile):
    for c in range(0, w, tile):
        run(min(tile, h - r), min(tile, w - c))
if device.startswith("cuda"):
    torch.cuda.synchronize()
print(time.perf_counter() - start)
"""


def in_fresh_process(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``function`` in a spawned process, so that its memory never raises this launcher's peak.

    Linux starts a child's ``ru_maxrss`` from the peak RSS of the process it was started from (the
    launcher's high-water mark is carried over the exec), so the rasters and the model are made
    elsewhere and the commands this launcher measures report their own peak.
    """
    process = multiprocessing.get_context("spawn").Process(target=function, args=args, kwargs=kwargs)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"{function.__name__} failed with exit code {process.exitcode}")


def launcher_peak_kib() -> int:
    """This process's own peak RSS in KiB: what a child it starts inherits as the floor of its ``ru_maxrss``.

    ``VmHWM`` rather than ``getrusage(RUSAGE_SELF)``, which also holds the peak carried over from
    whatever started this process (pytest, say), a floor that its own children do not inherit.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_measured(cmd: list[str], check_rss: bool = True) -> tuple[float, float, str]:
    """Run ``cmd``; return wall seconds, its peak RSS in MiB and its stdout.

    With ``check_rss``, refuse a peak RSS that may be this launcher's own, carried over (see
    :func:`in_fresh_process`) rather than the command's."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # files: a pipe could fill up
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{stderr}")
    own = launcher_peak_kib()
    if check_rss and usage.ru_maxrss <= own:
        raise SystemExit(
            f"cannot measure the command's peak RSS: it is not above the launcher's own, {own / 1024:.0f} MiB"
        )
    return seconds, usage.ru_maxrss / 1024, stdout


def raster_profile(size: int) -> dict[str, Any]:
    """The benchmark rasters' GeoTIFF profile: size x size float32, 90 m UTM, tiled DEFLATE."""
    return {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:32616",
        "transform": from_origin(500000, 4000000, 90, 90),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
    }


def make_raster(path: Path, size: int, seed: int = 0, coast: bool = False) -> None:
    """The benchmark raster; with ``coast``, its east (about 45%, behind a wavy coastline) is nodata."""
    data = fbm_surface((size, size), beta=3.0, seed=seed, relief=800.0)
    profile = raster_profile(size)
    if coast:
        yy, xx = np.mgrid[:size, :size]
        data = np.where(xx + 0.08 * size * np.sin(yy / (0.06 * size)) > 0.55 * size, np.float32(-9999), data)
        profile["nodata"] = -9999
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def downscale_cmd(src: Path, model: Path, args: argparse.Namespace, device: str = "cpu") -> list[str]:
    return [
        sys.executable,
        "-m",
        "geosr",
        "downscale",
        str(src),
        "--scale",
        str(args.scale),
        "--model",
        str(model),
        "-o",
        str(src.with_name(src.stem + "_out.tif")),
        "--overwrite",
        "--quiet",
        "--tile-size",
        str(args.tile_size),
        "--precision",
        args.precision,
        "--device",
        device,
        "--ensemble",
        str(getattr(args, "ensemble", 1)),  # bench_memory's arguments have no --ensemble
        "--calibrate" if getattr(args, "calibrate", False) else "--no-calibrate",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=768, help="input raster side (pixels)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--memory-sizes", default="256,1024", help="two input sides whose areas differ 16x")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--ensemble", type=int, default=1, choices=(1, 4, 8), help="self-ensemble (the bare pass runs as many copies)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the command and the bare pass alike)")
    parser.add_argument("--calibrate", action="store_true", help="the command self-calibrates (the bare pass does not)")
    parser.add_argument("--model", default=None, help="a shipped model's name (default: a random one of its shape)")
    parser.add_argument(
        "--coast", action="store_true", help="the raster's east (about 45%%) is nodata: the cost of filling next to it"
    )
    args = parser.parse_args()
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
        f"tile {args.tile_size}, {args.precision}, device {args.device}, ensemble {args.ensemble}"
        + f", model {args.model or 'random (shipped shape)'}"
        + (", self-calibrating" if args.calibrate else "")
        + (", 45% nodata behind a coast" if args.coast else "")
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, src = folder / "vdsr20.safetensors", folder / "bench.tif"
        if args.model is None:
            in_fresh_process(random_model, model, depth=20, width=64, interpolation="consistent", conserve=True)
        else:
            from geosr.models.registry import resolve_model

            model = resolve_model(args.model)
        in_fresh_process(make_raster, src, args.size, coast=args.coast)
        out_h = out_w = round(args.size * args.scale)
        mp = out_h * out_w / 1e6
        seconds, rss, _ = run_measured(downscale_cmd(src, model, args, args.device))
        _, _, bare_out = run_measured(
            [
                sys.executable,
                "-c",
                BARE,
                str(model),
                str(out_h),
                str(out_w),
                str(geotiff_tile_size(args.tile_size)),  # the tiles the command runs
                args.precision,
                args.device,
                str(args.ensemble),
            ],
            check_rss=False,
        )
        bare = float(bare_out.strip().splitlines()[-1])
        print(f"raster {args.size}x{args.size} -> {out_w}x{out_h} ({mp:.2f} MP output), scale {args.scale}")
        print(f"end-to-end geosr downscale: {seconds:.1f} s, {mp / seconds:.4f} MP/s, peak RSS {rss:.0f} MiB")
        print(f"bare model forward:         {bare:.1f} s, {mp / bare:.4f} MP/s")
        print(f"ratio end-to-end / bare:    {bare / seconds:.3f} (target >= 0.85)")
        if args.calibrate:
            with rasterio.open(src.with_name(src.stem + "_out.tif")) as out:
                print(f"calibration: {out.tags()['GEOSR_CALIBRATE']}")
        if args.skip_memory:
            return
        sizes = [int(s) for s in args.memory_sizes.split(",")]
        peaks = []
        for i, size in enumerate(sizes):
            path = folder / f"mem{i}.tif"
            in_fresh_process(make_raster, path, size, seed=i + 1)
            seconds, rss, _ = run_measured(downscale_cmd(path, model, args, args.device))
            out = round(size * args.scale)
            peaks.append(rss)
            print(f"memory: input {size}x{size} -> {out}x{out} output: peak RSS {rss:.0f} MiB ({seconds:.0f} s)")
        area = (sizes[1] / sizes[0]) ** 2
        print(f"peak RSS ratio for {area:.0f}x the area: {peaks[1] / peaks[0]:.2f} (target <= 1.5)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
