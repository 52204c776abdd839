"""The benchmark scripts run and print their figures (small sizes; slow, so only in `make test-all`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
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


def test_downscale_benchmark_with_an_ensemble_compares_like_with_like():
    out = run_benchmark(
        "bench_downscale.py", "--size", "48", "--scale", "2", "--tile-size", "64", "--skip-memory", "--ensemble", "4"
    )
    assert "ensemble 4" in out and "end-to-end geosr downscale:" in out and "bare model forward:" in out
    ratio = float(out.split("ratio end-to-end / bare:")[1].split()[0])
    assert 0 < ratio < 2
