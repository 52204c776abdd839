"""Running the tiles of a raster on a dask.distributed cluster (``geosr downscale --scheduler``).

The client plans the tiles and computes the whole-raster statistics as in a local run; each worker
reads its own input window from the raster's path (a path pickles, an open dataset does not), runs
the model it has loaded once (:func:`geosr.predict.cached_downscaler`) and sends the fine core back;
the client writes the cores as they arrive. At most ``IN_FLIGHT`` tiles per worker thread are
submitted at a time, so memory stays bounded by the tile size on both sides. The same code runs the
same arithmetic, so the output is identical to a local run.

The xarray accessor needs nothing from here: with a client active, dask sends its tasks to the
cluster by itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from geosr.errors import SchedulerError
from geosr.stats import BandStats
from geosr.tiling import Tile, TilePlan

#: Tiles submitted per worker thread before the first comes back: enough to keep workers busy
#: while the client writes, few enough that pending cores stay a small multiple of one tile.
IN_FLIGHT = 2
CONNECT_TIMEOUT = "10s"


def connect(address: str) -> Any:
    """A :class:`distributed.Client` for the scheduler at ``address`` (``tcp://host:8786``)."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError("--scheduler needs dask.distributed; install it with `pip install distributed`") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(
            f"cannot reach a dask scheduler at {address!r} ({exc}); start one (`dask scheduler`, "
            "`dask worker ADDRESS`) or drop --scheduler to run locally"
        ) from None


def worker_path(path: str | Path) -> str:
    """The name a worker opens: absolute for a file on disk, as given for a GDAL name (``/vsi...``)."""
    return os.path.abspath(path) if Path(path).exists() else str(path)


def downscale_tile(
    path: str,
    model: str,
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
    from geosr.predict import cached_downscaler

    with open_raster(path, bands) as dataset:
        source = read_window(dataset, tile.rows.source, tile.cols.source, flips)
    ((_, core),) = cached_downscaler(model, **options).run(plan, stats, [(tile, source)], gains)
    return tile, core


def run_tiles(
    address: str,
    path: str | Path,
    model: str,
    options: dict[str, Any],
    plan: TilePlan,
    stats: BandStats,
    bands: Sequence[int] | None = None,
    gains: np.ndarray | None = None,
    flips: tuple[bool, bool] = (False, False),
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Downscale every tile of the raster at ``path`` on the cluster; yield ``(tile, core)`` as they finish.

    ``model`` is the model file's path and ``options`` the keyword arguments of
    :class:`geosr.predict.Downscaler`, as for the local run; ``gains`` its residual gains
    (:meth:`geosr.predict.Downscaler.gains`, computed once by the caller); ``flips`` how the raster is
    read north-up (:func:`geosr.io.north_up_flips`): cores come back north-up, as from a local run.
    """
    from distributed import as_completed

    with connect(address) as client:
        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        if threads == 0:
            raise SchedulerError(f"the dask scheduler at {address!r} has no workers; start some with `dask worker`")
        chosen = None if bands is None else list(bands)
        shared = client.scatter([worker_path(path), model, options, plan, stats, gains, chosen, flips], broadcast=True)
        tiles = iter(plan)

        def submit(tile: Tile) -> Any:
            return client.submit(downscale_tile, *shared, tile, pure=False)

        pending = as_completed([submit(tile) for tile in islice(tiles, IN_FLIGHT * threads)], loop=client.loop)
        for future in pending:
            yield future.result()
            future.release()
            for tile in islice(tiles, 1):
                pending.add(submit(tile))
