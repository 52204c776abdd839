"""The trained models inside the package: cards, size, and quality on real data held out from training."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import rasterio
from conftest import REPO

from geosr.evaluate import evaluate_array
from geosr.models import list_models
from geosr.models.registry import DEFAULT_MODEL, WEIGHTS_DIR
from geosr.training.sources import JACKSBORO_TEST

SHIPPED = ("dem", "climate")


def test_the_promised_models_ship():
    assert set(SHIPPED) <= set(list_models())
    assert DEFAULT_MODEL == "dem"


@pytest.mark.parametrize("name", SHIPPED)
def test_the_regenerating_recipe_writes_the_card_the_shipped_file_has(name):
    # python -m geosr.training.shipped NAME --reproduce writes shipped.NAME_card(): a field the shipped
    # file's card was changed in place for (a fill trend, a default) must be changed there too
    from geosr.training import shipped

    made = getattr(shipped, f"{name}_card")()
    card = list_models()[name]
    for field in ("name", "in_channels", "bands", "units", "conserve", "calibrate", "fill_trend", "description"):
        assert getattr(card, field) == getattr(made, field), field


@pytest.mark.parametrize("name", SHIPPED)
def test_card_records_data_recipe_time_and_quality(name):
    card = list_models()[name]
    path = WEIGHTS_DIR / f"{name}.safetensors"
    assert path.stat().st_size <= 5 * 1024 * 1024
    assert (card.in_channels, card.depth, card.width) == (1, 20, 64)
    assert card.scales == [2.0, 3.0, 4.0]
    assert card.training["command"].startswith("python -m geosr.training.shipped " + name)
    assert card.training["cpu_seconds"] > 0 and card.training["steps"] > 0
    assert "| raster | scale |" in card.metrics["heldout"]
    assert (WEIGHTS_DIR / f"{name}.md").read_text().startswith(f"# Model card: `{name}`")


def _options(command: str) -> dict[str, str | None]:
    words = shlex.split(command)
    return {
        w: (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None)
        for i, w in enumerate(words)
        if w.startswith("--")
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_card_records_every_stage_of_the_recipe(name):
    # the shipped file is what RECIPES (--reproduce) makes: one card level per stage, the last with its options
    from geosr.training.shipped import RECIPES

    stages, stage = [], list_models()[name].training
    while stage:
        stages.append(stage)
        stage = stage.get("started_from")
    assert len(stages) == len(RECIPES[name])
    last = _options(stages[0]["command"])
    for option, value in _options(RECIPES[name][-1]).items():
        assert last.get(option, "absent") == value, option


@pytest.fixture(scope="module")
def held_out_dem() -> np.ndarray:
    """The eastern part of the bundled real DEM, never used in training or validation."""
    with rasterio.open(REPO / "examples" / "jacksboro_fault_dem.tif") as src:
        return src.read(1).astype(np.float64)[:, JACKSBORO_TEST]


@pytest.mark.parametrize("scale", [2, 4])
def test_dem_model_beats_bicubic_and_lanczos_on_held_out_real_dem(held_out_dem, scale):
    """The default model must not lose to Lanczos or back-projection on real data it never saw, conserved or not."""
    results = evaluate_array(held_out_dem, scale, "dem", methods=("bicubic", "lanczos", "backprojection"), device="cpu")
    for output in ("model", "model_conserved"):
        assert results[output].rmse < 0.85 * results["bicubic"].rmse
        assert results[output].rmse < 0.95 * results["lanczos"].rmse
        # ... nor to the best classical method, iterative back-projection
        assert results[output].rmse < results["backprojection"].rmse
    # the default output (conserved, as the card says) is at least 1% below back-projection
    assert list_models()["dem"].conserve
    assert results["model_conserved"].rmse < 0.99 * results["backprojection"].rmse


@pytest.mark.parametrize("name", SHIPPED)
def test_reproduce_runs_every_stage_of_the_recipe_in_order(name, tmp_path, monkeypatch):
    from geosr.training import shipped

    calls = []
    monkeypatch.setattr(shipped, "main", lambda argv: calls.append(argv))
    output = tmp_path / f"{name}.safetensors"
    shipped.reproduce(name, output, threads=2)
    assert len(calls) == len(shipped.RECIPES[name]) >= 2
    first, last = calls[0], calls[-1]
    stage1 = str(tmp_path / f"{name}.stage1.safetensors")
    assert first[0] == name and first[first.index("--output") + 1] == stage1 and "--init" not in first
    assert first[first.index("--interpolation") + 1] == "bicubic"
    # every later stage fine-tunes the previous stage's weights; the last writes the requested file
    for number, (before, after) in enumerate(zip(calls, calls[1:], strict=False), start=2):
        assert after[after.index("--init") + 1] == before[before.index("--output") + 1]
        assert after[after.index("--output") + 1] == (
            str(output) if number == len(calls) else str(tmp_path / f"{name}.stage{number}.safetensors")
        )
        assert after[after.index("--interpolation") + 1] == "consistent"
    assert last[last.index("--output") + 1] == str(output)
    assert all(call[call.index("--threads") + 1] == "2" for call in calls)


def test_training_weights_give_the_real_rasters_their_share():
    from geosr.training.shipped import _weights

    real = [np.zeros((1, 10, 10)), np.where(np.arange(100).reshape(1, 10, 10) < 25, np.nan, 0.0)]
    synthetic = [np.zeros((1, 4, 4))] * 3
    weights = _weights(real + synthetic, 2, 0.6)
    # the real share split by the root of the valid area (10 : sqrt 75), the rest equally among the synthetic
    root = np.sqrt(75)
    np.testing.assert_allclose(weights, [0.6 * 10 / (10 + root), 0.6 * root / (10 + root), 0.4 / 3, 0.4 / 3, 0.4 / 3])
    assert _weights(synthetic, 0, 0.6) is None
    # real rasters added in a later stage get their own share; with no synthetic rasters the real get all
    later = _weights(real + synthetic, 2, 0.6, later=(1, 0.2))
    np.testing.assert_allclose(later, [0.4, 0.2, 0.4 / 3, 0.4 / 3, 0.4 / 3])
    np.testing.assert_allclose(_weights(real, 2, 0.6), [10 / (10 + root), root / (10 + root)])
    np.testing.assert_allclose(_weights(real, 2, 0.6, later=(1, 0.2)), [0.8, 0.2])


@pytest.mark.parametrize("value", ["74", "x:0.3", "0:0.3", "74:0.9", "74:0"])
def test_a_bad_later_share_is_one_line_naming_it(value, capsys):
    from geosr.training.shipped import main

    with pytest.raises(SystemExit) as exc:
        main(["climate", "--real-share", "0.7", "--later-share", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--later-share" in err and repr(value) in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dem", "--observed-ocean"], "for the climate model only"),
        (["climate", "--more-dems"], "for the dem model only"),
        (["dem", "--spectral", "8"], "for the climate model only"),
        (["climate", "--spectral", "-1"], "0 or more; got -1"),
    ],
)
def test_source_options_are_for_their_model_only(argv, message, capsys):
    from geosr.training.shipped import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_write_card_stores_the_table_in_the_file_and_beside_it(tmp_path):
    import shutil

    from geosr.models.card import read_card
    from geosr.training.heldout import write_card

    model = tmp_path / "dem.safetensors"
    shutil.copy(WEIGHTS_DIR / "dem.safetensors", model)
    table = "| raster | scale |\n|---|---|\n| somewhere | x2 |"
    path = write_card(model, "dem", table)
    assert path == tmp_path / "dem.md"
    card = read_card(model)
    assert card.metrics["heldout"] == table
    assert card.metrics["heldout_command"] == "python -m geosr.training.heldout dem"
    text = path.read_text()
    assert table in text and f"- **command**: {card.training['command']}" in text
    # an earlier stage's fields are listed under their dotted key
    assert f"- **started_from.command**: {card.training['started_from']['command']}" in text


@pytest.mark.parametrize("name", SHIPPED)
def test_the_readme_shows_each_shipped_model_s_held_out_table(name):
    # the quality the README claims is the quality measured for the file that ships
    readme = (REPO / "README.md").read_text()
    rows = [line for line in list_models()[name].metrics["heldout"].splitlines() if line.startswith("|")]
    assert len(rows) >= 10
    assert "\n".join(rows) in readme
