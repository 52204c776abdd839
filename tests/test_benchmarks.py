"""The benchmark scripts run and print their figures (small sizes; slow, so only in `make test-all`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import rasterio
from conftest import REPO

pytestmark = pytest.mark.slow


def run_benchmark(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_distributed_benchmark_compares_one_and_two_workers():
    out = run_benchmark("bench_distributed.py", "--size", "24", "--tile-size", "32")
    assert "1 worker(s):" in out and "2 worker(s):" in out and "speed-up 2 vs 1 workers" in out
    assert "outputs identical: True" in out


def test_memory_benchmark_reports_peak_rss():
    out = run_benchmark("bench_memory.py", "--size", "256", "--tile-size", "256")
    assert "output 1024x1024" in out
    assert "under the 2048 MiB target" in out


def test_downscale_benchmark_reports_peak_rss_of_two_sizes():
    out = run_benchmark(
        "bench_downscale.py", "--size", "32", "--scale", "2", "--tile-size", "64", "--memory-sizes", "16,64"
    )
    peaks = [float(line.split("peak RSS")[1].split()[0]) for line in out.splitlines() if line.startswith("memory:")]
    assert len(peaks) == 2 and min(peaks) > 100  # MiB: a geosr process imports torch
    assert "peak RSS ratio for 16x the area:" in out


def test_peak_rss_is_the_commands_own_or_refused():
    """A child's ru_maxrss starts from its launcher's peak: a command smaller than the launcher is refused."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from bench_downscale import run_measured
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    launcher = bytearray(200 * 2**20)  # this process now peaks far above a bare Python's ~10 MiB
    _, carried, _ = run_measured([sys.executable, "-c", "pass"], check_rss=False)
    assert carried >= 200  # what the kernel reports: the launcher's peak, not the command's
    with pytest.raises(SystemExit, match="launcher's own"):
        run_measured([sys.executable, "-c", "pass"])
    del launcher


def test_grid_trace_prints_every_output():
    out = run_benchmark("grid_trace.py", "--scale", "4")
    ratios = {line[:20].strip(): float(line.split()[-1]) for line in out.splitlines()[1:]}
    assert list(ratios) == ["true DEM", "back-projection", "model, plain", "model, conserved"]
    assert abs(ratios["true DEM"] - 1) < 0.05


def test_optimizer_comparison_runs_both_optimizers():
    # fp32: bf16 is emulated, over 600 s here, on a CPU without bf16 instructions (an AVX2 one)
    out = run_benchmark("compare_optimizers.py", "--epochs", "1", "--steps", "1", "--precision", "fp32")
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["sgd lr 0.1", "adam lr 0.0002"]
    assert all("bicubic" in line and "1 steps in" in line for line in lines)


def test_downscale_benchmark_with_an_ensemble_compares_like_with_like():
    out = run_benchmark(
        "bench_downscale.py", "--size", "48", "--scale", "2", "--tile-size", "64", "--skip-memory", "--ensemble", "4"
    )
    assert "ensemble 4" in out and "end-to-end geosr downscale:" in out and "bare model forward:" in out
    ratio = float(out.split("ratio end-to-end / bare:")[1].split()[0])
    assert 0 < ratio < 2


def test_stage_profile_times_every_stage_with_and_without_overlap():
    out = run_benchmark("profile_stages.py", "--size", "48")
    lines = [line for line in out.splitlines() if line.startswith("48x48 x4 cpu fp32")]
    assert [line.split(":")[0].endswith("overlap=True") for line in lines] == [True, False, True, False]
    stages = ("read", "normalise + interpolate", "network (with transfers)", "conserve + un-normalise", "write")
    for line in lines:
        assert all(f"{stage} " in line for stage in stages), line


def test_downscale_benchmark_of_a_coast_runs_on_a_raster_with_nodata(tmp_path):
    args = ["--size", "48", "--scale", "2", "--tile-size", "64", "--skip-memory", "--coast"]
    out = run_benchmark("bench_downscale.py", *args)
    assert "45% nodata behind a coast" in out and "end-to-end geosr downscale:" in out
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from bench_downscale import make_raster
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    make_raster(tmp_path / "coast.tif", 64, coast=True)
    with rasterio.open(tmp_path / "coast.tif") as src:
        share = float((src.read_masks(1) == 0).mean())
    assert 0.35 < share < 0.55
