"""The dask.distributed front door (``geosr downscale --scheduler``), second audit: what answers at the address
is asked whether it is a dask scheduler, in a bounded time; workers without geosr or torch are refused before any
work; a cluster left without workers ends the run; a lost scheduler is one line without the client's log
tracebacks; the ``--variable`` path maps a lost cluster as the GeoTIFF path does, and an interrupted one leaves no
temporary output behind (its tasks still running on the workers wrote into it after it was removed).

The fake endpoints are TCP servers of this process; clusters are LocalClusters, or ``dask scheduler`` and
``dask worker`` processes where the scheduler must be killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from conftest import REPO, assert_one_line_error

from geosr.testing import fbm_surface

distributed = pytest.importorskip("distributed")

DASK = Path(sys.executable).parent / "dask"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="default")


# --- helpers ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def listener(reply: bytes | None) -> Iterator[str]:
    """A TCP server on a free local port: it sends ``reply`` to each connection and closes it, or (None) holds
    each connection open and says nothing. Yields its tcp:// address."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:  # the accept timed out: look at stop again
                continue
            if reply is None:
                held.append(conn)
                continue
            with contextlib.suppress(OSError):
                conn.sendall(reply)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def cli_within(cli: Callable[..., Any], seconds: float, *args: Any) -> tuple[Any, float]:
    """``cli(*args)`` on a thread of its own: its result (None when it has not returned within ``seconds``: it
    hung) and the seconds it took."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(cli(*args)), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    return (result[0] if result else None), time.monotonic() - start


def geosr_subprocess(*args: Any, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m geosr ARGS`` in a fresh interpreter; fails the test when it has not ended in ``timeout``."""
    start = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "geosr", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=ENV,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"geosr {' '.join(map(str, args))} still ran after {timeout} s")
    return result, time.monotonic() - start


def armed(seconds: float = 0.0, die: bool = False) -> Callable[[], None]:
    """A function for ``client.run`` that makes each tile a worker runs from now on take ``seconds`` longer, or
    (``die``) kill the worker. Pickled by value (a local function): ``dask worker`` processes cannot import tests."""

    def arm() -> None:
        import os
        import time

        from geosr import predict

        original = predict.Downscaler.run

        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            if die:
                os._exit(1)
            cores = list(original(self, *args, **kwargs))
            time.sleep(seconds)
            return cores

        predict.Downscaler.run = run

    return arm


def running_tasks(client: Any) -> int:
    """Tasks running now on the workers of ``client`` (one that was cancelled while running too)."""

    def count(dask_worker: Any) -> int:
        return len(dask_worker.state.executing) + len(dask_worker.state.long_running)

    return sum(n for n in client.run(count, on_error="return").values() if isinstance(n, int))


def tiles_run(client: Any) -> int:
    def count(dask_worker: Any) -> int:
        return dask_worker.state.executed_count

    return sum(n for n in client.run(count, on_error="return").values() if isinstance(n, int))


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.05)


def local_cluster(n_workers: int = 1, **kwargs: Any) -> Any:
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
        **kwargs,
    )


def grid_file(path: Path, n_time: int = 4, shape: tuple[int, int] = (16, 20)) -> Path:
    data = np.stack([fbm_surface(shape, seed=i, relief=15.0, base=280.0) for i in range(n_time)])
    coords = {
        "time": np.arange(n_time),
        "lat": 40.0 - 0.5 * np.arange(shape[0]),
        "lon": 10.0 + 0.5 * np.arange(shape[1]),
    }
    tas = xr.DataArray(data, dims=("time", "lat", "lon"), coords=coords, name="tas", attrs={"units": "K"})
    tas.to_dataset().to_netcdf(path)
    return path


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def slow_process_cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``dask scheduler`` process (that a test may kill) and a ``dask worker`` process of one thread whose tiles
    take 0.3 s more each; yields the scheduler's address and process."""
    if not DASK.exists():
        pytest.skip("no dask command beside this Python")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    logs = (tmp_path / "scheduler.log").open("wb"), (tmp_path / "worker.log").open("wb")
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--dashboard-address", ":0"],
        stdout=logs[1],
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,
    )
    try:
        with distributed.Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            client.run(armed(0.3))
        yield address, scheduler
    finally:
        for process in (worker, scheduler):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (worker, scheduler):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        for log in logs:
            log.close()


def kill_scheduler_mid_run(address: str, scheduler: subprocess.Popen[bytes], run: subprocess.Popen[str]) -> None:
    """Kill ``scheduler`` once its worker has run a few tiles of ``run`` (and while ``run`` still runs)."""
    with distributed.Client(address, timeout="30s", set_as_default=False) as client:
        before = tiles_run(client)
        wait_until(lambda: tiles_run(client) >= before + 3 or run.poll() is not None, 60, "tiles run on the worker")
    assert run.poll() is None, "the run ended before its scheduler could be killed: make it longer"
    os.killpg(scheduler.pid, signal.SIGKILL)


# --- D1: an address where nothing answers as a dask scheduler ----------------------------------------------


def test_a_listener_that_says_nothing_is_one_line_within_the_connect_timeout(
    cli, dem_tif, model1, tmp_path, monkeypatch
):
    # a Client bounds the TCP connect by its timeout, not the handshake: it waited for ever on a port that
    # accepts and says nothing (a dashboard at 8787 given for the scheduler at 8786, any other server)
    from geosr import distributed as geosr_distributed

    monkeypatch.setattr(geosr_distributed, "CONNECT_TIMEOUT", "2s")
    out = tmp_path / "out.tif"
    with listener(None) as address:
        args = ("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", address)
        result, elapsed = cli_within(cli, 25, *args)
    assert result is not None, f"--scheduler {address} (a listener that says nothing) still waited after 25 s"
    line = assert_one_line_error(result.err, result.code)
    assert f"no dask scheduler answered at '{address}'" in line and "did not answer within 2 s" in line
    assert "8786" in line and "8787" in line  # the scheduler's default port, and its dashboard's
    assert elapsed < 10, f"refusing a silent listener took {elapsed:.0f} s"
    assert not out.exists()


def test_a_listener_that_says_nothing_ends_the_command_in_one_line_without_a_traceback(dem_tif, model1, tmp_path):
    # the command itself, with the default time limit: one line, then the process ends (a half-made Client's
    # __del__ waited 20 s more and printed a 9-line traceback)
    out = tmp_path / "out.tif"
    with listener(None) as address:
        args = ("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", address)
        result, elapsed = geosr_subprocess(*args, timeout=45)
    assert f"no dask scheduler answered at '{address}'" in assert_one_line_error(result.stderr, result.returncode)
    assert elapsed < 25, f"refusing a silent listener took {elapsed:.0f} s"
    assert not out.exists()


# --- D2: an address that answers something else -------------------------------------------------------------


def test_a_listener_answering_another_protocol_is_one_line_at_once(cli, dem_tif, model1, tmp_path):
    # an HTTP answer read as dask frames: 'MemoryError: Unable to allocate 3.07 EiB', then a 20 s wait
    out = tmp_path / "out.tif"
    http = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with listener(http) as address:
        args = ("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", address)
        result, elapsed = cli_within(cli, 40, *args)
    assert result is not None, f"--scheduler {address} (an HTTP server) still waited after 40 s"
    line = assert_one_line_error(result.err, result.code)
    assert f"no dask scheduler answered at '{address}'" in line and "MemoryError" not in line
    assert elapsed < 10
    assert not out.exists()


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("ucx://127.0.0.1:8786", "unknown address scheme 'ucx'"),
        ("inproc://foo", "unknown address scheme 'inproc'"),
        ("tls://127.0.0.1:8786", "tls:// needs TLS certificates"),
    ],
)
def test_an_address_geosr_cannot_connect_by_is_one_line_at_once(dem_tif, model1, tmp_path, address, says):
    # each was a raw line (TypeError: Can't instantiate abstract class UCXConnector..., not enough values to
    # unpack...), then a 20 s wait and a Client.__del__ traceback
    out = tmp_path / "out.tif"
    args = ("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", address)
    result, elapsed = geosr_subprocess(*args, timeout=60)
    line = assert_one_line_error(result.stderr, result.returncode)
    assert f"cannot reach a dask scheduler at '{address}'" in line and says in line, line
    assert elapsed < 15, f"refusing {address} took {elapsed:.0f} s"
    assert not out.exists()


def test_a_workers_address_given_for_the_scheduler_says_so(cli, dem_tif, model1, tmp_path):
    # 'TypeError: Worker.identity() got an unexpected keyword argument', then the 20 s wait and a traceback
    with local_cluster() as cluster, distributed.Client(cluster, set_as_default=False) as client:
        (worker,) = client.scheduler_info()["workers"]
        out = tmp_path / "out.tif"
        args = ("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", worker)
        result, _ = cli_within(cli, 40, *args)
        assert result is not None
        line = assert_one_line_error(result.err, result.code)
        assert f"'{worker}' is a dask Worker, not a dask scheduler" in line
        assert cluster.scheduler_address.rsplit(":", 1)[1] in line  # its scheduler, named
        assert not out.exists()


# --- D3: workers that cannot run geosr's tasks ------------------------------------------------------------

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
for module in [m for m in sys.modules if m.split(".")[0] in {blocked!r}]:
    del sys.modules[module]
"""


@pytest.mark.parametrize(("blocked", "says"), [(("geosr", "torch"), "geosr and torch"), (("torch",), "torch")])
def test_workers_without_geosr_or_torch_are_refused_before_any_work(cli, dem_tif, model1, tmp_path, blocked, says):
    # without geosr a worker could not unpickle a tile, stopped, and the run waited for ever on a cluster with no
    # workers left; without torch alone: 'Error: ModuleNotFoundError: No module named 'torch''
    pytest.importorskip("netCDF4")
    preload = tmp_path / "block.py"
    preload.write_text(BLOCK.format(blocked=blocked))
    src = grid_file(tmp_path / "tas.nc")
    with local_cluster(preload=[str(preload)]) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        (worker,) = client.scheduler_info()["workers"]
        common = ("--scale", 2, "--model", model1, "--scheduler", cluster.scheduler_address)
        for args, out in (
            (("downscale", dem_tif, *common), tmp_path / "out.tif"),
            (("downscale", src, "--variable", "tas", *common), tmp_path / "out.nc"),
        ):
            result, elapsed = cli_within(cli, 30, *args, "-o", out)
            assert result is not None, f"geosr {args} on workers without {says} still ran after 30 s"
            line = assert_one_line_error(result.err, result.code)
            assert f"1 of the 1 dask workers of '{cluster.scheduler_address}'" in line and worker in line
            assert f"{says} cannot be imported there" in line
            assert "install geosr and torch in the workers' environment" in line
            assert not out.exists()


def test_a_grid_run_on_a_cluster_without_workers_is_refused_at_once(cli, model1, tmp_path):
    # a GeoTIFF run refused it; a --variable run waited for ever for a worker
    pytest.importorskip("netCDF4")
    src = grid_file(tmp_path / "tas.nc")
    out = tmp_path / "out.nc"
    with local_cluster(n_workers=0) as cluster:
        args = ("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "-o", out)
        result, elapsed = cli_within(cli, 30, *args, "--scheduler", cluster.scheduler_address)
    assert result is not None, "a --variable run on a cluster without workers still waited after 30 s"
    line = assert_one_line_error(result.err, result.code)
    assert f"the dask scheduler at '{cluster.scheduler_address}' has no workers" in line
    assert elapsed < 10 and not out.exists()


def test_a_cluster_left_without_workers_ends_the_run_in_one_line(cli, make_geotiff, model1, tmp_path, monkeypatch):
    # the tiles waited for ever for a worker
    from geosr import distributed as geosr_distributed

    monkeypatch.setattr(geosr_distributed, "NO_WORKERS_S", 1.0, raising=False)  # raising: fails without the fix
    monkeypatch.setattr(geosr_distributed, "WATCH_S", 0.2, raising=False)
    src = make_geotiff("dem.tif", fbm_surface((64, 64), seed=3))
    out = tmp_path / "out.tif"
    with local_cluster() as cluster, distributed.Client(cluster, set_as_default=False) as client:
        client.run(armed(0.5))
        args = ("downscale", src, "--scale", 2, "--model", model1, "--tile-size", 16, "-o", out)
        stopped: list[bool] = []

        def stop_the_workers() -> None:
            wait_until(lambda: tiles_run(client) >= 1, 30, "a tile run")
            cluster.scale(0)
            stopped.append(True)

        stopper = threading.Thread(target=stop_the_workers, daemon=True)
        stopper.start()
        result, _ = cli_within(cli, 40, *args, "--scheduler", cluster.scheduler_address)
        stopper.join(5)
        assert stopped, "the workers were not stopped"
        assert result is not None, "a run on a cluster without workers still waited after 40 s"
        line = assert_one_line_error(result.err, result.code)
        assert f"the dask cluster at '{cluster.scheduler_address}' has had no workers" in line
        assert "dask worker" in line
        assert not out.exists()


# --- D4: a lost scheduler is one line, without the client's log tracebacks ----------------------------------


def test_the_client_logs_are_quiet_though_distributed_is_first_imported_inside():
    # importing distributed configures its loggers (distributed.client at WARNING): imported after the levels
    # were lowered (the first Client made inside), it undid them, and a lost scheduler logged 24-36 lines of
    # 'distributed.client - ERROR - ... ConnectionRefusedError ... CancelledError' before geosr's one line
    code = (
        "import logging, sys\n"
        "import geosr.distributed as d\n"
        "assert 'distributed' not in sys.modules, 'distributed was imported already: the test shows nothing'\n"
        "with d._quiet_client_logs():\n"
        "    import distributed\n"
        "    print(logging.getLogger('distributed.client').getEffectiveLevel())\n"
        "print(logging.getLogger('distributed.client').getEffectiveLevel())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 0, result.stderr
    inside, after = map(int, result.stdout.split())
    assert inside == logging.CRITICAL and after == logging.WARNING


def run_and_lose_the_scheduler(address: str, scheduler: Any, *args: Any) -> str:
    """Run ``geosr ARGS --scheduler ADDRESS``, kill the scheduler mid-run, and return the one error line."""
    run = subprocess.Popen(
        [sys.executable, "-m", "geosr", *map(str, args), "--scheduler", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=ENV,
    )
    try:
        kill_scheduler_mid_run(address, scheduler, run)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    return assert_one_line_error(err, run.returncode)


def test_a_scheduler_lost_mid_run_is_one_line(slow_process_cluster, make_geotiff, model1, tmp_path):
    address, scheduler = slow_process_cluster
    src = make_geotiff("dem.tif", fbm_surface((96, 96), seed=3))
    out = tmp_path / "out.tif"
    args = ("downscale", src, "--scale", 2, "--model", model1, "--tile-size", 16, "-q", "-o", out)
    line = run_and_lose_the_scheduler(address, scheduler, *args)
    assert f"the dask cluster at '{address}' lost the run" in line
    assert not out.exists() and left_in(tmp_path) == ["dem.tif", "scheduler.log", "worker.log"]


# --- D6: the --variable path says what the GeoTIFF path says -----------------------------------------------


def test_a_scheduler_lost_mid_run_of_a_grid_is_one_line(slow_process_cluster, model1, tmp_path):
    # 'Error: FutureCancelledError: finalize-... cancelled for reason: scheduler-connection-lost.' and a second line
    pytest.importorskip("netCDF4")
    address, scheduler = slow_process_cluster
    src = grid_file(tmp_path / "tas.nc", n_time=8)
    out = tmp_path / "out.nc"
    args = ("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--tile-size", 16, "-q")
    line = run_and_lose_the_scheduler(address, scheduler, *args, "-o", out)
    assert f"the dask cluster at '{address}' lost the run" in line and "dask worker ADDRESS" in line
    assert not out.exists()


def test_workers_that_die_on_a_tile_of_a_grid_are_one_line(cli, model1, tmp_path):
    # 'Error: KilledWorker: Attempted to run task ...', where a GeoTIFF run says what to do
    pytest.importorskip("netCDF4")
    import dask

    src = grid_file(tmp_path / "tas.nc")
    out = tmp_path / "out.nc"
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),  # the scheduler's: before it is made
        local_cluster() as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        client.run(armed(die=True))
        args = ("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--tile-size", 16, "-q")
        result, _ = cli_within(cli, 60, *args, "-o", out, "--scheduler", cluster.scheduler_address)
    assert result is not None
    line = assert_one_line_error(result.err, result.code)
    assert f"the dask workers of '{cluster.scheduler_address}' died while running a tile" in line
    assert "more memory or a smaller --tile-size" in line
    assert not out.exists()


# --- D5: an interrupted --variable run leaves no temporary output ------------------------------------------


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_an_interrupted_grid_run_on_a_cluster_leaves_no_temporary_output(cli, model1, tmp_path, suffix):
    # write_grid removed its temporary output at once, while tiles still ran on the workers: they wrote into it
    # after, and '.out.zarr.XXXX.geosr-part/' (or '.out.nc.XXXX.geosr-part') was left behind
    pytest.importorskip("netCDF4")
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    src = grid_file(tmp_path / "tas.nc", n_time=8)
    out = tmp_path / f"out{suffix}"
    main = threading.main_thread().ident
    assert threading.current_thread().ident == main
    with local_cluster(n_workers=2) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        client.run(armed(0.5))
        sent: list[bool] = []

        def interrupt() -> None:
            wait_until(lambda: any(p.name.endswith(".geosr-part") for p in tmp_path.iterdir()), 60, "a part")
            wait_until(lambda: tiles_run(client) >= 2 and running_tasks(client) >= 1, 60, "tiles running")
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl+C, while tiles run on the workers
            sent.append(True)

        interrupter = threading.Thread(target=interrupt, daemon=True)
        interrupter.start()
        args = ("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--tile-size", 16, "-q")
        result = cli(*args, "-o", out, "--scheduler", cluster.scheduler_address)
        interrupter.join(5)
        assert sent and result.code == 130, result.err
        # what the workers still ran when the command returned has ended: nothing of the run may appear since
        wait_until(lambda: running_tasks(client) == 0, 30, "the workers idle")
        time.sleep(0.5)
    assert left_in(tmp_path) == ["tas.nc"]


def test_a_probe_that_cannot_run_on_this_distributed_leaves_the_answer_to_the_client(monkeypatch):
    # the probe speaks distributed's protocol through its internals: where another version names them otherwise,
    # a working scheduler must not be refused as 'answered in another protocol'
    import geosr.distributed as d

    async def renamed(address, seconds):
        raise AttributeError("'TCP' object has no attribute 'handshake_info'")

    monkeypatch.setattr(d, "_identity", renamed)
    assert d.probe("tcp://127.0.0.1:8786") is None
