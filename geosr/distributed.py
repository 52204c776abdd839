"""Running the tiles of a raster on a dask.distributed cluster (``geosr downscale --scheduler``).

The client plans the tiles and computes the whole-raster statistics as in a local run; each worker
reads its own input window from the raster's path (a path pickles, an open dataset does not), runs
the model it has loaded once (:func:`geosr.predict.cached_downscaler`) and sends the fine core back;
the client writes the cores as they arrive. At most ``IN_FLIGHT`` tiles per worker thread are
submitted at a time, so memory stays bounded by the tile size on both sides. The same code runs the
same arithmetic, so the output is identical to a local run.

What every tile shares (the path, the model, the plan, the statistics...) is a task of the cluster, not
scattered data: a worker that dies (and its nanny restarts) loses nothing the scheduler cannot compute
again, so the run goes on on the workers left. A cluster that loses the run (its scheduler stops, every
worker dies on a tile, no worker is left for :data:`NO_WORKERS_S`) or a worker that cannot read the input ends the
run with one line saying so; so does an address where no dask scheduler answers in :data:`CONNECT_TIMEOUT`
(a dashboard, a silent port, a worker) and a cluster whose workers lack geosr or torch, before any work.

A ``--variable`` run (:func:`computing_on`) writes through xarray, whose tasks dask sends to the cluster: its
errors are mapped to the same lines, and a run stopped (Ctrl+C, an error) cancels its tasks and waits for those
still running on the workers, which write into the temporary output the caller then removes.

The xarray accessor needs nothing from here: with a client active, dask sends its tasks to the
cluster by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from geosr.errors import GeosrError, SchedulerError, first_line
from geosr.stats import BandStats
from geosr.tiling import Tile, TilePlan

#: Tiles submitted per worker thread before the first comes back: enough to keep workers busy
#: while the client writes, few enough that pending cores stay a small multiple of one tile.
IN_FLIGHT = 2
#: How long a scheduler has to answer (connection and handshake): what listens at an address and does not speak
#: dask's protocol (a dashboard, a web server) is refused after this long, not waited on for ever.
CONNECT_TIMEOUT = "10s"
#: The address schemes geosr connects by (``dask scheduler`` listens on tcp:// unless told otherwise).
SCHEMES = ("tcp", "tls", "ws", "wss")
#: How long a run waits on a cluster left without any worker (they all stopped or died for good) before it ends
#: with one line; a nanny restarts a worker that died within seconds.
NO_WORKERS_S = 60.0
#: Seconds between the checks for workers while nothing finishes.
WATCH_S = 2.0
#: How long a stopped run (Ctrl+C, an error) waits for the tasks still running on the workers to end before the
#: caller removes its temporary output (a task of a NetCDF/Zarr run writes into it).
STOP_S = 60.0


def require_distributed() -> None:
    """Refuse --scheduler without dask.distributed installed, in one line (checked before any work)."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise SchedulerError(
            "--scheduler needs dask.distributed; install it with `pip install distributed` (or `pip install "
            "'geosr[distributed]'`)"
        )


def connect(address: str) -> Any:
    """A :class:`distributed.Client` for the scheduler at ``address`` (``tcp://host:8786``).

    Whatever answers there is asked first, within :data:`CONNECT_TIMEOUT` in all, whether it is a dask scheduler:
    a Client waits for ever on a listener that says nothing (a silent port) and reads an HTTP answer (a dashboard,
    8787) as a frame of exabytes; either way it is then left half made, and its ``__del__`` waits 20 s to close it
    and prints a traceback after the error.
    """
    require_distributed()
    from distributed import Client

    try:
        # before a Client is made: one refused for an unknown scheme (http://) is left half made too
        check_address(address)
    except ValueError as exc:
        raise SchedulerError(
            f"cannot reach a dask scheduler at {address!r} ({exc}); give the address `dask scheduler` prints "
            "(such as tcp://HOST:8786), or drop --scheduler to run locally"
        ) from None
    probe(address)
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError, ImportError) as exc:
        raise SchedulerError(
            f"cannot reach a dask scheduler at {address!r} ({first_line(exc)}); start one (`dask scheduler`, "
            "`dask worker ADDRESS`) or drop --scheduler to run locally"
        ) from None


def probe(address: str) -> None:
    """Raise :class:`SchedulerError` in one line unless a dask scheduler answers at ``address`` within
    :data:`CONNECT_TIMEOUT`: nothing listens there, something else does (a dashboard, a web server, a worker) or
    it says nothing. Asked from a thread of its own with a loop of its own (the caller may run one)."""
    from dask.utils import parse_timedelta
    from distributed.comm.addressing import parse_address
    from distributed.security import Security

    scheme = parse_address(address)[0]
    if scheme in ("tls", "wss") and Security().get_connection_args("client").get("ssl_context") is None:
        raise SchedulerError(
            f"cannot reach a dask scheduler at {address!r}: {scheme}:// needs TLS certificates, and dask's "
            "configuration gives none; set distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and "
            "distributed.comm.tls.client.key (such as in ~/.config/dask/distributed.yaml), or give the scheduler's "
            "tcp:// address"
        )
    seconds = float(parse_timedelta(CONNECT_TIMEOUT, "s"))
    answer: list[Any] = []

    def ask() -> None:
        import asyncio

        try:
            answer.append(asyncio.run(_identity(address, seconds)))
        except BaseException as exc:  # noqa: BLE001 - whatever it was, it is said in one line below
            answer.append(exc)

    thread = threading.Thread(target=ask, name="geosr-scheduler-probe", daemon=True)
    thread.start()
    thread.join(seconds + 5)  # _identity keeps its own deadline; this one only in case it did not
    reply = answer[0] if answer else TimeoutError(f"no answer within {seconds:g} s")
    if isinstance(reply, (AttributeError, ImportError, NameError)):
        # the probe itself could not run (it speaks distributed's protocol through its internals, which another
        # version of distributed may name otherwise): say nothing, and let the Client find out
        return
    if isinstance(reply, _Unreachable):
        raise SchedulerError(
            f"cannot reach a dask scheduler at {address!r} ({reply}); start one (`dask scheduler`, "
            "`dask worker ADDRESS`) or drop --scheduler to run locally"
        ) from None
    if isinstance(reply, dict) and reply.get("type") == "Scheduler":
        return
    if isinstance(reply, dict):  # a dask server, not a scheduler
        kind = str(reply.get("type") or "server")
        own = f" (its scheduler is at {reply['scheduler']!r})" if isinstance(reply.get("scheduler"), str) else ""
        raise SchedulerError(
            f"{address!r} is a dask {kind}, not a dask scheduler{own}; give the scheduler's address (`dask "
            "scheduler` prints it: 'Scheduler at: tcp://HOST:8786'), or drop --scheduler to run locally"
        )
    if isinstance(reply, TimeoutError):
        why = f"did not answer within {seconds:g} s"
    elif isinstance(reply, OSError):
        why = "closed the connection without answering"
    else:  # another protocol: its first bytes read as a frame count of exabytes (MemoryError), or as garbage
        why = "answered in another protocol"
    raise SchedulerError(
        f"no dask scheduler answered at {address!r}: something listens there but {why} (a dask scheduler "
        "listens on port 8786 by default; 8787 is its dashboard, a web page); give the address `dask scheduler` "
        "prints ('Scheduler at: tcp://HOST:8786'), or drop --scheduler to run locally"
    )


class _Unreachable(Exception):
    """Nothing accepted a connection at the address (refused, no such host, timed out)."""


async def _identity(address: str, seconds: float) -> Any:
    """What the dask server at ``address`` says it is (its ``identity``), within ``seconds`` in all; raises
    :class:`_Unreachable` when no connection could be made, TimeoutError when the peer said nothing in time and
    any other error for a peer that answered something else than dask's protocol."""
    import asyncio
    import random

    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend
    from distributed.security import Security

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    scheme, location = parse_address(address)
    arguments = Security().get_connection_args("client")
    connector = get_backend(scheme).get_connector()
    attempt, last = 0, None
    while True:  # as distributed retries: a scheduler may be starting
        left = deadline - loop.time()
        if left <= 0:
            raise _Unreachable(f"no connection in {seconds:g} s: {last}" if last else f"timed out after {seconds:g} s")
        try:
            comm = await asyncio.wait_for(connector.connect(location, deserialize=True, **arguments), left)
            break
        except (OSError, asyncio.TimeoutError) as exc:
            last = "timed out" if isinstance(exc, asyncio.TimeoutError) else first_line(_root(exc))
            attempt += 1
            await asyncio.sleep(min(max(0.0, deadline - loop.time()), random.uniform(0, 0.01 * 2**attempt), 1.0))
        except Exception as exc:
            raise _Unreachable(first_line(exc)) from None
    try:
        return await asyncio.wait_for(_handshake_identity(comm), max(0.1, deadline - loop.time()))
    finally:
        comm.abort()


def _root(exc: BaseException) -> BaseException:
    """The error at the bottom of ``exc``'s causes (distributed wraps the OSError in a CommClosedError)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


async def _handshake_identity(comm: Any) -> Any:
    """The handshake :func:`distributed.comm.connect` makes (without its time limit), then ``identity``."""
    from distributed.core import send_recv

    local = comm.handshake_info()
    await comm.write(local)
    remote = await comm.read()
    if not isinstance(remote, dict):
        raise ValueError(f"not a dask handshake: {str(remote)[:60]!r}")
    comm.remote_info = {**remote, "address": comm.peer_address}
    comm.local_info = {**local, "address": comm.local_address}
    comm.handshake_options = comm.handshake_configuration(comm.local_info, comm.remote_info)
    try:
        return await send_recv(comm, op="identity", n_workers=0)  # a scheduler's, without its workers' details
    except TypeError:  # a worker's or a nanny's identity takes no n_workers
        return await send_recv(comm, op="identity")


@contextlib.contextmanager
def worker_netcdf_cache(client: Any, nbytes: int) -> Iterator[None]:
    """Give the NetCDF files that the workers of ``client`` open inside an HDF5 chunk cache of ``nbytes`` (the
    setting is per process, as :func:`geosr.io.netcdf_chunk_cache` makes it for this one); each worker's own
    setting comes back after."""
    from geosr.io import set_netcdf_chunk_cache

    before = client.run(set_netcdf_chunk_cache, nbytes)
    try:
        yield
    finally:
        # not on a worker gone meanwhile (it keeps nothing to restore, and the scheduler tries to reach it for
        # 30 s), nor through a scheduler gone (each call waits for it)
        with contextlib.suppress(Exception):
            present = set(client.scheduler_info()["workers"]) if client.status == "running" else set()
            groups: dict[tuple[Any, ...], list[str]] = {}  # one call per setting
            for worker, setting in before.items():
                if setting is not None and worker in present:
                    groups.setdefault(tuple(setting), []).append(worker)
            for setting, workers in groups.items():
                client.run(set_netcdf_chunk_cache, setting, workers=workers)


def check_address(address: str) -> None:
    """Raise ValueError for a scheduler address whose scheme geosr does not connect by (:data:`SCHEMES`: dask has
    no transport for http://, inproc:// reaches this process only, ucx:// needs a set-up geosr does not make), or
    without a host and a port."""
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend

    scheme, location = parse_address(address)  # no scheme: tcp
    get_backend(scheme)
    if scheme not in SCHEMES:  # inproc:// (this process only), ucx:// (a transport geosr does not set up)
        raise ValueError(
            f"unknown address scheme {scheme!r} for geosr, which connects by " + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if scheme in SCHEMES:  # a host and a port: without one, a Client is left half made too
        from distributed.comm.addressing import parse_host_port

        host, port = parse_host_port(location)
        if not host or not port:
            raise ValueError(f"no host or port in {address!r} (give one such as tcp://HOST:8786)")


def worker_path(path: str | Path) -> str:
    """The name a worker opens: absolute for a file on disk, as given for a GDAL name (``/vsi...``)."""
    return os.path.abspath(path) if Path(path).exists() else str(path)


def downscale_tile(
    path: str,
    model: tuple[str, str],
    options: dict[str, Any],
    plan: TilePlan,
    stats: BandStats,
    gains: np.ndarray | None,
    bands: list[int] | None,
    flips: tuple[bool, bool],
    tile: Tile,
) -> tuple[Tile, np.ndarray]:
    """On a worker: read the tile's input window from ``path`` (its ``bands``) and return ``(tile, fine core)``."""
    from geosr.io import open_raster, read_window
    from geosr.predict import dask_worker_address, digest_downscaler

    try:
        with open_raster(path, bands) as dataset:
            source = read_window(dataset, tile.rows.source, tile.cols.source, flips)
        downscaler = digest_downscaler(model, options)  # the model file the client planned with
    except GeosrError as exc:
        # the client read the same path already: what a worker cannot read, it cannot see (another machine,
        # user or container), which the bare error (such as 'does not exist') would not say
        raise SchedulerError(f"on dask worker {dask_worker_address() or '(unknown)'}: {exc}{_SAME_PATHS}") from None
    ((_, core),) = downscaler.run(plan, stats, [(tile, source)], gains)
    return tile, core


_SAME_PATHS = (
    " (the workers open the input and the model at the paths this machine uses: put them where every worker "
    "sees them, such as a shared file system, or drop --scheduler to run locally)"
)


def _bundle(*shared: Any) -> tuple[Any, ...]:
    """On a worker: what every tile shares, as one result that the tiles take as their first argument."""
    return shared


def _bundled_tile(shared: tuple[Any, ...], tile: Tile) -> tuple[Tile, np.ndarray]:
    return downscale_tile(*shared, tile)


def run_tiles(
    address: str,
    path: str | Path,
    model: tuple[str, str],
    options: dict[str, Any],
    plan: TilePlan,
    stats: BandStats,
    bands: Sequence[int] | None = None,
    gains: np.ndarray | None = None,
    flips: tuple[bool, bool] = (False, False),
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Downscale every tile of the raster at ``path`` on the cluster; yield ``(tile, core)`` as they finish.

    ``model`` is the model file's path and digest (a worker refuses a file replaced since) and ``options`` the
    keyword arguments of
    :class:`geosr.predict.Downscaler`, as for the local run; ``gains`` its residual gains
    (:meth:`geosr.predict.Downscaler.gains`, computed once by the caller); ``flips`` how the raster is
    read north-up (:func:`geosr.io.north_up_flips`): cores come back north-up, as from a local run.
    """
    with cluster_client(address) as client:
        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        if threads == 0:  # where check_workers could not ask the workers
            raise _no_workers(address)
        chosen = None if bands is None else list(bands)
        # a task, not client.scatter: scattered data dies with the workers that hold it, and every tile
        # not yet run would then be cancelled ('already forgotten'); a task's result the scheduler recomputes
        shared = client.submit(
            _bundle, worker_path(path), model, options, plan, stats, gains, chosen, flips, pure=False
        )
        tiles = iter(plan)
        finished = _Finished(client, address)

        def submit(tile: Tile) -> None:
            finished.add(client.submit(_bundled_tile, shared, tile, pure=False))

        for tile in islice(tiles, IN_FLIGHT * threads):
            submit(tile)
        for future in finished:
            yield _result(future, address)
            future.release()
            for tile in islice(tiles, 1):
                submit(tile)


def _result(future: Any, address: str) -> Any:
    """A tile's result, or one line that says the cluster lost the run (its scheduler or its workers)."""
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        raise SchedulerError(
            f"the dask workers of {address!r} died while running a tile ({first_line(exc)}); check their logs "
            "(out of memory?), give them more memory or a smaller --tile-size, or drop --scheduler to run locally"
        ) from None
    except (CancelledError, CommClosedError) as exc:
        raise SchedulerError(
            f"the dask cluster at {address!r} lost the run ({first_line(exc)}); check that its scheduler and "
            "workers are still running (`dask scheduler`, `dask worker ADDRESS`) and run again, or drop "
            "--scheduler to run locally"
        ) from None


@contextlib.contextmanager
def cluster_client(address: str) -> Iterator[Any]:
    """A client of the cluster at ``address`` whose workers can run geosr's tasks (:func:`check_workers`), closed
    after. dask.distributed's client logs stay quiet until it is closed (unless --verbose): a lost scheduler
    makes them log tracebacks, where the run says what happened in one line."""
    with _quiet_client_logs():
        client = connect(address)
        try:
            check_workers(client, address)
            yield client
        finally:
            with contextlib.suppress(Exception):  # a scheduler gone: the client closes all the same
                client.close()


def check_workers(client: Any, address: str) -> None:
    """Refuse, in one line, a cluster without workers, or whose workers have no geosr or no torch: each task would
    fail to load on them (a worker that cannot unpickle a task stops, and the run then waited for ever on a cluster
    without workers)."""
    try:
        lacking = client.run(_lacking(), on_error="return")
    except Exception:  # noqa: BLE001 - a cluster that cannot answer this says so when the run starts
        return
    if not lacking:  # the tasks would wait for ever for one (a GeoTIFF run refused this already, not a grid's)
        raise _no_workers(address)
    bad = {worker: names for worker, names in lacking.items() if isinstance(names, list) and names}
    if not bad:
        return
    workers = sorted(bad)
    missing = " and ".join(sorted({name for names in bad.values() for name in names}))
    named = ", ".join(workers[:3]) + (f" and {len(workers) - 3} more" if len(workers) > 3 else "")
    raise SchedulerError(
        f"{len(workers)} of the {len(lacking)} dask workers of {address!r} cannot run geosr's tiles: {missing} "
        f"cannot be imported there ({named}); install geosr and torch in the workers' environment (the versions "
        "this machine has), or drop --scheduler to run locally"
    )


def _no_workers(address: str) -> SchedulerError:
    return SchedulerError(f"the dask scheduler at {address!r} has no workers; start some with `dask worker`")


def _lacking() -> Any:
    """A function, pickled by value (a worker without geosr can run it), that names what a worker cannot import."""

    def lacking() -> list[str]:
        import importlib.util

        missing = []
        for name in ("geosr", "torch"):
            try:
                found = importlib.util.find_spec(name) is not None
            except Exception:  # noqa: BLE001 - a broken installation
                found = False
            if not found:
                missing.append(name)
        return missing

    return lacking


class _Finished:
    """The futures added, as they finish, in any order. A cluster left without workers for :data:`NO_WORKERS_S`
    ends the wait in one line: its tasks would wait for ever."""

    def __init__(self, client: Any, address: str) -> None:
        self.client, self.address = client, address
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.waiting = 0

    def add(self, future: Any) -> None:
        self.waiting += 1
        future.add_done_callback(self.done.put)  # on a thread of distributed's

    def __iter__(self) -> Iterator[Any]:
        alone = None  # since when the cluster has had no worker
        while self.waiting:
            try:
                future = self.done.get(timeout=WATCH_S)
            except queue.Empty:
                alone = self._watch(alone)
                continue
            self.waiting -= 1
            yield future

    def _watch(self, alone: float | None) -> float | None:
        try:
            workers = self.client.scheduler_info(n_workers=0).get("n_workers")
        except Exception:  # noqa: BLE001 - a scheduler gone cancels the futures: they come back as such
            return alone
        if not isinstance(workers, int) or workers > 0:
            return None
        now = time.monotonic()
        if alone is not None and now - alone >= NO_WORKERS_S:
            raise SchedulerError(
                f"the dask cluster at {self.address!r} has had no workers for {now - alone:.0f} s, with tiles left "
                "to run (its workers stopped or died: check their logs); start some (`dask worker ADDRESS`) and run "
                "again, or drop --scheduler to run locally"
            )
        return now if alone is None else alone


@contextlib.contextmanager
def computing_on(address: str, netcdf_cache: int | None = None) -> Iterator[Any]:
    """Inside, dask computes on the cluster at ``address`` (its client current, and dask's scheduler): for
    ``--variable`` with ``--scheduler``, where xarray writes the output through dask. The run's errors are the
    one lines of the GeoTIFF path (:func:`_result`), a cluster left without workers ends it, and a run stopped
    (Ctrl+C, an error) cancels its tasks and waits for those still running on the workers, which write into the
    temporary output its caller then removes. With ``netcdf_cache`` the workers open NetCDF files within an HDF5
    chunk cache of that many bytes (:func:`worker_netcdf_cache`)."""
    import functools
    import types

    import dask

    with cluster_client(address) as client, client.as_current():
        # a method of the client: xarray takes a scheduler whose __self__ is a Client as distributed (its locks)
        get = types.MethodType(functools.partial(_run_graph, address=address), client)
        cache = contextlib.nullcontext() if netcdf_cache is None else worker_netcdf_cache(client, netcdf_cache)
        with dask.config.set(scheduler=get), cache:
            yield client


def _run_graph(client: Any, dsk: Any, keys: Any, address: str, **kwargs: Any) -> Any:
    """``client.get``, as dask's scheduler: the errors of a lost cluster are one line, and a run that stops (an
    interrupt, an error) cancels its tasks and waits for the workers to end those they still run."""
    from distributed.client import futures_of

    packed = client.get(dsk, keys, sync=False, **kwargs)
    futures = futures_of(packed)
    finished = _Finished(client, address)
    for future in futures:
        finished.add(future)
    try:
        for future in finished:
            if future.status != "finished":
                _result(future, address)  # raises: the task's own error, or one line for a lost cluster
        return client.gather(packed)
    except BaseException:
        _stop_tasks(client, futures)
        raise
    finally:
        for future in futures:
            future.release()


def _stop_tasks(client: Any, futures: list[Any]) -> None:
    """Cancel ``futures`` and wait (up to :data:`STOP_S`) until no worker still runs a cancelled task: a task
    cancelled while it runs goes on to its end, and one of a NetCDF/Zarr run writes into the temporary output."""
    if client.status != "running":  # the scheduler is gone: nothing to ask
        return
    try:
        client.cancel(futures)
        deadline = time.monotonic() + STOP_S
        time.sleep(0.2)  # the workers hear of the cancellation from the scheduler
        while time.monotonic() < deadline:
            running = client.run(_cancelled_running, on_error="return")
            if not any(isinstance(count, int) and count > 0 for count in running.values()):
                return
            time.sleep(0.1)
    except Exception:  # noqa: BLE001 - stopping is best effort: the run's own error is the one to report
        return


def _cancelled_running(dask_worker: Any) -> int:
    """On a worker: how many of its tasks were cancelled while they run, and run still."""
    state = dask_worker.state
    return sum(ts.state in ("cancelled", "resumed") for ts in (*state.executing, *state.long_running))


#: Loggers of the client side of dask.distributed, quiet while a run holds a client: a lost scheduler
#: makes them log tracebacks, where the run says what happened in one line.
CLIENT_LOGGERS = (
    "distributed.client",
    "distributed.comm",
    "distributed.core",
    "distributed.batched",
    "distributed.utils",
    "distributed.utils_comm",
)


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    """dask.distributed's client loggers quiet inside (not with --verbose). distributed is imported first: its
    import configures its loggers (distributed.client at WARNING), which undid the levels set here before it."""
    import distributed  # noqa: F401

    options = sys.modules.get("geosr.cli.options")
    if options is not None and getattr(options, "state", {}).get("verbose"):
        yield
        return
    loggers = [logging.getLogger(name) for name in CLIENT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
