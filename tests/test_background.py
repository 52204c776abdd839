"""The worker threads that overlap reading, the network and writing (geosr.background)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rasterio

from geosr.background import Behind, ahead
from geosr.pipeline import downscale_raster


def test_ahead_yields_every_item_in_order_from_another_thread():
    threads = []

    def produce():
        for i in range(50):
            threads.append(threading.current_thread())
            yield i

    assert list(ahead(produce(), depth=3)) == list(range(50))
    assert {t.name for t in threads} == {"geosr-ahead"}


def test_ahead_stays_at_most_depth_items_ahead():
    made = []

    def produce():
        for i in range(100):
            made.append(i)
            yield i

    def settled(expected: int) -> int:
        """How many the worker has made once it had time for ``expected`` and a while more (a busy
        machine may be slow to run it: wait for what it may make, then see that it makes no more)."""
        deadline = time.monotonic() + 10
        while len(made) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        return len(made)

    items = ahead(produce(), depth=2)
    assert next(items) == 0
    # one taken and two ahead (the item the worker is making counts): memory is depth + 1 tiles
    assert settled(3) == 3
    assert next(items) == 1
    assert settled(4) == 4
    items.close()


def test_ahead_raises_the_workers_error_in_the_caller():
    def produce():
        yield 1
        raise ValueError("bad window")

    items = ahead(produce())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad window"):
        next(items)


def test_closing_ahead_stops_its_worker():
    def produce():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    items = ahead(produce(), depth=1)
    next(items)
    items.close()
    assert threading.active_count() == before
    assert not [t for t in threading.enumerate() if t.name == "geosr-ahead"]


def test_behind_runs_calls_in_order_with_bounded_pending():
    done, pending_seen = [], []
    with Behind(depth=1) as behind:
        for i in range(20):
            behind.submit(lambda i=i: (time.sleep(0.001), done.append(i)))
            pending_seen.append(len(behind._pending))
    assert done == list(range(20))
    assert max(pending_seen) == 1


def test_behind_raises_a_failed_call_at_the_next_submit_or_at_the_end():
    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), Behind(depth=1) as behind:
        behind.submit(fail)
        behind.submit(lambda: None)
    with pytest.raises(OSError, match="disk full"), Behind(depth=2) as behind:
        behind.submit(fail)


def test_a_failing_write_leaves_no_output_and_no_partial_file(dem_tif, model1, tmp_path, monkeypatch):
    """An error in the writing thread reaches the caller, and nothing is left behind (nothing lost)."""
    from geosr import io

    calls = []
    real_write = io.TileWriter.write

    def flaky(self, rows, cols, data):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise OSError("No space left on device")
        real_write(self, rows, cols, data)

    monkeypatch.setattr(io.TileWriter, "write", flaky)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OSError, match="No space left"):
        downscale_raster(dem_tif, folder / "out.tif", scale=2, model=model1, tile_size=16, device="cpu")
    assert len(calls) == 3 and all(name.startswith("geosr-behind") for name in calls)
    assert list(folder.iterdir()) == []


def test_overlapped_run_equals_the_plain_one(dem_tif, model_like_shipped, tmp_path, monkeypatch):
    """The threads change nothing: the GeoTIFF equals the in-memory path run one step after another."""
    from geosr import predict

    out = tmp_path / "out.tif"
    downscale_raster(dem_tif, out, scale=2, model=model_like_shipped, tile_size=16, device="cpu")
    monkeypatch.setattr(predict, "OVERLAP_MAX_BYTES", -1)  # no tile is small enough: no worker threads
    with rasterio.open(dem_tif) as src, rasterio.open(out) as dst:
        data = src.read(1, masked=True).filled(np.nan).astype(np.float64)
        expected = predict.downscale(data, 2, model_like_shipped, tile_size=16, device="cpu")
        np.testing.assert_array_equal(dst.read(1), expected)


def test_progress_counts_tiles_written(dem_tif, model1, tmp_path, monkeypatch):
    """The progress callback reports tiles written to the file (the writing thread is one behind)."""
    from geosr import io

    written, reported = [], []
    real_write = io.TileWriter.write

    def write(self, rows, cols, data):
        time.sleep(0.01)  # slower than the network: reports must wait for the writes
        real_write(self, rows, cols, data)
        written.append(1)

    monkeypatch.setattr(io.TileWriter, "write", write)
    out = tmp_path / "out.tif"
    downscale_raster(
        dem_tif,
        out,
        scale=2,
        model=model1,
        tile_size=16,
        device="cpu",
        progress=lambda done, total: reported.append((done, total, len(written))),
    )
    total = reported[-1][1]
    assert [done for done, _, _ in reported] == list(range(1, total + 1)) and total > 4
    assert all(count >= done for done, _, count in reported)


def test_leaving_behind_on_an_error_does_not_wait_for_calls_that_never_started():
    """A call still queued when the block fails is cancelled, and leaving does not wait for it: waiting on
    a future cancelled in the queue never ends (the hang a Ctrl+C right after a submit caused)."""
    started, outcome = threading.Event(), []

    def block():
        try:
            with Behind(depth=2) as behind:
                behind.submit(lambda: (started.set(), time.sleep(0.2)))
                assert started.wait(5)
                behind.submit(lambda: outcome.append("ran"))  # queued behind the running call
                raise RuntimeError("the network failed")
        except RuntimeError:
            outcome.append("left")

    runner = threading.Thread(target=block, daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "leaving the block hung"
    assert outcome == ["left"]
