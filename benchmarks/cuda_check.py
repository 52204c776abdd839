"""The CUDA path, checked on a machine with an NVIDIA GPU (never needed by the tests or CI).

Usage: python benchmarks/cuda_check.py

Prints, for the shipped ``dem`` model on a real DEM (the held-out Jacksboro columns, area-averaged
by 4 and restored):
  * the largest difference between the CUDA and the CPU output (fp32), and the CUDA bf16 output;
  * the largest difference between the CUDA output in one tile and in 64-pixel tiles (seams);
  * the conservation error on CUDA (each input cell's output average against the input value);
  * the RMSE of the CUDA output against the true DEM, with back-projection's for reference;
  * ``climate``'s self-calibration gains and calibrated output on CUDA against the CPU (a smooth
    synthetic field), the 8-fold self-ensemble on CUDA against the CPU and under a 90-degree turn,
    and ``geosr downscale`` of a GeoTIFF in 64-pixel tiles (reading and writing threads beside the
    network) on CUDA against the CPU;
then runs ``geosr train --device cuda`` for a few steps on a small GeoTIFF and loads the model it
wrote on the CPU. Exits non-zero if a check fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from geosr.calibrate import window as calibration_window
from geosr.degrade import area_average
from geosr.evaluate import classical, measure
from geosr.predict import Downscaler, downscale
from geosr.testing import fbm_surface
from geosr.training.sources import JACKSBORO_TEST, jacksboro


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    failures = []
    s = 4
    truth = jacksboro()[:, JACKSBORO_TEST]
    truth = truth[: truth.shape[0] // s * s, : truth.shape[1] // s * s]
    coarse = area_average(truth, s)
    span = float(np.ptp(truth))
    timed = {}
    outputs = {}
    for device, precision, tile in (
        ("cpu", "fp32", 1024),
        ("cuda", "fp32", 1024),
        ("cuda", "bf16", 1024),
        ("cuda", "fp32", 64),
    ):
        start = time.perf_counter()
        outputs[device, precision, tile] = downscale(
            coarse, s, "dem", device=device, precision=precision, tile_size=tile
        )
        timed[device, precision, tile] = time.perf_counter() - start
    cpu, gpu = outputs["cpu", "fp32", 1024], outputs["cuda", "fp32", 1024]
    checks = {
        "max |cuda - cpu| fp32 (m)": (np.abs(gpu - cpu).max(), 1e-4 * span),
        "max |cuda bf16 - cpu fp32| (m)": (np.abs(outputs["cuda", "bf16", 1024] - cpu).max(), 1e-2 * span),
        "max |64-pixel tiles - one tile| cuda (m)": (
            np.abs(outputs["cuda", "fp32", 64] - gpu).max(),
            1e-4 * span,
        ),
        "max |cell average - input| cuda (m)": (np.abs(area_average(gpu, s) - coarse).max(), 1e-4 * span),
    }
    # climate, which self-calibrates, on a smooth field; the 8-fold self-ensemble; the GeoTIFF pipeline,
    # whose reading and writing threads overlap the network (geosr.background)
    field = fbm_surface((512, 512), beta=4.0, seed=5, relief=30.0, base=270.0).astype(np.float64)
    field_coarse = area_average(field, s)
    climate_span = float(np.ptp(field))
    plans = {device: Downscaler("climate", device=device) for device in ("cpu", "cuda")}
    rows, cols = calibration_window(field_coarse.shape, s)
    window = field_coarse[None, rows, cols]
    gains = {device: downscaler.gains(window, s) for device, downscaler in plans.items()}
    print(f"climate self-calibration gains: cpu {gains['cpu']}, cuda {gains['cuda']}")
    checks["|cuda - cpu| climate residual gain"] = (float(np.abs(gains["cuda"] - gains["cpu"]).max()), 1e-3)
    climate = {d: downscale(field_coarse, s, "climate", device=d, calibrate=True) for d in ("cpu", "cuda")}
    checks["max |cuda - cpu| climate, calibrated (K)"] = (
        float(np.abs(climate["cuda"] - climate["cpu"]).max()),
        1e-4 * climate_span,
    )
    ensemble = {d: downscale(coarse, s, "dem", device=d, ensemble=8) for d in ("cpu", "cuda")}
    checks["max |cuda - cpu| dem, 8-fold ensemble (m)"] = (
        float(np.abs(ensemble["cuda"] - ensemble["cpu"]).max()),
        1e-4 * span,
    )
    turned = np.rot90(downscale(np.rot90(coarse).copy(), s, "dem", device="cuda", ensemble=8), -1)
    checks["max |turned input - turned output| cuda (m)"] = (
        float(np.abs(turned - ensemble["cuda"]).max()),
        1e-4 * span,
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "dem.tif"
        with rasterio.open(
            src,
            "w",
            driver="GTiff",
            height=coarse.shape[0],
            width=coarse.shape[1],
            count=1,
            dtype="float32",
            crs="EPSG:4326",
            transform=from_origin(-84.4, 36.6, 1 / 300, 1 / 300),
        ) as dst:
            dst.write(coarse.astype(np.float32), 1)
        files = {}
        for device in ("cpu", "cuda"):
            files[device] = Path(tmp) / f"out_{device}.tif"
            command = [sys.executable, "-m", "geosr", "downscale", str(src), "--scale", str(s), "--device", device]
            command += ["--tile-size", "64", "-o", str(files[device]), "--quiet"]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"geosr downscale --device {device}: exit {done.returncode}\n{done.stderr[-2000:]}")
        name = "max |cuda - cpu| geosr downscale GeoTIFF, 64-pixel tiles (m)"
        if not all(path.exists() for path in files.values()):
            checks[name] = (float("inf"), 1e-4 * span)
        else:
            with rasterio.open(files["cpu"]) as a, rasterio.open(files["cuda"]) as b:
                same_grid = a.transform == b.transform and a.crs == b.crs and a.shape == b.shape
                checks[name] = (float(np.abs(a.read(1) - b.read(1)).max()) if same_grid else float("inf"), 1e-4 * span)
    for name, (value, limit) in checks.items():
        ok = value <= limit
        print(f"{name:42s} {value:.3g} (limit {limit:.3g}) {'ok' if ok else 'FAILED'}")
        if not ok:
            failures.append(name)
    rmse = measure(gpu, truth, coarse, s).rmse
    bp_rmse = measure(classical(coarse, s, "backprojection"), truth, coarse, s).rmse
    print(f"RMSE against the true DEM, x{s}: cuda {rmse:.3f} m, back-projection {bp_rmse:.3f} m")
    for key, seconds in timed.items():
        print(f"downscale {coarse.shape} x{s} on {key[0]} {key[1]} tile {key[2]}: {seconds:.2f} s (first call)")

    from geosr.models.files import load_model

    with tempfile.TemporaryDirectory() as tmp:
        hr = Path(tmp) / "hr.tif"
        data = fbm_surface((160, 160), seed=3, relief=500.0)
        profile = {"driver": "GTiff", "height": 160, "width": 160, "count": 1, "dtype": "float32"}
        with rasterio.open(hr, "w", crs="EPSG:32616", transform=from_origin(0, 0, 30, 30), **profile) as dst:
            dst.write(data, 1)
        model = Path(tmp) / "m.safetensors"
        command = [sys.executable, "-m", "geosr", "train", str(hr), "-o", str(model), "--device", "cuda"]
        command += ["--epochs", "3", "--steps-per-epoch", "20", "--batch-size", "8", "--patch-size", "32", "--quiet"]
        command += ["--depth", "6", "--width", "16"]
        done = subprocess.run(command, capture_output=True, text=True)
        print(f"geosr train --device cuda: exit {done.returncode}")
        print("\n".join(done.stdout.strip().splitlines()[-4:]), done.stderr.strip()[-2000:])
        if done.returncode != 0 or not model.exists():
            failures.append("geosr train --device cuda")
        else:
            loaded = load_model(model, "cpu")
            print(f"the model trained on cuda loads on the CPU: {loaded.card.training.get('config', {}).get('device')}")
            out = downscale(data[::4, ::4], 4, loaded, device="cpu")
            if not np.isfinite(out).all():
                failures.append("model trained on cuda runs on the CPU")
    print("all CUDA checks passed" if not failures else f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
