"""Model files (safetensors + JSON card, never pickle) and the VDSR network."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import REPO, WIDTH

from geosr.errors import ModelError
from geosr.models import list_models, read_card, resolve_model
from geosr.models.card import CARD_KEY, ModelCard
from geosr.models.files import load_model, save_model
from geosr.models.registry import WEIGHTS_DIR
from geosr.models.vdsr import VDSR


def make_card(network: VDSR, **changes) -> ModelCard:
    card = ModelCard(
        name="roundtrip",
        in_channels=network.in_channels,
        depth=network.depth,
        width=network.width,
        bands=[f"b{i}" for i in range(network.in_channels)],
        units=["m"] * network.in_channels,
        scales=[2.0, 3.0],
        training={"epochs": 3, "data": "synthetic"},
        metrics={"psnr_gain_db": 0.5},
        description="for the round-trip test",
        cell_input=network.cell_input,
    )
    return replace(card, **changes)


# --- files -------------------------------------------------------------------------------------


def test_saved_model_has_a_normal_mode_and_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    import os
    import stat
    from pathlib import Path

    from geosr.models import files

    network = VDSR(1, depth=3, width=5)
    path = save_model(network, make_card(network), tmp_path / "model.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    # readable by whoever may read the user's other files, as a model file written by hand would be
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    before = path.read_bytes()

    def broken(tensors, name, metadata):
        Path(name).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(files, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(VDSR(1, depth=3, width=5), make_card(network), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary file left


@pytest.mark.parametrize("in_channels", [1, 3])
def test_save_load_round_trip(tmp_path, in_channels):
    torch.manual_seed(7)
    network = VDSR(in_channels, depth=3, width=5)
    card = make_card(network)
    path = save_model(network, card, tmp_path / "sub" / "model.safetensors")
    loaded = load_model(path)
    assert loaded.card == card
    assert loaded.source == str(path)
    assert len(loaded.digest) == 16
    original, restored = network.state_dict(), loaded.network.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    assert not loaded.network.training
    assert loaded.receptive_radius == 3
    x = torch.randn(1, in_channels, 9, 9)
    with torch.no_grad():
        assert torch.equal(network.eval()(x), loaded.network(x))


@pytest.mark.parametrize("in_channels", [1, 3])
def test_cell_input_round_trip_and_widening(tmp_path, in_channels):
    torch.manual_seed(3)
    network = VDSR(in_channels, depth=3, width=5).eval()
    wider = network.with_cell_input().eval()
    assert wider.cell_input and wider.body[0].weight.shape[1] == 2 * in_channels
    x, cells = torch.randn(2, in_channels, 9, 11), torch.randn(2, in_channels, 9, 11)
    with torch.no_grad():
        # zero weights for the cells: the widened network computes what the original does
        torch.testing.assert_close(wider(x, cells), network(x))
        with torch.no_grad():
            wider.body[0].weight[:, in_channels:].normal_()
        assert not torch.allclose(wider(x, cells), network(x))  # once trained, the cells matter
    path = save_model(wider, make_card(wider), tmp_path / "cells.safetensors")
    loaded = load_model(path)
    assert loaded.card.cell_input and loaded.network.cell_input
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x, cells), wider(x, cells))
    with pytest.raises(ValueError, match="pass cells"):
        loaded.network(x)
    with pytest.raises(ValueError, match="already takes"):
        wider.with_cell_input()
    with pytest.raises(ModelError, match="does not match"):
        save_model(wider, make_card(network), tmp_path / "bad.safetensors")


def test_read_card_reads_only_the_header(tmp_path, model3):
    card = read_card(model3)
    assert card.name == "tiny3" and card.in_channels == 3 and card.depth == 4 and card.width == WIDTH
    # no torch needed to read a card (so `geosr models` stays fast)
    code = (
        "import sys; from geosr.models import read_card; "
        f"card = read_card({str(model3)!r}); print(card.name, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tiny3", "False"]


def test_file_is_safetensors_with_the_card_in_its_header(model1):
    raw = model1.read_bytes()
    (header_size,) = struct.unpack("<Q", raw[:8])
    assert 8 + header_size <= len(raw)
    header = json.loads(raw[8 : 8 + header_size])
    card = json.loads(header["__metadata__"][CARD_KEY])
    assert card["name"] == "tiny1" and card["architecture"] == "vdsr"
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert tensors and all(v["dtype"] == "F32" for v in tensors.values())
    assert not raw.startswith(b"\x80")  # not a pickle
    assert not raw.startswith(b"PK")  # not a torch.save zip


def test_safetensors_without_card_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file(VDSR(1, depth=2, width=2).state_dict(), str(path))
    with pytest.raises(ModelError, match="no geosr model card"):
        read_card(path)
    with pytest.raises(ModelError, match="no geosr model card"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"hello, world\n", b"\x00" * 64, b"\xff" * 8 + b"{}"])
def test_non_model_file_refused(tmp_path, content):
    path = tmp_path / "thing.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a geosr model file"):
        load_model(path)


class _Payload:
    def __reduce__(self):
        return (open, (str(_Payload.marker), "w"))


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    for name, writer in (
        ("model.pt", lambda p: torch.save({"x": _Payload()}, p)),
        ("model.pkl", lambda p: p.write_bytes(pickle.dumps(_Payload()))),
    ):
        path = tmp_path / name
        writer(path)
        assert not marker.exists()
        with pytest.raises(ModelError):
            load_model(path)
        with pytest.raises(ModelError):
            read_card(path)
        assert not marker.exists(), "a pickle was executed"


def test_card_that_does_not_match_the_tensors_refused(tmp_path):
    from safetensors.torch import save_file

    network = VDSR(1, depth=3, width=4)
    path = tmp_path / "lies.safetensors"
    card = make_card(network, depth=5)
    save_file(network.state_dict(), str(path), metadata={CARD_KEY: card.to_json()})
    assert read_card(path).depth == 5
    with pytest.raises(ModelError, match="does not match its card") as error:
        load_model(path)
    # says what differs, not torch's heading cut at its colon
    assert "4 tensor(s) missing: body.6.weight, body.6.bias, body.8.weight... and 1 more" in str(error.value), (
        error.value
    )
    with pytest.raises(ModelError, match="does not match"):
        save_model(network, card, tmp_path / "other.safetensors")
    wider = tmp_path / "wider.safetensors"
    save_file(network.state_dict(), str(wider), metadata={CARD_KEY: make_card(network, width=8).to_json()})
    with pytest.raises(ModelError, match=r"is \(4, 1, 3, 3\), the card's network has \(8, 1, 3, 3\)"):
        load_model(wider)


def test_unknown_architecture_and_bad_card_refused(tmp_path):
    from safetensors.torch import save_file

    network = VDSR(1, depth=2, width=2)
    weird = tmp_path / "weird.safetensors"
    save_file(network.state_dict(), str(weird), metadata={CARD_KEY: make_card(network, architecture="srgan").to_json()})
    with pytest.raises(ModelError, match="srgan"):
        read_card(weird)
    broken = tmp_path / "broken.safetensors"
    save_file(network.state_dict(), str(broken), metadata={CARD_KEY: "{not json"})
    with pytest.raises(ModelError, match="unreadable model card"):
        read_card(broken)


@pytest.mark.parametrize(
    ("card", "words"),
    [
        ("[1, 2]", "a JSON list, not an object"),
        ('"x"', "a JSON str, not an object"),
        ('{"name": "t", "in_channels": 1, "scales": "abc"}', "field 'scales' should be a list of numbers > 1"),
        ('{"name": "t", "in_channels": 1, "bands": 5}', "field 'bands' should be a list of names"),
        ('{"name": "t", "in_channels": "1"}', "field 'in_channels' should be a whole number >= 1"),
        ('{"name": "t", "in_channels": 1, "conserve": "yes"}', "field 'conserve' should be true or false"),
        ('{"name": "t", "in_channels": 1, "fill_trend": 1.5}', "field 'fill_trend' should be a number from 0 to 1"),
        ('{"name": "t", "in_channels": 1, "fill_trend": "0.25"}', "field 'fill_trend' should be a number from 0 to 1"),
        ('{"name": "t", "in_channels": 1, "scales": []}', "field 'scales' should be a list of numbers > 1"),
        (
            '{"name": "t", "in_channels": 1, "format_version": 0}',
            "field 'format_version' should be a whole number >= 1",
        ),
        (
            '{"name": "t", "in_channels": 2, "bands": ["a"], "units": ["m", "K"]}',
            "field 'bands' should have one entry per channel (2), got 1",
        ),
        (
            '{"name": "t", "in_channels": 1, "units": ["m", "K"]}',
            "field 'units' should have one entry per channel (1), got 2",
        ),
    ],
)
def test_card_of_the_wrong_shape_is_unreadable(tmp_path, cli, card, words):
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    save_file(VDSR(1, depth=2, width=2).state_dict(), str(path), metadata={CARD_KEY: card})
    with pytest.raises(ModelError, match="unreadable model card") as error:
        read_card(path)
    assert words in str(error.value)
    result = cli("models", path)
    assert result.code == 1 and "unreadable model card" in result.err and "Traceback" not in result.err


def test_card_of_a_newer_format_is_refused_with_the_upgrade(tmp_path, cli):
    from safetensors.torch import save_file

    network = VDSR(1, depth=2, width=2)
    path = tmp_path / "future.safetensors"
    save_file(network.state_dict(), str(path), metadata={CARD_KEY: make_card(network, format_version=99).to_json()})
    with pytest.raises(
        ModelError, match=r"written by a newer geosr \(model format 99, this geosr reads up to 1\); upgrade"
    ):
        read_card(path)
    result = cli("models", path)
    assert result.code == 1 and "upgrade geosr" in result.err and "Traceback" not in result.err


def test_models_json_is_strict_when_a_metric_is_nan(tmp_path, cli):
    network = VDSR(1, depth=2, width=2)
    path = tmp_path / "diverged.safetensors"
    save_model(network, make_card(network, metrics={"val_rmse_normalised": float("nan")}), path)
    result = cli("models", path, "--json")
    assert result.code == 0, result.err
    card = json.loads(result.out, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert card[str(path)]["metrics"]["val_rmse_normalised"] is None


def test_shipped_cards_pass_the_field_checks():
    for name in list_models():
        assert read_card(resolve_model(name)).name


def test_card_json_keeps_every_field():
    card = make_card(VDSR(2, depth=3, width=4))
    assert ModelCard.from_json(card.to_json()) == card
    # unknown keys written by a newer geosr are ignored
    data = json.loads(card.to_json())
    data["future_field"] = 1
    assert ModelCard.from_json(json.dumps(data)) == card


def test_resolve_model(model1, tmp_path):
    assert resolve_model(str(model1)) == model1
    assert resolve_model(model1) == model1
    with pytest.raises(ModelError, match="unknown model 'nothing-here'"):
        resolve_model("nothing-here")
    # a folder is named as one, with the model files in it
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match=r"is a folder, not a model file \(it holds mine.safetensors\)"):
        resolve_model(str(tmp_path / "runs"))
    shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
    assert sorted(list_models()) == shipped
    for name in shipped:
        assert resolve_model(name) == WEIGHTS_DIR / f"{name}.safetensors"


# --- network -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("in_channels", "depth"), [(1, 2), (1, 5), (3, 4)])
def test_vdsr_shape_and_residual(in_channels, depth):
    torch.manual_seed(0)
    network = VDSR(in_channels, depth=depth, width=6).eval()
    assert network.receptive_radius == depth
    convs = [m for m in network.body if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == depth and all(c.kernel_size == (3, 3) for c in convs)
    assert convs[0].in_channels == convs[-1].out_channels == in_channels
    x = torch.randn(2, in_channels, 13, 17)
    with torch.no_grad():
        out = network(x)
        residual = network.residual(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x + residual)
    assert residual.abs().max() > 0


def test_vdsr_receptive_radius_is_exact():
    """A change at one pixel moves the output exactly up to ``depth`` pixels away, not further."""
    torch.manual_seed(1)
    depth = 4
    network = VDSR(1, depth=depth, width=8).eval()
    with torch.no_grad():
        network.body[-1].weight.mul_(10.0)
        x = torch.randn(1, 1, 21, 21)
        y = x.clone()
        y[0, 0, 10, 10] += 5.0
        changed = (network.residual(y) - network.residual(x)).abs()[0, 0] > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = max((rows - 10).abs().max().item(), (cols - 10).abs().max().item())
    assert reach == depth == network.receptive_radius


@pytest.mark.parametrize(("in_channels", "depth", "width"), [(0, 4, 8), (1, 1, 8), (1, 4, 0)])
def test_vdsr_refuses_bad_shapes(in_channels, depth, width):
    with pytest.raises(ValueError):
        VDSR(in_channels, depth=depth, width=width)


def test_card_with_an_unknown_interpolation_refused(tmp_path):
    from safetensors.torch import save_file

    network = VDSR(1, depth=3, width=4)
    path = tmp_path / "future.safetensors"
    card = make_card(network, interpolation="sinc-of-the-future")
    save_file(network.state_dict(), str(path), metadata={CARD_KEY: card.to_json()})
    with pytest.raises(ModelError, match="unknown interpolation 'sinc-of-the-future'.*upgrade geosr"):
        read_card(path)


def test_a_path_is_never_taken_for_a_shipped_model(tmp_path, monkeypatch, model1):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="unknown model './dem'"):
        resolve_model("./dem")  # no such file here: not the shipped dem
    import shutil

    shutil.copy(model1, tmp_path / "dem.safetensors")
    assert resolve_model("dem.safetensors") == Path("dem.safetensors")
    assert resolve_model("./dem.safetensors").resolve() == (tmp_path / "dem.safetensors").resolve()
    assert resolve_model("dem") == WEIGHTS_DIR / "dem.safetensors"
