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
worker dies on a tile) or a worker that cannot read the input ends the run with one line saying so.

The xarray accessor needs nothing from here: with a client active, dask sends its tasks to the
cluster by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
CONNECT_TIMEOUT = "10s"


def require_distributed() -> None:
    """Refuse --scheduler without dask.distributed installed, in one line (checked before any work)."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise SchedulerError(
            "--scheduler needs dask.distributed; install it with `pip install distributed` (or `pip install "
            "'geosr[distributed]'`)"
        )


def connect(address: str) -> Any:
    """A :class:`distributed.Client` for the scheduler at ``address`` (``tcp://host:8786``)."""
    require_distributed()
    from distributed import Client

    try:
        # before a Client is made: one refused for an unknown scheme (http://) is left half made, and its
        # __del__ waits 20 s to close it, then prints a traceback after the one-line error
        check_address(address)
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(
            f"cannot reach a dask scheduler at {address!r} ({exc}); start one (`dask scheduler`, "
            "`dask worker ADDRESS`) or drop --scheduler to run locally"
        ) from None


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
        for worker, setting in before.items():
            if setting is not None:
                with contextlib.suppress(Exception):  # a worker gone meanwhile keeps nothing to restore
                    client.run(set_netcdf_chunk_cache, setting, workers=[worker])


def check_address(address: str) -> None:
    """Raise ValueError for a scheduler address whose scheme dask.distributed has no transport for."""
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend

    scheme, location = parse_address(address)  # no scheme: tcp
    get_backend(scheme)
    if scheme in ("tcp", "tls", "ws", "wss"):  # a host and a port: without one, a Client is left half made too
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
    with _quiet_client_logs(), connect(address) as client:
        from distributed import as_completed

        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        if threads == 0:
            raise SchedulerError(f"the dask scheduler at {address!r} has no workers; start some with `dask worker`")
        chosen = None if bands is None else list(bands)
        # a task, not client.scatter: scattered data dies with the workers that hold it, and every tile
        # not yet run would then be cancelled ('already forgotten'); a task's result the scheduler recomputes
        shared = client.submit(
            _bundle, worker_path(path), model, options, plan, stats, gains, chosen, flips, pure=False
        )
        tiles = iter(plan)

        def submit(tile: Tile) -> Any:
            return client.submit(_bundled_tile, shared, tile, pure=False)

        pending = as_completed([submit(tile) for tile in islice(tiles, IN_FLIGHT * threads)], loop=client.loop)
        for future in pending:
            yield _result(future, address)
            future.release()
            for tile in islice(tiles, 1):
                pending.add(submit(tile))


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


#: Loggers of the client side of dask.distributed, quiet while a run holds a client: a lost scheduler
#: makes them log tracebacks, where the run says what happened in one line.
CLIENT_LOGGERS = ("distributed.client", "distributed.comm", "distributed.core", "distributed.batched")


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in CLIENT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
