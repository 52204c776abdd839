"""Bounded memory, the dask.distributed path and the background threads: regressions found by an audit.

Memory figures (peak RSS against raster size) belong to ``benchmarks/bench_memory.py``; these tests
check the mechanisms on small rasters: what is read at once, what a lost worker or scheduler does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

from geosr.errors import SchedulerError
from geosr.testing import fbm_surface

distributed = pytest.importorskip("distributed")


# --- dask.distributed: addresses, lost clusters, workers that cannot read the input ---------------------


def test_a_scheduler_address_of_an_unknown_scheme_is_refused_at_once(cli, dem_tif, model1, tmp_path):
    # distributed.Client left half made by an unknown scheme waited 20 s in its __del__ to close, then
    # printed a traceback ('Exception ignored in Client.__del__ ... TimeoutError') after the error line
    from geosr.distributed import check_address

    with pytest.raises(ValueError, match="unknown address scheme"):
        check_address("http://127.0.0.1:8786")
    check_address("127.0.0.1:8786")  # no scheme: tcp
    out = tmp_path / "out.tif"
    start = time.perf_counter()
    result = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", "http://127.0.0.1:9")
    elapsed = time.perf_counter() - start
    assert "cannot reach a dask scheduler at 'http://127.0.0.1:9'" in assert_one_line_error(result.err, result.code)
    assert elapsed < 10, f"refusing an unknown scheme took {elapsed:.0f} s"
    assert not out.exists()


class _Failed:
    """A stand-in for a distributed Future whose result raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def result(self) -> None:
        raise self.error


@pytest.mark.parametrize("reason", ["scheduler-connection-lost", "already forgotten"])
def test_a_cluster_that_loses_the_run_is_one_clear_line(reason):
    # a stopped scheduler, or workers that all left with the run's shared data, cancel every tile: the
    # bare FutureCancelledError ('downscale_tile-... cancelled for reason: ...') named neither cause nor fix
    from distributed.client import FutureCancelledError

    from geosr.distributed import _result

    with pytest.raises(SchedulerError) as caught:
        _result(_Failed(FutureCancelledError("tile-1", reason=reason)), "tcp://host:8786")
    message = str(caught.value)
    assert "the dask cluster at 'tcp://host:8786' lost the run" in message and "dask worker" in message
    assert "\n" not in message


def test_workers_that_die_on_a_tile_are_one_clear_line():
    from distributed.scheduler import KilledWorker

    from geosr.distributed import _result

    class Worker:
        address = "tcp://w:1"

    with pytest.raises(SchedulerError, match="died while running a tile") as caught:
        _result(_Failed(KilledWorker("tile-1", Worker(), 3)), "tcp://host:8786")
    assert "\n" not in str(caught.value)


def test_a_worker_that_cannot_read_the_input_says_where(tmp_path, model1):
    # the client read the file already: 'input file ... does not exist' alone contradicts what the user sees
    from geosr.distributed import downscale_tile
    from geosr.predict import Downscaler
    from geosr.stats import BandStats

    downscaler = Downscaler(str(model1), device="cpu", tile_size=16)
    plan = downscaler.plan((20, 20), 2)
    stats = BandStats.of_block(fbm_surface((20, 20))[None].astype(np.float64))
    options = {"device": "cpu", "tile_size": 16}
    with pytest.raises(SchedulerError) as caught:
        downscale_tile(
            str(tmp_path / "elsewhere.tif"),
            (str(model1), downscaler.model.digest),
            options,
            plan,
            stats,
            None,
            None,
            (False, False),
            next(iter(plan)),
        )
    message = str(caught.value)
    assert "on dask worker" in message and "elsewhere.tif" in message and "shared file system" in message


async def _kill_worker() -> None:  # a coroutine: client.run(wait=False) takes no other
    os._exit(1)  # on a worker: its nanny starts a new one


def test_a_run_goes_on_when_every_worker_dies(make_geotiff, model1, tmp_path):
    # the tiles' shared data was scattered: held only by the workers, it died with them, and every tile
    # not yet run was cancelled ('already forgotten'); as a task the scheduler runs it again on the new workers
    import logging

    from geosr.distributed import run_tiles
    from geosr.predict import Downscaler
    from geosr.stats import BandStats

    data = fbm_surface((40, 36), seed=5)
    src = make_geotiff("dem.tif", data)
    options = {"device": "cpu", "tile_size": 16}
    downscaler = Downscaler(str(model1), **options)
    plan = downscaler.plan(data.shape, 2)
    stats = BandStats.of_block(data[None].astype(np.float64))
    local = {
        t.index: core
        for t, core in downscaler.run(
            plan,
            stats,
            ((t, data[None, t.rows.source.as_slice(), t.cols.source.as_slice()].astype(np.float64)) for t in plan),
        )
    }
    assert len(plan) > 8
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        results = {}
        for done, (tile, core) in enumerate(
            run_tiles(cluster.scheduler_address, src, (str(model1), _digest(model1)), options, plan, stats), 1
        ):
            results[tile.index] = core
            if done == 1:
                client.run(_kill_worker, wait=False)  # every worker, while tiles are in flight
    assert sorted(results) == sorted(local)
    for index, core in local.items():
        np.testing.assert_array_equal(results[index], core)


# --- bounded memory: what is read at once ----------------------------------------------------------------


def test_the_statistics_pass_reads_windows_bounded_in_area(make_geotiff, model1, tmp_path, monkeypatch):
    # iter_blocks read strips of 512 rows by the full width: 16 MiB more peak memory per 1000 columns
    # (a 12000 x 12000 float32 raster: 484 MiB against 390 at 6000 x 6000 and 342-385 at 2000 x 2000)
    import geosr.io
    from geosr.pipeline import downscale_raster

    data = fbm_surface((64, 1024), seed=2)
    src = make_geotiff("wide.tif", data)
    monkeypatch.setattr(geosr.io, "WINDOW_PIXELS", 8192, raising=False)
    read = geosr.io.read_window
    areas = []

    def recording(dataset, rows, cols, *args, **kwargs):
        areas.append(rows.size * cols.size)
        return read(dataset, rows, cols, *args, **kwargs)

    monkeypatch.setattr(geosr.io, "read_window", recording)  # the pass's reads; the tiles' go through pipeline's
    downscale_raster(src, tmp_path / "out.tif", scale=2, model=model1, device="cpu", tile_size=32)
    assert sum(areas) == data.size, "the statistics pass must read every pixel once"
    assert max(areas) <= 8192, f"the statistics pass read {max(areas)} pixels at once"


def test_a_contiguous_netcdf_variable_is_read_by_tile_not_whole(tmp_path, model1, monkeypatch):
    # open_dataset(chunks={}) makes one dask chunk of a contiguous variable (CDO, NCO and netCDF3 files):
    # the whole variable, every time step, was read at once and held (6000 x 6000: 746 MiB against 515)
    pytest.importorskip("netCDF4")
    import xarray as xr
    from xarray.backends import netCDF4_

    from geosr.pipeline import downscale_grid

    data = np.stack([fbm_surface((40, 48), seed=s) for s in range(3)])
    grid = xr.DataArray(
        data,
        dims=("time", "lat", "lon"),
        name="tas",
        coords={"time": np.arange(3), "lat": 40.0 - 0.5 * np.arange(40), "lon": 10.0 + 0.5 * np.arange(48)},
    )
    src = tmp_path / "tas.nc"
    grid.to_dataset().to_netcdf(src, encoding={"tas": {"contiguous": True}})
    original = netCDF4_.NetCDF4ArrayWrapper._getitem
    sizes = []

    def recording(self, key):
        values = original(self, key)
        if self.variable_name == "tas":
            sizes.append(np.size(values))
        return values

    monkeypatch.setattr(netCDF4_.NetCDF4ArrayWrapper, "_getitem", recording)
    downscale_grid(src, tmp_path / "out.nc", variable="tas", scale=2, model=model1, device="cpu", tile_size=16)
    assert sizes and max(sizes) < 40 * 48, f"read {max(sizes)} values of 'tas' at once (one time step: {40 * 48})"


def _grid_file(path, rows: int, cols: int):
    import xarray as xr

    grid = xr.DataArray(
        fbm_surface((rows, cols), seed=4).astype(np.float32),
        dims=("lat", "lon"),
        name="tas",
        coords={"lat": 60.0 - 0.25 * np.arange(rows), "lon": 5.0 + 0.25 * np.arange(cols)},
    )
    grid.to_dataset().to_netcdf(path)
    return path


def test_a_netcdf_run_reads_the_input_a_few_chunk_rows_ahead(tmp_path, model1):
    # dask held every input chunk it had read until the statistics (a reduction over all of them, which every
    # tile waited for) were complete, then read ahead of the network in no particular order: a 12000 x 12000
    # NetCDF took 1.1 GiB against 0.5 at 2000 x 2000 (the GeoTIFF path: 0.4 at both)
    pytest.importorskip("netCDF4")
    from dask.callbacks import Callback

    from geosr.pipeline import downscale_grid

    src = _grid_file(tmp_path / "tas.nc", 160, 96)  # tile 16 at x2: chunks of 8 x 8, 20 rows of 12
    held = []

    class Chunks(Callback):  # the input chunks in the local scheduler's memory after each task
        def _posttask(self, key, result, dsk, state, id):
            cached = [
                v for k, v in state["cache"].items() if isinstance(v, np.ndarray) and v.size == 64 and v.ndim >= 2
            ]
            held.append(len(cached))

    with Chunks():
        downscale_grid(src, tmp_path / "out.nc", variable="tas", scale=2, model=model1, device="cpu", tile_size=16)
    assert held, "no dask task ran"
    rows_held = max(held) / 12
    assert rows_held <= 5, f"held {max(held)} of 240 input chunks ({rows_held:.1f} rows of 12)"


def test_the_dask_graph_has_a_few_tasks_per_tile(model1):
    # a dask slice of the input per tile made some 40 tasks of each, and building the graph by dask.delayed
    # merged the input's whole graph into each tile's: 1.2 GB to lay out a 12000 x 12000 grid
    import dask.array as da

    from geosr.predict import downscale

    data = da.from_array(fbm_surface((96, 96), seed=5).astype(np.float32), chunks=8)  # 144 chunks
    out = downscale(data, 2, model1, device="cpu", tile_size=16)
    tiles, chunks = out.numblocks[-2] * out.numblocks[-1], data.npartitions
    added = len(dict(out.__dask_graph__())) - len(dict(data.__dask_graph__()))  # geosr's, beside the input's
    assert added <= 2 * tiles + 6 * chunks + out.numblocks[-2] + 8, f"{added} tasks for {tiles} tiles, {chunks} chunks"
    np.testing.assert_allclose(out.compute(), downscale(np.asarray(data), 2, model1, device="cpu", tile_size=16))


def test_eager_statistics_free_the_tiles_from_a_reduction_and_lazy_ones_compute_nothing(model1):
    import dask
    import dask.array as da
    from dask.core import get_dependencies

    from geosr.predict import downscale, eager_statistics

    calls = []

    def chunk(i: int, j: int) -> np.ndarray:
        calls.append((i, j))
        return fbm_surface((8, 8), seed=8 * i + j).astype(np.float32)

    blocks = [[da.from_delayed(dask.delayed(chunk)(i, j), (8, 8), np.float32) for j in range(6)] for i in range(6)]
    data = da.block(blocks)
    lazy = downscale(data, 2, model1, device="cpu", tile_size=16)
    assert not calls, "a lazy result read the input while its graph was made"
    with eager_statistics():
        eager = downscale(data, 2, model1, device="cpu", tile_size=16)
    assert len(calls) == 36, "the statistics pass reads every chunk once"

    def chunks_needed(out) -> set:
        graph, seen, todo = dict(out.__dask_graph__()), set(), [out.__dask_keys__()[0][0]]  # the first tile
        while todo:
            key = todo.pop()
            if key not in seen:
                seen.add(key)
                todo.extend(get_dependencies(graph, key))
        return {k for k in seen if str(k).startswith("chunk-")}  # the keys of dask.delayed(chunk)(i, j)

    assert len(chunks_needed(lazy)) == 36  # the statistics within the graph: every chunk
    # the first tile waits for its row of tiles' chunks (the two chunk rows its window touches, 2 x 6), no more
    assert len(chunks_needed(eager)) == 12, "the first tile needs its row's chunks, not the whole input"
    np.testing.assert_array_equal(eager.compute(), lazy.compute())


# --- the writer: a destination folder removed during the run ---------------------------------------------


def test_an_output_folder_removed_during_the_run_is_one_clear_line(cli, make_geotiff, model1, tmp_path, monkeypatch):
    # the writes go on into the unlinked temporary file; at the end its check fails, and the free-space figure
    # of its message (shutil.disk_usage of the folder) raised 'FileNotFoundError: ... No such file or directory'
    import shutil

    import geosr.io

    src = make_geotiff("dem.tif", fbm_surface((40, 40), seed=1))
    folder = tmp_path / "out"
    folder.mkdir()
    write = geosr.io.TileWriter.write
    removed = []

    def removing(self, *args):
        if not removed:
            shutil.rmtree(folder)
            removed.append(True)
        return write(self, *args)

    monkeypatch.setattr(geosr.io.TileWriter, "write", removing)
    result = cli("downscale", src, "--scale", 2, "--model", model1, "--tile-size", 32, "-q", "-o", folder / "x.tif")
    assert removed
    assert "is gone" in assert_one_line_error(result.err, result.code, "out")
    assert not folder.exists()


def test_the_tiles_of_a_row_reach_the_same_input_chunks(model1):
    """dask's ordering keeps, for every task, the set of input chunks it reaches through the graph. A tile that
    waited for the row two up reached its own chunks and every chunk above, a set of its own: they grew with
    the square of the number of tiles (108 MiB for 2209 tiles of a 12000 x 12000 NetCDF at x2, 3.9 MiB since).
    Now each tile waits for its row's token, which reaches the row's chunks: one set per row of tiles."""
    import dask.array as da
    from dask.core import get_dependencies

    from geosr.predict import downscale, eager_statistics

    data = da.ones((96, 96), chunks=8, dtype=np.float32)
    with eager_statistics():
        out = downscale(data, 2, model1, device="cpu", tile_size=16)
    graph, memo = dict(out.__dask_graph__()), {}

    def reached(key) -> frozenset:
        if key not in memo:
            below = get_dependencies(graph, key)
            own = {key} if isinstance(key, tuple) and key[0] == data.name else set()
            memo[key] = frozenset(own.union(*(reached(k) for k in below)))
        return memo[key]

    keys = out.__dask_keys__()
    assert len(keys) == 12 and len(keys[0]) == 12  # 12 x 12 tiles of 16 fine pixels
    for i, row in enumerate(keys):
        sets = {reached(key) for key in row}
        assert len(sets) == 1, f"the tiles of row {i} reach {len(sets)} different sets of input chunks"
        (chunks,) = sets
        assert {k[1] for k in chunks} <= set(range(min(12, i + 2))), "a row reaches no chunk row below its window"


def test_netcdf_runs_with_a_small_chunk_cache_and_restore_the_default(cli, model1, tmp_path, monkeypatch):
    """netCDF4 gives each variable an HDF5 chunk cache of 64 MiB: reading the input and writing the output, memory
    grew with the grid until both were full (427 / 472 / 557 MiB peak at sides 2000 / 6000 / 12000 with 4 MiB,
    against 492 / 600 / 780 before, tile 512, x2: benchmarks/results/bench_memory_netcdf_cpu.txt)."""
    netCDF4 = pytest.importorskip("netCDF4")
    import xarray as xr

    from geosr import io

    before = netCDF4.get_chunk_cache()
    seen = []
    write = io.write_grid

    def write_grid(*args, **kwargs):  # the cache the output is created with
        seen.append(netCDF4.get_chunk_cache()[0])
        return write(*args, **kwargs)

    monkeypatch.setattr(io, "write_grid", write_grid)
    grid = xr.DataArray(
        fbm_surface((12, 16), seed=3), dims=("y", "x"), coords={"y": 100.0 - np.arange(12), "x": np.arange(16.0)}
    )
    src = tmp_path / "g.nc"
    grid.to_dataset(name="z").to_netcdf(src)
    result = cli("downscale", src, "--variable", "z", "--scale", 2, "--model", model1, "-o", tmp_path / "o.nc", "-q")
    assert result.code == 0, result.err
    assert seen == [io.NETCDF_CHUNK_CACHE] and before[0] > io.NETCDF_CHUNK_CACHE
    assert netCDF4.get_chunk_cache() == before
    with xr.open_dataset(tmp_path / "o.nc") as fine:
        assert fine.z.shape == (24, 32) and np.isfinite(fine.z.values).all()


def _digest(model: Path) -> str:
    from geosr.models.files import load_model

    return load_model(model).digest


def test_a_worker_refuses_a_model_file_replaced_since_the_run_was_planned(tmp_path, model1, make_geotiff):
    # the accessor's tasks check the model file's digest; the command line's --scheduler tiles did not
    from geosr.distributed import downscale_tile
    from geosr.predict import Downscaler
    from geosr.stats import BandStats

    src = make_geotiff("dem.tif", fbm_surface((20, 20)))
    downscaler = Downscaler(str(model1), device="cpu", tile_size=16)
    plan = downscaler.plan((20, 20), 2)
    stats = BandStats.of_block(fbm_surface((20, 20))[None].astype(np.float64))
    tile = next(iter(plan))
    args = ({"device": "cpu", "tile_size": 16}, plan, stats, None, None, (False, False), tile)
    assert downscale_tile(str(src), (str(model1), downscaler.model.digest), *args)[0] == tile
    with pytest.raises(SchedulerError, match="changed after this result was built"):
        downscale_tile(str(src), (str(model1), "0" * 16), *args)


def test_a_dask_tile_task_does_not_carry_the_whole_tile_plan():
    """Each tile task took the TilePlan, whose spans grow with the raster's side (29 KB a task at 24000 x 24000),
    and a cluster ships tasks one by one; the plan is now one value of the graph that the tasks name."""
    import pickle

    import dask.array as da

    import geosr
    from geosr.predict import TILE_TASKS
    from geosr.tiling import TilePlan

    def task_bytes(side: int) -> int:
        lazy = da.random.RandomState(0).random_sample((1, side, side), chunks=(1, 400, 400)).astype(np.float32)
        graph = dict(geosr.downscale(lazy, 2, "backprojection", tile_size=64).__dask_graph__())
        tasks = [v for k, v in graph.items() if isinstance(k, tuple) and len(k) == 4 and k[0].startswith(TILE_TASKS)]
        assert tasks and not any(isinstance(part, TilePlan) for task in tasks for part in task)
        return max(len(pickle.dumps(task)) for task in tasks)

    small, large = task_bytes(400), task_bytes(2400)  # 7 and 38 tiles a side
    assert large < 1.2 * small, (small, large)
