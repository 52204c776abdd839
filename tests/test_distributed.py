"""dask.distributed: a LocalCluster of 2 worker processes runs the tiles of the accessor and of
``geosr downscale --scheduler``, with output identical to the local run and the model loaded once
per worker."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import assert_one_line_error

from geosr.testing import fbm_surface

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as local:
        yield local


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as connected:
        yield connected


def grid(n_time=4, shape=(16, 20)):
    data = np.stack([fbm_surface(shape, seed=i, relief=15.0, base=280.0) for i in range(n_time)])
    coords = {
        "time": np.arange(n_time),
        "lat": 40.0 - 0.5 * np.arange(shape[0]),
        "lon": 10.0 + 0.5 * np.arange(shape[1]),
    }
    return xr.DataArray(data, dims=("time", "lat", "lon"), coords=coords, name="tas", attrs={"units": "K"})


def count_downscalers() -> None:
    """On a worker: count the Downscalers built from now on in ``geosr.predict.BUILT``."""
    from geosr import predict

    predict.BUILT = 0
    original = predict.Downscaler.__init__

    def counting(self, *args, **kwargs):
        predict.BUILT += 1
        original(self, *args, **kwargs)

    predict.Downscaler.__init__ = counting
    predict._CACHE.clear()


def built() -> int:
    from geosr import predict

    return predict.BUILT


def test_accessor_runs_on_the_workers_identical_to_local(client, model1):
    lazy = grid().chunk({"time": 1, "lat": 8, "lon": 10}).geosr.downscale(2, model=str(model1), device="cpu")
    local = lazy.compute(scheduler="sync")
    client.run(count_downscalers)
    on_cluster = lazy.compute()  # the client is the default scheduler inside its context
    np.testing.assert_array_equal(on_cluster.values, local.values)
    counts = client.run(built)
    assert len(counts) == 2 and sum(counts.values()) >= 1, counts
    assert all(n <= 1 for n in counts.values()), f"the model was loaded more than once on a worker: {counts}"
    assert lazy.data.npartitions == 16


def test_cli_scheduler_geotiff_identical_to_local(cli, cluster, make_geotiff, model1, tmp_path):
    src = make_geotiff("dem.tif", fbm_surface((30, 26), seed=9))
    common = ("downscale", src, "--scale", 3, "--model", model1, "--tile-size", 24, "--device", "cpu", "-q")
    assert cli(*common, "-o", tmp_path / "local.tif").code == 0
    result = cli(*common, "-o", tmp_path / "cluster.tif", "--scheduler", cluster.scheduler_address)
    assert result.code == 0, result.err
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "cluster.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape) == (b.crs, b.transform, (90, 78))
    # so do the chosen bands: the workers read the same bands as a local run
    two = make_geotiff("two.tif", np.stack([fbm_surface((30, 26), seed=s) for s in (3, 4)]))
    picked = ("downscale", two, "--bands", "2", *common[2:])
    assert cli(*picked, "-o", tmp_path / "local_b2.tif").code == 0
    assert cli(*picked, "-o", tmp_path / "cluster_b2.tif", "--scheduler", cluster.scheduler_address).code == 0
    with rasterio.open(tmp_path / "local_b2.tif") as a, rasterio.open(tmp_path / "cluster_b2.tif") as b:
        assert a.count == b.count == 1
        np.testing.assert_array_equal(a.read(), b.read())
    # the ensemble reaches the workers: same as a local ensemble run, not the single network's output
    ensemble = (*common, "--ensemble", 4)
    assert cli(*ensemble, "-o", tmp_path / "local4.tif").code == 0
    assert cli(*ensemble, "-o", tmp_path / "cluster4.tif", "--scheduler", cluster.scheduler_address).code == 0
    with rasterio.open(tmp_path / "local4.tif") as a, rasterio.open(tmp_path / "cluster4.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert b.tags()["GEOSR_ENSEMBLE"] == "4"
        with rasterio.open(tmp_path / "local.tif") as single:
            assert np.abs(a.read() - single.read()).max() > 1e-3


def test_cli_scheduler_netcdf_identical_to_local(cli, cluster, model1, tmp_path):
    pytest.importorskip("netCDF4")
    src = tmp_path / "tas.nc"
    grid().to_dataset().to_netcdf(src)
    common = ("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--tile-size", 16, "-q")
    assert cli(*common, "-o", tmp_path / "local.nc").code == 0
    result = cli(*common, "-o", tmp_path / "cluster.nc", "--scheduler", cluster.scheduler_address)
    assert result.code == 0, result.err
    with xr.open_dataset(tmp_path / "local.nc") as a, xr.open_dataset(tmp_path / "cluster.nc") as b:
        np.testing.assert_array_equal(a.tas.values, b.tas.values)
        assert b.tas.shape == (4, 32, 40)


def test_cluster_workers_get_geosr_netcdf_chunk_cache_while_a_grid_runs(cli, client, model1, tmp_path, monkeypatch):
    netCDF4 = pytest.importorskip("netCDF4")
    from geosr import distributed as geosr_distributed
    from geosr.io import NETCDF_CHUNK_CACHE

    own = client.run(netCDF4.get_chunk_cache)
    assert all(setting[0] != NETCDF_CHUNK_CACHE for setting in own.values())  # else the test shows nothing
    with geosr_distributed.worker_netcdf_cache(client, NETCDF_CHUNK_CACHE):
        inside = client.run(netCDF4.get_chunk_cache)
    assert {setting[0] for setting in inside.values()} == {NETCDF_CHUNK_CACHE}
    assert [setting[1:] for setting in inside.values()] == [setting[1:] for setting in own.values()]
    assert client.run(netCDF4.get_chunk_cache) == own  # each worker's own setting back

    seen = []  # the run itself: the workers hold geosr's setting while the grid is written, their own after
    wrapped = geosr_distributed.worker_netcdf_cache

    def watched(running_client, nbytes):
        seen.append(nbytes)
        return wrapped(running_client, nbytes)

    monkeypatch.setattr(geosr_distributed, "worker_netcdf_cache", watched)
    src = tmp_path / "tas.nc"
    grid().to_dataset().to_netcdf(src)
    args = ("downscale", src, "--variable", "tas", "--scale", 2, "--model", model1, "--tile-size", 16, "-q")
    result = cli(*args, "--scheduler", client.scheduler.address)
    assert result.code == 0, result.err
    assert seen == [NETCDF_CHUNK_CACHE]
    assert client.run(netCDF4.get_chunk_cache) == own


def test_unreachable_scheduler_is_one_clear_line(cli, dem_tif, model1, tmp_path, monkeypatch):
    from geosr import distributed as geosr_distributed

    monkeypatch.setattr(geosr_distributed, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "out.tif"
    result = cli("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", "tcp://127.0.0.1:9")
    assert "cannot reach a dask scheduler at 'tcp://127.0.0.1:9'" in assert_one_line_error(result.err, result.code)
    assert not out.exists()


@pytest.mark.parametrize("address", ["nope", "tcp://", ""])
def test_a_scheduler_address_without_a_port_is_one_line(cli_subprocess, dem_tif, model1, tmp_path, address):
    # the Client was built and failed half made: after the line, a 20 s wait and a 9-line traceback
    out = tmp_path / "out.tif"
    result = cli_subprocess("downscale", dem_tif, "--scale", 2, "--model", model1, "-o", out, "--scheduler", address)
    assert "missing port number" in assert_one_line_error(result.stderr, result.returncode)
    assert not out.exists()


def test_calibrated_runs_on_the_cluster_identical_to_local(cli, client, cluster, make_geotiff, tmp_path):
    # the gains are estimated once (by the caller) and reach every tile on every worker
    from geosr.testing import random_model

    model = random_model(
        tmp_path / "cal.safetensors", seed=4, name="tinycal", interpolation="consistent", conserve=True, calibrate=True
    )
    y, x = np.mgrid[:40, :44]
    src = make_geotiff("smooth.tif", (100 + 10 * np.sin(x / 6.0) * np.cos(y / 8.0)).astype(np.float32))
    common = ("downscale", src, "--scale", 2, "--model", model, "--tile-size", 24, "--device", "cpu", "-q")
    assert cli(*common, "-o", tmp_path / "local.tif").code == 0
    assert cli(*common, "-o", tmp_path / "cluster.tif", "--scheduler", cluster.scheduler_address).code == 0
    assert cli(*common, "--no-calibrate", "-o", tmp_path / "plain.tif").code == 0
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "cluster.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.tags()["GEOSR_CALIBRATE"] == b.tags()["GEOSR_CALIBRATE"] != "no"
        with rasterio.open(tmp_path / "plain.tif") as plain:
            assert np.abs(a.read() - plain.read()).max() > 1e-3
    # and through the accessor: per time step, on the workers, as locally
    data = grid(n_time=2, shape=(24, 26)).chunk({"time": 1, "lat": 12, "lon": 13})
    remote = data.geosr.downscale(2, model=model, device="cpu", tile_size=16).compute()
    local = data.geosr.downscale(2, model=model, device="cpu", tile_size=16).compute(scheduler="synchronous")
    np.testing.assert_array_equal(remote.values, local.values)
    assert remote.attrs["geosr_calibrate"] == "yes"


def test_a_south_up_raster_runs_north_up_on_the_cluster_too(cli, cluster, make_geotiff, tmp_path):
    # rows read mirrored on the workers, cores written back mirrored: the same as a local run, and the
    # same values as the north-up raster (a random network is not flip-invariant: the order matters)
    from affine import Affine

    from geosr.testing import random_model

    model = random_model(tmp_path / "plain.safetensors", seed=4, name="tinyplain", interpolation="consistent")
    y, x = np.mgrid[:40, :44]
    data = (100 + 10 * np.sin(x / 6.0) * np.cos(y / 8.0) + fbm_surface((40, 44), seed=3) / 50).astype(np.float32)
    north = make_geotiff("north.tif", data)
    with rasterio.open(north) as src:
        t = src.transform
    south = make_geotiff("south.tif", data[::-1], transform=Affine(t.a, 0.0, t.c, 0.0, -t.e, t.f + 40 * t.e))
    common = ("--scale", 2, "--model", model, "--tile-size", 24, "--device", "cpu", "-q")
    assert cli("downscale", north, *common, "-o", tmp_path / "north_x2.tif").code == 0
    assert cli("downscale", south, *common, "-o", tmp_path / "local.tif").code == 0
    assert (
        cli("downscale", south, *common, "-o", tmp_path / "cluster.tif", "--scheduler", cluster.scheduler_address).code
        == 0
    )
    with (
        rasterio.open(tmp_path / "north_x2.tif") as n,
        rasterio.open(tmp_path / "local.tif") as a,
        rasterio.open(tmp_path / "cluster.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.transform.e > 0 and a.bounds == b.bounds
        np.testing.assert_allclose(a.read()[:, ::-1], n.read(), atol=1e-4)


def test_a_worker_that_cannot_load_the_model_of_a_lazy_result_says_so(client, model1, tmp_path):
    # the accessor's tasks carry the model's path: a worker that cannot open it (another machine, or the file
    # gone) names itself and says why, as the command line's --scheduler does
    import shutil

    from geosr.errors import ModelError

    copy = tmp_path / "gone.safetensors"
    shutil.copy(model1, copy)
    lazy = grid(n_time=2).chunk({"time": 1}).geosr.downscale(2, model=str(copy))
    copy.unlink()
    with pytest.raises(ModelError) as caught:
        lazy.compute()
    message = str(caught.value)
    assert message.startswith("on dask worker tcp://") and "gone.safetensors" in message
    assert "where every worker sees it" in message and "\n" not in message
