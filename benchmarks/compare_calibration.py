"""Self-calibration (geosr.calibrate) on the whole validation grids of a model kind.

For each validation grid (benchmarks/compare_validation.py's parts, never trained on, never held
out) at x2, x3 and x4: the grid is area-averaged by the scale and restored by MODEL with its default
(conserved) output, uncalibrated and self-calibrated; prints both RMSEs over the valid interior (a
border of 2 x scale pixels cropped), the gains chosen, and, on grids without nodata (where the
classical methods are defined), the best of cubic spline, Lanczos and back-projection. Then, per
part, the mean log ratio of the calibrated to the uncalibrated RMSE, and the (grid, scale) pairs
where each loses to the best classical method.

Needs the fetched rasters (``python -m geosr.training.fetch``).

With ``--compare-fallback``, pairs whose window is too small to estimate at the run's scale (and so
are estimated at a smaller one, geosr.calibrate.estimation_scale) also run without that fallback
(gain 1, as before it), and the mean log ratio with / without it is printed per part.

With ``--smoothed 1,2``, every part P also gets copies of its grids smoothed by a Gaussian of 1 and of 2
fine pixels (parts ``P~1``, ``P~2``; nodata left as it is, the smoothing renormalised over valid pixels):
fields with the detail below their grid removed, such as a climate model's orography.

With ``--max-gain 1.5,2,3``, every pair also runs calibrated with the gains clipped to [0, G] instead of
``geosr.calibrate.MAX_GAIN`` (1: never amplify), for each G; per part the mean log ratio
of each G's RMSE to the calibrated one's, the worst pair, and where each loses to the best classical method
(``benchmarks/results/calibration_max_gain.md``).

Usage: python benchmarks/compare_calibration.py [KIND] [MODEL] [--threads N] [--compare-fallback] [--parts a,b,c,d]
       [--smoothed SIGMAS] [--max-gain GAINS] (default: climate climate)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def smoothed(raster: np.ndarray, sigma: float) -> np.ndarray:
    """A (1, y, x) raster smoothed by a Gaussian of ``sigma`` pixels over its valid pixels; nodata kept."""
    from scipy.ndimage import gaussian_filter

    valid = np.isfinite(raster[0])
    weight = gaussian_filter(valid.astype(np.float64), sigma, mode="nearest")
    total = gaussian_filter(np.where(valid, raster[0], 0.0), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, total / weight, np.nan)[None]


def with_smoothed(parts: dict[str, list], sigmas: list[float]) -> dict[str, list]:
    """``parts`` and, for each part ``P`` and width ``s``, its grids smoothed by :func:`smoothed` (part ``P~s``)."""
    return parts | {
        f"{part}~{sigma:g}": [smoothed(np.asarray(r, dtype=np.float64), sigma) for r in rasters]
        for sigma in sigmas
        for part, rasters in list(parts.items())
    }


def cases(parts: dict[str, list]) -> Iterator[tuple[str, int, int, np.ndarray]]:
    """``(part, index, scale, truth)`` for every grid of ``parts`` at x2, x3 and x4 with at least 8 cells a side:
    the grid cut to a whole number of cells."""
    for part, rasters in parts.items():
        for i, raster in enumerate(rasters):
            fine = np.asarray(raster, dtype=np.float64)[0]
            for scale in (2, 3, 4):
                h, w = fine.shape[0] // scale * scale, fine.shape[1] // scale * scale
                if h // scale >= 8 and w // scale >= 8:
                    yield part, i, scale, fine[:h, :w]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", nargs="?", default="climate", choices=("dem", "climate"))
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--parts",
        default=None,
        help="comma-separated validation parts to run (default: every part of compare_validation.py); for "
        "climate also d, the weather-model grids of geosr.training.sources.grib_validation",
    )
    parser.add_argument(
        "--compare-fallback",
        action="store_true",
        help="also run without the smaller-scale fallback (where the window is too small at the run's scale)",
    )
    parser.add_argument(
        "--smoothed",
        default=None,
        metavar="SIGMAS",
        help="also every part's grids smoothed by Gaussians of these widths in fine pixels (comma-separated)",
    )
    parser.add_argument(
        "--max-gain",
        default=None,
        metavar="GAINS",
        help="also run calibrated with the gains clipped to [0, G] for each of these G (comma-separated)",
    )
    args = parser.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_validation import validation_parts

    from geosr import calibrate
    from geosr.calibrate import residual_gains, window
    from geosr.degrade import area_average
    from geosr.evaluate import classical
    from geosr.models.files import load_model
    from geosr.predict import Downscaler, downscale

    torch.set_num_threads(args.threads)
    model = load_model(args.model or args.kind, "cpu")
    downscaler = Downscaler(model, device="cpu")
    ratios: dict[str, list[float]] = {}
    losing: dict[str, list[str]] = {"uncalibrated": [], "calibrated": []}
    if args.compare_fallback:
        losing["calibrated without the fallback"] = []
    fallback_ratios: dict[str, list[float]] = {}
    max_gains = [float(v) for v in args.max_gain.split(",")] if args.max_gain else []
    clip_ratios: dict[float, dict[str, list[float]]] = {g: {} for g in max_gains}
    for g in max_gains:
        losing[f"calibrated, gains up to {g:g}"] = []
    parts = validation_parts(args.kind)
    if args.parts:
        if args.kind == "climate":
            from geosr.training.sources import grib_validation

            parts["d"] = grib_validation()
        unknown = [part for part in args.parts.split(",") if part not in parts]
        if unknown:
            parser.error(f"no validation part {', '.join(unknown)} for {args.kind}; it has {', '.join(parts)}")
        parts = {part: parts[part] for part in args.parts.split(",")}
    if args.smoothed:
        parts = with_smoothed(parts, [float(v) for v in args.smoothed.split(",")])
    for part, i, scale, truth in cases(parts):
        h, w = truth.shape
        coarse = area_average(truth, scale)
        inner = (slice(2 * scale, h - 2 * scale), slice(2 * scale, w - 2 * scale))

        def rmse(estimate: np.ndarray, truth: np.ndarray = truth, inner: tuple = inner) -> float:
            diff = (np.asarray(estimate, dtype=np.float64) - truth)[inner]
            return float(np.sqrt(np.nanmean(diff**2)))

        plain = rmse(downscale(coarse, scale, model, device="cpu", calibrate=False))
        calibrated = rmse(downscale(coarse, scale, model, device="cpu", calibrate=True))
        source = coarse[None][(slice(None), *window(coarse.shape, scale))]
        gains = residual_gains(downscaler, source, scale)
        ratios.setdefault(part, []).append(math.log(calibrated / plain))
        line = f"{part}{i} x{scale}: uncalibrated {plain:.5g}, calibrated {calibrated:.5g}"
        line += f" (gain {gains[0]:.2f}"
        at = calibrate.estimation_scale(source.shape[1:], scale)
        line += f", estimated at x{at})" if at is not None else ", no estimate)"
        if args.compare_fallback:  # as before the smaller-scale fallback: no estimate unless at the run's scale
            without = calibrated
            if at != scale:
                with_fallback = calibrate.estimation_scale
                calibrate.estimation_scale = lambda shape, factor: None
                try:
                    without = rmse(downscale(coarse, scale, model, device="cpu", calibrate=True))
                finally:
                    calibrate.estimation_scale = with_fallback
                line += f", without the fallback {without:.5g}"
            fallback_ratios.setdefault(part, []).append(math.log(calibrated / without))
        clipped: dict[float, float] = {}
        shipped_max = calibrate.MAX_GAIN
        for g in max_gains:
            calibrate.MAX_GAIN = g
            try:
                clipped[g] = rmse(downscale(coarse, scale, model, device="cpu", calibrate=True))
                gain = residual_gains(downscaler, source, scale)[0]
            finally:
                calibrate.MAX_GAIN = shipped_max
            clip_ratios[g].setdefault(part, []).append(math.log(clipped[g] / calibrated))
            line += f", up to {g:g}: {clipped[g]:.5g} (gain {gain:.2f})"
        if np.isfinite(truth).all():
            methods = ("cubic_spline", "lanczos", "backprojection")
            best_name, best = min(((m, rmse(classical(coarse, scale, m))) for m in methods), key=lambda x: x[1])
            line += f", best classical {best_name} {best:.5g}"
            compared = [("uncalibrated", plain), ("calibrated", calibrated)]
            if args.compare_fallback:
                compared.append(("calibrated without the fallback", without))
            compared += [(f"calibrated, gains up to {g:g}", value) for g, value in clipped.items()]
            for name, value in compared:
                if value > best:
                    losing[name].append(f"{part}{i} x{scale} ({100 * (1 - value / best):+.1f}%)")
        print(line, flush=True)
    means = {part: float(np.mean(r)) for part, r in ratios.items()}
    for part, value in means.items():
        print(f"part {part}: mean log ratio calibrated / uncalibrated {100 * value:+.2f}%")
    print(f"mean over parts: {100 * float(np.mean(list(means.values()))):+.2f}%")
    if args.compare_fallback:
        fallback_means = {part: float(np.mean(r)) for part, r in fallback_ratios.items()}
        for part, value in fallback_means.items():
            print(f"part {part}: mean log ratio with / without the fallback {100 * value:+.2f}%")
        overall = 100 * float(np.mean(list(fallback_means.values())))
        print(f"mean over parts, with / without the fallback: {overall:+.2f}%")
    for g, by_part in clip_ratios.items():
        clip_means = {part: float(np.mean(r)) for part, r in by_part.items()}
        for part, value in clip_means.items():
            worst = 100 * max(by_part[part])
            print(f"part {part}: gains up to {g:g}, mean log ratio to calibrated {100 * value:+.2f}%", end="")
            print(f" (worst pair {worst:+.2f}%)")
        print(f"gains up to {g:g}: mean over parts {100 * float(np.mean(list(clip_means.values()))):+.2f}%")
    for name, pairs in losing.items():
        print(f"{name} loses to the best classical method on {len(pairs)}: {', '.join(pairs) or 'none'}")


if __name__ == "__main__":
    main()
