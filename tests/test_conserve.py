"""``conserve``: every input cell's fine pixels average to the input value, tiled or not."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from conftest import data_tolerance

from geosr.conserve import conserve
from geosr.errors import ScaleError
from geosr.predict import downscale
from geosr.testing import fbm_surface

WHOLE = 10_000


def cell_means(fine: np.ndarray, scale: int) -> np.ndarray:
    """Block means computed without geosr."""
    h, w = fine.shape[-2] // scale, fine.shape[-1] // scale
    return fine.reshape(*fine.shape[:-2], h, scale, w, scale).mean(axis=(-3, -1))


def test_conserve_sets_every_block_mean():
    rng = np.random.default_rng(0)
    fine, coarse = rng.normal(size=(2, 12, 9)), rng.normal(size=(2, 4, 3))
    fixed = conserve(fine, coarse, 3)
    np.testing.assert_allclose(cell_means(fixed, 3), coarse, atol=1e-12)
    # the detail inside each cell is kept: only a constant per cell is added
    np.testing.assert_allclose(np.diff(fixed - fine, axis=-1)[..., :, [0, 1, 3, 4, 6, 7]], 0, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("tile", [7, 16, WHOLE])
def test_output_averages_back_to_the_input(dem, model1, scale, tile):
    out = downscale(dem, scale, str(model1), device="cpu", conserve=True, tile_size=tile)
    assert out.shape == (dem.shape[0] * scale, dem.shape[1] * scale)
    assert np.abs(cell_means(out.astype(np.float64), scale) - dem).max() <= data_tolerance(dem)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_conserved_tiles_equal_the_whole_raster(dem, model1, scale):
    whole = downscale(dem, scale, str(model1), device="cpu", conserve=True, tile_size=WHOLE)
    for tile in (5, 9, 22):
        tiled = downscale(dem, scale, str(model1), device="cpu", conserve=True, tile_size=tile)
        assert np.abs(tiled - whole).max() <= data_tolerance(dem)


def test_conserve_changes_the_output(dem, model1):
    plain = downscale(dem, 2, str(model1), device="cpu")
    conserved = downscale(dem, 2, str(model1), device="cpu", conserve=True)
    assert np.abs(cell_means(plain.astype(np.float64), 2) - dem).max() > 10 * data_tolerance(dem)
    assert not np.allclose(plain, conserved)


def test_conserve_keeps_nodata_footprint(model1):
    data = fbm_surface((16, 18), seed=3)
    data[4:7, 5:9] = np.nan
    out = downscale(data, 2, str(model1), device="cpu", conserve=True, tile_size=8)
    missing = np.repeat(np.repeat(np.isnan(data), 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(np.isnan(out), missing)
    valid_cells = np.isfinite(data)
    assert np.abs(cell_means(out.astype(np.float64), 2)[valid_cells] - data[valid_cells]).max() <= data_tolerance(data)


def test_conserve_refuses_a_non_integer_scale(dem, model1):
    with pytest.raises(ScaleError, match="whole scale"):
        downscale(dem, 2.5, str(model1), device="cpu", conserve=True)


def test_cli_conserve_writes_a_consistent_geotiff(dem_tif, tmp_path, model1, cli):
    out = tmp_path / "out.tif"
    result = cli("downscale", dem_tif, "--scale", 3, "--model", model1, "-o", out, "--conserve", "--quiet")
    assert result.code == 0, result.err
    with rasterio.open(dem_tif) as src, rasterio.open(out) as dst:
        coarse, fine = src.read(1).astype(np.float64), dst.read(1).astype(np.float64)
        assert dst.tags()["GEOSR_CONSERVE"] == "yes"
    assert np.abs(cell_means(fine, 3) - coarse).max() <= data_tolerance(coarse)


@pytest.fixture(scope="module")
def conserving_model(tmp_path_factory):
    """A random consistent-kernel model whose card asks for conservation by default (like the shipped ones)."""
    from geosr.testing import random_model

    path = tmp_path_factory.mktemp("conserving") / "c.safetensors"
    return random_model(path, seed=3, name="cons", interpolation="consistent", conserve=True)


def test_a_model_whose_card_says_so_conserves_by_default_at_whole_scales(dem, conserving_model):
    default = downscale(dem, 3, str(conserving_model), device="cpu", tile_size=16)
    assert np.abs(cell_means(default.astype(np.float64), 3) - dem).max() <= data_tolerance(dem)
    forced = downscale(dem, 3, str(conserving_model), device="cpu", tile_size=16, conserve=True)
    np.testing.assert_array_equal(default, forced)
    plain = downscale(dem, 3, str(conserving_model), device="cpu", tile_size=16, conserve=False)
    assert np.abs(cell_means(plain.astype(np.float64), 3) - dem).max() > 100 * data_tolerance(dem)
    # a fractional scale has no cells to conserve: the default runs without, an explicit request is refused
    assert downscale(dem, 2.5, str(conserving_model), device="cpu").shape == (32, 42)
    with pytest.raises(ScaleError, match="whole scale"):
        downscale(dem, 2.5, str(conserving_model), device="cpu", conserve=True)


def test_models_without_the_card_flag_do_not_conserve_by_default(dem, model1):
    default = downscale(dem, 2, str(model1), device="cpu")
    np.testing.assert_array_equal(default, downscale(dem, 2, str(model1), device="cpu", conserve=False))


def test_cli_default_and_no_conserve_follow_the_card(dem_tif, tmp_path, conserving_model, cli):
    tags = {}
    for flag in ([], ["--no-conserve"]):
        out = tmp_path / f"out{len(flag)}.tif"
        result = cli("downscale", dem_tif, "--scale", 2, "--model", conserving_model, "-o", out, "--quiet", *flag)
        assert result.code == 0, result.err
        with rasterio.open(dem_tif) as src, rasterio.open(out) as dst:
            coarse, fine = src.read(1).astype(np.float64), dst.read(1).astype(np.float64)
            tags[len(flag)] = dst.tags()["GEOSR_CONSERVE"]
        gap = np.abs(cell_means(fine, 2) - coarse).max()
        assert (gap <= data_tolerance(coarse)) == (not flag)
    assert tags == {0: "yes", 1: "no"}
