"""Randomised property tests of the numpy front door against promises 2 (seam-free tiling), 3
(equivariance), 4 (nodata) and conservation, plus the regressions they found.

Each random case draws a model (plain bicubic, consistent, like the shipped ones, with input cells,
self-calibrating, 3-channel), a shape (1 x 1, 1 x N, N x 1 up to 90 x 70), a scale (2, 3, 4, 5, 2.5,
1.5, 7/3), a dtype, a nodata pattern and marker (NaN, the dtype's maximum, -9999 or 0, as a Python or
NumPy scalar), ensemble, batch size, conserve and calibrate; then checks

* the output shape is ``round(n * scale)``, NaN exactly where the footprint (the coarse cell holding
  the fine pixel's centre; both cells for a centre on their edge) is nodata, finite elsewhere;
* tiled output (random tile sizes, square or not, from 1 pixel to beyond the raster) equals the
  whole-raster output to 1e-4 of the data range (or float32's resolution of the values, the output type);
* the same cells marked missing another way (NaN instead of a value, or the reverse) give the same output;
* conserving runs average back to the input on every valid cell;
* ``f(a*x + b) == a*f(x) + b`` for a > 0.

A handful of cases run by default; ``-m slow`` runs a few hundred.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import footprint_cells

import geosr
from geosr.degrade import area_average
from geosr.errors import GeosrError
from geosr.predict import conserves
from geosr.stats import BandStats, as_float
from geosr.testing import fbm_surface

SCALES = [2, 3, 4, 2.5, 1.5, 7 / 3, 5]
DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float64"]
PATTERNS = ["none", "scattered", "rows", "cols", "allbut1", "all", "edges", "block"]
KINDS = ["plain", "consistent", "shipped", "cells", "calibrating", "three"]
F32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def models(
    model1: Path,
    model_consistent: Path,
    model_like_shipped: Path,
    model_cells: Path,
    model_calibrating: Path,
    model3: Path,
) -> dict[str, Any]:
    from geosr.models.files import load_model

    paths = {
        "plain": model1,
        "consistent": model_consistent,
        "shipped": model_like_shipped,
        "cells": model_cells,
        "calibrating": model_calibrating,
        "three": model3,
    }
    return {kind: load_model(str(path), "cpu") for kind, path in paths.items()}


def tolerance(values: np.ndarray) -> float:
    """1e-4 of the data range, or float32's resolution of the values (the output is float32)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 0.0
    return max(1e-4 * float(np.ptp(finite)), 4 * F32 * float(np.abs(finite).max()))


def draw_case(rng: np.random.Generator) -> dict[str, Any]:
    kind = KINDS[rng.integers(len(KINDS))]
    r = rng.random()
    if r < 0.05:
        h, w = 1, 1
    elif r < 0.15:
        h, w = 1, int(rng.integers(1, 30))
    elif r < 0.25:
        h, w = int(rng.integers(1, 30)), 1
    elif r < 0.75:
        h, w = (int(v) for v in rng.integers(2, 25, 2))
    else:
        h, w = int(rng.integers(10, 91)), int(rng.integers(10, 71))
    scale = SCALES[rng.integers(len(SCALES))]
    conserve, calibrate = ([None, True, False][rng.integers(3)] for _ in range(2))
    if not float(scale).is_integer():  # refused there (documented); keep a few to check the refusal
        conserve = None if conserve and rng.random() < 0.8 else conserve
        calibrate = None if calibrate and rng.random() < 0.8 else calibrate
    return {
        "kind": kind,
        "h": h,
        "w": w,
        "scale": scale,
        "bands": 3 if kind == "three" else int(rng.choice([1, 1, 2, 3])),
        "dtype": DTYPES[rng.integers(len(DTYPES))],
        "pattern": PATTERNS[rng.integers(len(PATTERNS))],
        "ensemble": int(rng.choice([1, 1, 4, 8])),
        "batch_size": int(rng.choice([1, 1, 2, 3])),
        "conserve": conserve,
        "calibrate": calibrate,
        "seed": int(rng.integers(1 << 30)),
    }


def draw_data(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(band, y, x) values of the case's dtype (never equal to a nodata marker) and the missing cells."""
    rng = np.random.default_rng(case["seed"])
    h, w, n = case["h"], case["w"], case["bands"]
    dtype = np.dtype(case["dtype"])
    style = rng.integers(4)  # noise, surface with a constant band, surface, constant
    layers = []
    for band in range(n):
        if style == 3 or (style == 1 and band == 1):
            layers.append(np.full((h, w), 0.37))
        elif style == 0 or min(h, w) < 2:
            layers.append(rng.random((h, w)))
        else:
            layers.append(fbm_surface((h, w), seed=int(rng.integers(1000)), relief=1.0, base=0.0).astype(np.float64))
    x = np.stack(layers)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = (1, 200) if dtype == np.uint8 else (max(info.min + 1, -3000), min(info.max - 1, 30000))
        x = np.round(lo + (hi - lo) * x)
        x = np.where((x == 0) | (x == -9999), x + 1, x).astype(dtype)
    else:
        x = (rng.choice([1.0, 1e-3, 1e4]) * x + rng.choice([0.0, -500.0, 1e5])).astype(dtype)
    mask = np.zeros((h, w), bool)
    pattern = case["pattern"]
    if pattern == "scattered":
        mask = rng.random((h, w)) < rng.choice([0.05, 0.3, 0.7])
    elif pattern == "rows":
        mask[rng.random(h) < 0.3] = True
    elif pattern == "cols":
        mask[:, rng.random(w) < 0.3] = True
    elif pattern == "allbut1":
        mask[:] = True
        mask[rng.integers(h), rng.integers(w)] = False
    elif pattern == "all":
        mask[:] = True
    elif pattern == "edges":
        mask[[0, -1]] = True
        mask[:, [0, -1]] = True
    elif pattern == "block":
        y0, x0 = rng.integers(h), rng.integers(w)
        mask[y0 : y0 + rng.integers(1, 8), x0 : x0 + rng.integers(1, 8)] = True
    masks = np.broadcast_to(mask, x.shape).copy()
    if n > 1 and rng.random() < 0.3:
        masks[0] = False  # bands missing in different places
    return x, masks


def marked(x: np.ndarray, mask: np.ndarray, how: str, flavour: int) -> tuple[np.ndarray, Any]:
    """``x`` with the ``mask`` cells marked missing: ``nan`` (as float), ``max`` (the dtype's largest
    integer, or -3e38 for floats) or ``neg`` (-9999, or 0 for unsigned types); the nodata value given
    as a Python number (flavour 0), a float64 NumPy scalar (1) or a scalar of the data's type (2)."""
    dtype = x.dtype
    if how == "nan":
        out = x.astype(np.float64 if dtype.kind in "iu" else dtype)
        out[mask] = np.nan
        return out, None
    if how == "max":
        value = np.iinfo(dtype).max if dtype.kind in "iu" else -3.0e38
    else:
        value = 0 if dtype.kind == "u" else -9999
    out = x.copy()
    out[mask] = value
    nodata: Any = [value, np.float64(value), dtype.type(value)][flavour]
    return out, nodata


def run(models: dict[str, Any], case: dict[str, Any], data: np.ndarray, nodata: Any, tile: Any) -> np.ndarray:
    out = geosr.downscale(
        data if case["bands"] > 1 else data[0],
        case["scale"],
        models[case["kind"]],
        nodata=nodata,
        device="cpu",
        tile_size=tile,
        conserve=case["conserve"],
        calibrate=case["calibrate"],
        ensemble=case["ensemble"],
        batch_size=case["batch_size"],
    )
    assert out.dtype == np.float32
    return out if out.ndim == 3 else out[None]


def same(a: np.ndarray, b: np.ndarray, tol: float, what: str) -> None:
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: the nodata pixels differ"
    if np.isfinite(a).any():
        diff = float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
        assert diff <= tol, f"{what}: differs by {diff:.3g} > {tol:.3g}"


def check_case(models: dict[str, Any], case: dict[str, Any]) -> str:
    rng = np.random.default_rng(case["seed"] + 1)
    x, mask = draw_data(case)
    how = "nan" if x.dtype.kind == "f" and rng.random() < 0.5 else str(rng.choice(["max", "neg"]))
    data, nodata = marked(x, mask, how, int(rng.integers(3)))
    h, w, scale = case["h"], case["w"], case["scale"]
    try:
        whole = run(models, case, data, nodata, 4096)
    except GeosrError as error:  # documented refusals only: conserve/calibrate at a fractional scale
        assert not float(scale).is_integer() and (case["conserve"] or case["calibrate"]), error
        return "refused"
    h_out, w_out = max(1, round(h * scale)), max(1, round(w * scale))
    assert whole.shape == (case["bands"], h_out, w_out)
    reference = x.astype(np.float64)
    reference[mask] = np.nan
    tol = tolerance(reference)

    # promise 4: nodata exactly where the footprint is missing, finite elsewhere
    rows, cols = footprint_cells(h, h_out), footprint_cells(w, w_out)
    missing = np.logical_or.reduce([mask[:, r[:, None], c[None, :]] for r in rows for c in cols])
    assert np.array_equal(np.isnan(whole), missing), "nodata pixels are not those whose footprint is missing"

    # promise 2: any tile size, square or not, gives the whole-raster output
    for _ in range(2):
        tile: Any = int(rng.integers(1, max(h_out, w_out) + 6))
        if rng.random() < 0.3:
            tile = (int(rng.integers(1, h_out + 3)), int(rng.integers(1, w_out + 3)))
        same(run(models, case, data, nodata, tile), whole, tol, f"tiles of {tile}")

    # promise 4: valid output does not depend on how (or with what number) missing cells are marked
    if mask.any():
        other_how = "neg" if how == "nan" else "nan"
        other, other_nodata = marked(x if other_how != "nan" else x.astype(np.float64), mask, other_how, 0)
        same(run(models, case, other, other_nodata, int(rng.integers(1, 40))), whole, tol, f"{how} -> {other_how}")

    # conservation: every valid cell's fine pixels average to the input
    if conserves(models[case["kind"]].card, case["conserve"], (h, w), scale):
        averaged = area_average(whole.astype(np.float64), round(scale))
        assert np.isfinite(averaged[~mask]).all()
        error = np.abs(averaged - reference)[~mask]
        assert error.size == 0 or error.max() <= tol, f"conservation error {error.max():.3g} > {tol:.3g}"

    # promise 3: f(a*x + b) == a*f(x) + b for a > 0
    a = float(rng.choice([1e-3, 0.37, 1.0, 3.0, 1000.0]))
    b = float(rng.choice([-1e4, 0.0, 1000.0, 1234.5]))
    moved = a * reference + b
    expected = a * whole.astype(np.float64) + b
    same(run(models, case, moved, None, int(rng.integers(1, 60))), expected, a * tol + tolerance(moved), "a*x + b")
    return "ok"


def sweep(models: dict[str, Any], seed: int, n: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    outcomes: dict[str, int] = {}
    for _ in range(n):
        case = draw_case(rng)
        try:
            outcome = check_case(models, case)
        except AssertionError as error:
            raise AssertionError(f"{error}\ncase: {case}") from None
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def test_promises_hold_on_random_cases(models: dict[str, Any]) -> None:
    outcomes = sweep(models, seed=20261206, n=40)
    assert outcomes.get("ok", 0) >= 30


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_promises_hold_on_many_random_cases(models: dict[str, Any], seed: int) -> None:
    outcomes = sweep(models, seed=seed, n=150)
    assert outcomes.get("ok", 0) >= 120


# ---- regressions -------------------------------------------------------------------------------


def test_constant_band_does_not_leak_rounding_into_other_bands(models: dict[str, Any]) -> None:
    """A constant band of a multiband raster, moved by a*x + b, averages to its value only to float64
    rounding (1234.6 +- 2e-13); normalised by that spread, the rounding became unit-variance noise that
    the 3-channel network mixed into the other bands, which then missed a*f(x) + b by 8% of their range."""
    x = np.stack([fbm_surface((16, 18), seed=s, relief=200.0, base=0.0).astype(np.float64) for s in (1, 2, 3)])
    x[1] = 100.0
    a, b = 0.001, 1234.5
    y = a * x + b
    assert BandStats.of_block(y).std[1] == 0.0  # its spread is rounding, not data
    fx = geosr.downscale(x, 3, models["three"], device="cpu").astype(np.float64)
    fy = geosr.downscale(y, 3, models["three"], device="cpu").astype(np.float64)
    for band in range(3):  # 1e-4 of the range (0.2), or float32's resolution of 1234 (1.2e-4)
        assert np.abs(fy[band] - (a * fx[band] + b)).max() <= tolerance(y[band]) + a * tolerance(x[band])
    # nor does a constant's own rounding (0.1 averages to 0.1 + 1 ulp) change the other bands
    x01 = x.copy()
    x01[1] = 0.1
    f01 = geosr.downscale(x01, 3, models["three"], device="cpu").astype(np.float64)
    assert np.abs(f01[[0, 2]] - fx[[0, 2]]).max() <= tolerance(x[[0, 2]])


def test_stats_constant_band_has_zero_std() -> None:
    for value in (0.1, 0.37, 1234.6, -9876.54321, 1e30):
        block = np.full((1, 37, 41), value)
        stats = BandStats.of_block(block)
        assert stats.std[0] == 0.0, value
        parts = BandStats.combine(BandStats.of_block(part) for part in np.array_split(block, 5, axis=2))
        assert parts.std[0] == 0.0, value
    # real detail, however small against the values, is kept
    assert BandStats.of_block(np.array([[[1e5, 1e5 + 1e-3]]])).std[0] > 0


def test_float_nodata_given_as_numpy_float64_is_masked(models: dict[str, Any]) -> None:
    """float32 pixels holding nodata -3.4e38 (or 0.1) were compared with ``np.float64(-3.4e38)`` in
    float64 (NumPy 2), where they differ: nothing was masked, and the marker swamped every output pixel
    (-inf). GDAL compares a band's nodata in the band's type; so does the core."""
    x = fbm_surface((12, 14), seed=3)
    missing = np.zeros(x.shape, bool)
    missing[3:5, 4:9] = True
    expected = geosr.downscale(np.where(missing, np.nan, x), 2, models["plain"], device="cpu")
    for value in (-3.4e38, 0.1, -9999.0):
        data = np.where(missing, np.float32(value), x).astype(np.float32)
        for nodata in (value, np.float64(value), np.float32(value)):
            out = geosr.downscale(data, 2, models["plain"], device="cpu", nodata=nodata)
            same(out, expected, tolerance(x), f"nodata {nodata!r}")
    # a nodata beyond float32's range marks nothing in float32 data (and raises no overflow warning)
    assert not np.isnan(as_float(x[None], -1e300)).any()
