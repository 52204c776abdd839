"""The worker threads of a run (geosr.background) and the files they use: a worker always stops before
its files are closed, a second Ctrl+C included; workers run under the caller's GDAL configuration;
an error anywhere stops them and leaves nothing."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import geosr.pipeline
from geosr.background import Behind, ahead
from geosr.pipeline import downscale_raster

needs_signals = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill") or threading.current_thread() is not threading.main_thread(),
    reason="sends SIGINT to the main thread",
)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl+C raises KeyboardInterrupt in these tests, also where the test run started with SIGINT ignored
    (a job put in the background by a non-interactive shell, as a CI script may run it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("geosr-")]


@pytest.fixture
def caller_waits(monkeypatch):
    """Set once the caller waits for a worker (geosr.background.wait_through_interrupts): a Ctrl+C sent
    after it reaches the caller there, however slow a busy machine is to get the caller that far."""
    from geosr import background

    waiting = threading.Event()
    real = background.wait_through_interrupts

    def wait(until):
        waiting.set()
        return real(until)

    monkeypatch.setattr(background, "wait_through_interrupts", wait)
    return waiting


def ctrl_c(after: float = 0.1, once: threading.Event | None = None) -> None:
    """Ctrl+C, as the terminal sends it to the main thread, ``after`` seconds from now (from when ``once``
    is set, if given)."""
    if once is not None:
        assert once.wait(10), "the caller never waited for the worker"
    time.sleep(after)
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@needs_signals
def test_ahead_waits_for_its_worker_through_ctrl_c(caller_waits):
    reading, finished = threading.Event(), []

    def produce():
        yield 0
        reading.set()
        ctrl_c(0.05, once=caller_waits)  # meanwhile the caller stops the worker and waits for it
        time.sleep(0.3)  # the read of the next tile goes on
        finished.append(True)
        yield 1

    items = ahead(produce(), depth=1)
    assert next(items) == 0
    assert reading.wait(5)
    with pytest.raises(KeyboardInterrupt):
        items.close()
    # the interrupt comes through only once the worker is done with the file it reads
    assert finished == [True]
    assert "geosr-ahead" not in workers()


@needs_signals
def test_behind_waits_for_the_running_call_through_ctrl_c(caller_waits):
    finished = []

    def write():
        ctrl_c(0.05, once=caller_waits)  # the block failed and waits for this write to end
        time.sleep(0.3)
        finished.append(True)

    with pytest.raises(KeyboardInterrupt), Behind(depth=1) as behind:
        behind.submit(write)
        raise RuntimeError("the network failed")
    assert finished == [True]
    assert not [name for name in workers() if name.startswith("geosr-behind")]


@needs_signals
def test_a_second_ctrl_c_never_closes_the_input_under_a_read(dem_tif, model1, tmp_path, monkeypatch, caller_waits):
    """Ctrl+C during a slow read, and again while the run waits for that read: the input stays open
    until the read is done, and nothing is left behind."""
    real_read = geosr.pipeline.read_window
    reads, interrupted = [], []

    def slow_read(dataset, rows, cols, flips=(False, False)):
        if len(reads) == 2 and not interrupted:  # the third read is slow (a remote file)
            interrupted.append(True)
            ctrl_c(0.05)  # the run stops, and waits for this read
            ctrl_c(0.05, once=caller_waits)  # again, impatient
            time.sleep(0.3)
        reads.append("closed" if dataset.closed else "open")
        return real_read(dataset, rows, cols, flips)

    monkeypatch.setattr(geosr.pipeline, "read_window", slow_read)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(KeyboardInterrupt):
        downscale_raster(dem_tif, folder / "out.tif", scale=2, model=model1, tile_size=16, device="cpu")
    left = workers()
    time.sleep(0.5)  # where a reader was left running, it now reads the closed input
    assert interrupted and reads == ["open"] * len(reads)
    assert left == []
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("where", ["read", "network"])
def test_an_error_stops_the_workers_and_leaves_nothing(dem_tif, model1, tmp_path, monkeypatch, where):
    calls = []
    if where == "read":
        real = geosr.pipeline.read_window

        def failing(*args):
            calls.append(threading.current_thread().name)
            if len(calls) == 3:
                raise OSError("read failed")
            return real(*args)

        monkeypatch.setattr(geosr.pipeline, "read_window", failing)
    else:
        from geosr.predict import Downscaler

        real = Downscaler._residuals

        def failing(self, *args):
            calls.append(threading.current_thread().name)
            if len(calls) == 3:
                raise RuntimeError("CUDA error: out of memory")
            return real(self, *args)

        monkeypatch.setattr(Downscaler, "_residuals", failing)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises((OSError, RuntimeError), match="read failed|out of memory"):
        downscale_raster(dem_tif, folder / "out.tif", scale=2, model=model1, tile_size=16, device="cpu")
    assert set(calls) == {"geosr-ahead" if where == "read" else threading.current_thread().name}
    assert workers() == []
    assert list(folder.iterdir()) == []


def test_workers_run_under_the_callers_gdal_configuration(dem_tif, model1, tmp_path, monkeypatch):
    """rasterio.Env set in a thread other than the main one (QGIS runs its tools in task threads)
    applies to that thread only: the reading and writing threads must enter it too."""
    import rasterio
    from rasterio.env import get_gdal_config

    from geosr import io

    seen, errors = set(), []
    real_read, real_write = geosr.pipeline.read_window, io.TileWriter.write

    def read(*args):
        seen.add(("read", threading.current_thread().name.rstrip("_0123456789"), get_gdal_config("GEOSR_PROBE")))
        seen.add(("read", "key", get_gdal_config("AWS_ACCESS_KEY_ID")))
        return real_read(*args)

    def write(self, *args):
        seen.add(("write", threading.current_thread().name.rstrip("_0123456789"), get_gdal_config("GEOSR_PROBE")))
        return real_write(self, *args)

    monkeypatch.setattr(geosr.pipeline, "read_window", read)
    monkeypatch.setattr(io.TileWriter, "write", write)

    def job():
        try:
            with rasterio.Env(GEOSR_PROBE="on"):
                # what rasterio.Env(session=AWSSession(...)) sets, which rasterio.Env(**options) refuses
                rasterio.env.setenv(AWS_ACCESS_KEY_ID="probe", AWS_SECRET_ACCESS_KEY="probe")
                downscale_raster(dem_tif, tmp_path / "out.tif", scale=2, model=model1, tile_size=16, device="cpu")
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    caller = threading.Thread(target=job, name="task")
    caller.start()
    caller.join()
    assert errors == []
    assert seen == {("read", "geosr-ahead", "on"), ("read", "key", "probe"), ("write", "geosr-behind", "on")}
    # nothing leaks into the process's configuration
    assert get_gdal_config("GEOSR_PROBE") is None
    assert get_gdal_config("AWS_ACCESS_KEY_ID") is None
