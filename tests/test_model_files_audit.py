"""Model files from elsewhere, from an audit (2026-12-08): a card claiming a huge network built layers until memory
ran out; NaN weights wrote an all-nodata raster with exit 0; an infinite scale, a card nested thousands deep and
terminal escapes in a card's text got tracebacks or reached the terminal. Each is one clear line now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from geosr.errors import ModelError
from geosr.models.files import load_model
from geosr.testing import random_model


def _edited(tmp_path: Path, name: str, card: dict[str, Any] | None = None, tensors: Any = None) -> Path:
    """A copy of a tiny random model (depth 2) with its card's fields changed by ``card`` and its tensors by
    ``tensors`` (a function of the tensor dict)."""
    base = random_model(tmp_path / "base.safetensors", depth=2, width=4)
    with safe_open(str(base), framework="numpy") as handle:
        metadata = handle.metadata()
    values = json.loads(metadata["geosr"])
    values.update(card or {})
    weights = load_file(str(base))
    if tensors is not None:
        weights = tensors(weights)
    path = tmp_path / name
    save_file(weights, str(path), metadata={**metadata, "geosr": json.dumps(values)})
    return path


@pytest.mark.parametrize("field", [{"depth": 10**9}, {"width": 10**5}, {"depth": 10**5}])
def test_a_card_claiming_a_huge_network_is_refused_before_it_is_built(tmp_path, field):
    path = _edited(tmp_path, "huge.safetensors", field)
    with pytest.raises(ModelError, match="does not match its card"):  # it built layers until memory ran out
        load_model(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_infinite_weights_are_refused(cli, dem_tif, tmp_path, value):
    def spoil(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights["body.0.weight"][0, 0, 1, 1] = value
        return weights

    path = _edited(tmp_path, "nan.safetensors", tensors=spoil)
    out = tmp_path / "out.tif"
    result = cli("downscale", dem_tif, "--scale", 2, "--model", path, "-o", out)
    assert_one_line_error(result.err, 1, "NaN or infinite weights (body.0.weight)")
    assert not out.exists()  # it wrote every pixel as nodata, exit 0
    with pytest.raises(ModelError, match="NaN or infinite weights"):
        import geosr

        geosr.downscale(np.zeros((8, 8)), 2, path)


def test_weights_that_are_not_floating_point_are_refused(tmp_path):
    path = _edited(tmp_path, "int.safetensors", tensors=lambda w: {k: v.to(torch.int8) for k, v in w.items()})
    with pytest.raises(ModelError, match="holds int8 weights .* not floating point"):
        load_model(path)


@pytest.mark.parametrize("scales", [[float("inf")], [1e308], [2, 5000]])
def test_a_scale_beyond_any_use_is_an_unreadable_card(tmp_path, scales):
    path = _edited(tmp_path, "scales.safetensors", {"scales": scales})
    with pytest.raises(ModelError, match="'scales' should be a list of numbers > 1 and at most 1000"):
        load_model(path)


def test_a_card_nested_thousands_deep_is_one_line(cli, tmp_path):
    deep = '{"a": ' * 5000 + "{}" + "}" * 5000  # written out: json.dumps of it would recurse too
    base = random_model(tmp_path / "base.safetensors", depth=2, width=4)
    with safe_open(str(base), framework="numpy") as handle:
        metadata = handle.metadata()
    text = metadata["geosr"][:-1] + ', "metrics": ' + deep + "}"
    path = tmp_path / "deep.safetensors"
    save_file(load_file(str(base)), str(path), metadata={**metadata, "geosr": text})
    assert_one_line_error(cli("models", path).err, 1, "nested too deeply")
    nested = _edited(tmp_path, "nested.safetensors", {"metrics": json.loads(json.dumps(_nest(100)))})
    assert_one_line_error(cli("models", nested).err, 1, "'metrics' should be an object nested at most 64 deep")
    assert cli("models", _edited(tmp_path, "fine.safetensors", {"metrics": _nest(3)})).code == 0


def _nest(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"rmse": 1.0}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_terminal_escapes_in_a_card_never_reach_the_terminal(cli, tmp_path):
    evil = "\x1b[2J\x1b]0;title\x07"
    with pytest.raises(ModelError, match="'name' should be printable text"):
        load_model(_edited(tmp_path, "name.safetensors", {"name": "dem" + evil}))
    with pytest.raises(ModelError, match=r"'bands' should be a list of names \(printable text\)"):
        load_model(_edited(tmp_path, "bands.safetensors", {"bands": ["elev\r"]}))
    described = _edited(tmp_path, "desc.safetensors", {"description": "RED" + evil + "\nsecond line"})
    result = cli("models", described)
    assert result.code == 0 and "\x1b" not in result.out and "\x07" not in result.out
    assert "RED?[2J?]0;title?\nsecond line" in result.out  # shown, not acted on; the newline kept


def test_a_model_trained_on_a_band_described_with_a_tab_loads(cli, tmp_path):
    # the card's bands must be printable: train writes a description's tab (or a file name's) as a space
    import rasterio
    from conftest import TINY_TRAIN, write_geotiff

    from geosr.testing import fbm_surface

    hr = write_geotiff(tmp_path / "hr\tdem.tif", fbm_surface((64, 48), seed=3, relief=50.0), units=["m"])
    with rasterio.open(hr, "r+") as ds:
        ds.set_band_description(1, "elevation\tsurvey 2020")
    model = tmp_path / "m.safetensors"
    assert cli("train", hr, "-o", model, "--scales", "2", "--epochs", "1", *TINY_TRAIN).code == 0
    card = load_model(model).card
    assert card.bands == ["elevation survey 2020"] and card.name == "m"
