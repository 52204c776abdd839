"""Measure super-resolution against classical interpolation on area-averaged pairs.

A fine (high-resolution) raster is cropped to a multiple of the scale, area-averaged to a coarse
raster (:func:`geosr.degrade.area_average`), brought back to the fine grid by each method, and
compared with the original over the interior (a border of ``2 * scale`` fine pixels is cropped from
every side, where edge replication dominates). Methods: the model, and the classical nearest,
bilinear, bicubic (Keys a=-0.5), cubic B-spline, Lanczos-3, and iterative back-projection (Lanczos
up, then repeatedly add the Lanczos-upsampled error of the cell averages until the output's cell
averages match the input). All interpolators sample fine pixel ``j`` at coarse coordinate
``(j + 0.5) / s - 0.5`` with edges replicated.

Nodata (NaN) in the fine raster: a coarse cell with any missing fine pixel is missing
(:func:`geosr.degrade.area_average`), and so is every fine pixel of it in each method's output. The
classical methods take their weights renormalised over the valid cells (what GDAL's resamplers do with
nodata; back-projection corrects only valid cells), the model its own nodata handling, and every
metric is taken over the valid fine pixels of the interior (SSIM's Gaussian statistics renormalised
over them too). A complete raster is measured exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from geosr.conserve import conserve
from geosr.degrade import area_average

CLASSICAL = ("nearest", "bilinear", "bicubic", "cubic_spline", "lanczos", "backprojection")


def _kernel(name: str) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    from geosr.tiling import cubic_kernel

    if name == "bilinear":
        return (lambda t: np.clip(1 - np.abs(t), 0, None)), 1
    if name == "bicubic":
        return cubic_kernel, 2
    if name == "lanczos":
        return (lambda t: np.where(np.abs(t) < 3, np.sinc(t) * np.sinc(t / 3), 0.0)), 3
    raise ValueError(f"unknown kernel {name!r}")


def resample_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """(n_out x n_in) matrix of a separable classical interpolator along one axis."""
    j = np.arange(n_out, dtype=np.float64)
    u = (j + 0.5) * (n_in / n_out) - 0.5
    matrix = np.zeros((n_out, n_in))
    if method == "nearest":
        matrix[np.arange(n_out), np.minimum(np.floor((j + 0.5) * n_in / n_out).astype(int), n_in - 1)] = 1.0
        return matrix
    if method == "cubic_spline":
        from scipy.ndimage import map_coordinates

        eye = np.eye(n_in)
        cols = [map_coordinates(eye[:, i], [np.clip(u, 0, n_in - 1)], order=3, mode="nearest") for i in range(n_in)]
        return np.stack(cols, axis=1)
    kernel, support = _kernel(method)
    base = np.floor(u).astype(int)
    for k in range(-support + 1, support + 1):
        idx = base + k
        np.add.at(matrix, (np.arange(n_out), np.clip(idx, 0, n_in - 1)), kernel(u - idx))
    return matrix / matrix.sum(axis=1, keepdims=True)


def interpolate(coarse: np.ndarray, shape: tuple[int, int], method: str) -> np.ndarray:
    """Classical interpolation of a (..., y, x) array onto a fine grid of ``shape``."""
    rows = resample_matrix(coarse.shape[-2], shape[0], method)
    cols = resample_matrix(coarse.shape[-1], shape[1], method)
    return np.matmul(np.matmul(rows, coarse), cols.T)


#: The interpolators with negative weights, whose weights renormalised over scattered valid cells can be
#: ill-conditioned (a pixel between missing cells, where the valid cells' weights nearly cancel).
SIGNED = ("bicubic", "cubic_spline", "lanczos")

#: The most the absolute values of a pixel's renormalised weights may sum to: beyond it the pixel is
#: interpolated bilinearly from the valid cells instead (:func:`interpolate_valid`). Over a complete raster
#: they sum to at most 1.6 (bicubic) and 2.4 (Lanczos-3, cubic spline); at the stair-stepped edges of voids
#: and of rotated scenes to at most 3.5 at x4 (4.8 at x8); between scattered missing cells to 140 and more.
CONDITION_LIMIT = 4.0


@dataclass
class Renormalisation:
    """The weights of an interpolation renormalised over the valid cells of a coarse array (the same for
    every array with those missing cells): ``weights``, the interpolated valid mask; ``fallback``, the fine
    pixels whose renormalised weights are ill-conditioned; ``bilinear``, the bilinear weights there."""

    weights: np.ndarray
    fallback: np.ndarray | None
    bilinear: np.ndarray | None

    @classmethod
    def of(cls, valid: np.ndarray, shape: tuple[int, int], method: str) -> Renormalisation:
        mask = valid.astype(np.float64)
        weights = interpolate(mask, shape, method)
        if method not in SIGNED:  # non-negative weights: a weighted mean of the valid cells, never ill-conditioned
            return cls(weights, None, None)
        rows = np.abs(resample_matrix(valid.shape[-2], shape[0], method))
        cols = np.abs(resample_matrix(valid.shape[-1], shape[1], method))
        absolute = np.matmul(np.matmul(rows, mask), cols.T)  # sum of |weight| over the valid cells
        fallback = ~(absolute <= CONDITION_LIMIT * weights) | ~(weights > 1e-6)  # a sum near 0 or negative too
        return cls(weights, fallback, interpolate(mask, shape, "bilinear") if fallback.any() else None)


def interpolate_valid(
    coarse: np.ndarray, shape: tuple[int, int], method: str, weights: Renormalisation | None = None
) -> np.ndarray:
    """:func:`interpolate` with the weights renormalised over the finite cells of ``coarse`` (normalised
    convolution); NaN where no valid cell has weight. A complete ``coarse`` is interpolated as it is.

    Where the valid cells are scattered, the renormalised weights of the kernels with negative lobes
    (bicubic, cubic spline, Lanczos: :data:`SIGNED`) can nearly cancel (a weight sum of 0.009 for Lanczos
    between missing cells at x4), and the pixel blows up. So a pixel whose renormalised weights' absolute
    values sum to more than :data:`CONDITION_LIMIT` (4: the weights' sum below a quarter of their absolute
    values', or not positive; the value then overshoots its valid cells' range by at most 1.5 times that
    range) is interpolated bilinearly from the valid cells instead (non-negative weights, renormalised: a
    weighted mean of its valid neighbours). A pixel of a valid cell always has a bilinear weight (at least
    1/4, its own cell's), so it is never NaN. Complete rasters are unchanged, and so are voids, nodata
    collars and rotated scenes up to x5 (their stair-stepped edges' corners reach 4 from x6).
    ``weights``: the :class:`Renormalisation` of ``coarse``'s missing cells, when the caller has it (the
    same mask again and again)."""
    valid = np.isfinite(coarse)
    if valid.all():
        return interpolate(coarse, shape, method)
    if weights is None:
        weights = Renormalisation.of(valid, shape, method)
    zeroed = np.where(valid, coarse, 0.0)
    values = interpolate(zeroed, shape, method)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.abs(weights.weights) > 1e-6, values / weights.weights, np.nan)
        if weights.fallback is not None and weights.bilinear is not None:
            linear = interpolate(zeroed, shape, "bilinear")
            linear = np.where(weights.bilinear > 0, linear / weights.bilinear, np.nan)
            out = np.where(weights.fallback, linear, out)
    return out


def missing_cells(coarse: np.ndarray, scale: int) -> np.ndarray:
    """The fine pixels (..., y * scale, x * scale) of the missing (non-finite) cells of ``coarse``."""
    return np.repeat(np.repeat(~np.isfinite(coarse), scale, axis=-2), scale, axis=-1)


def back_project(coarse: np.ndarray, scale: int, iterations: int = 20) -> np.ndarray:
    """Iterative back-projection: Lanczos up, then correct until the cell averages match ``coarse``.

    With missing cells, the Lanczos weights are renormalised over the valid ones (ill-conditioned pixels
    bilinear: :func:`interpolate_valid`), only the valid cells' averages are corrected, and the iteration
    stops early, keeping the last estimate, when a correction fails to lower the RMS of the valid cells'
    average errors: with scattered missing cells the corrections can amplify instead of converge (an RMSE
    of 1.6e14 after 20 of them). A complete raster is corrected ``iterations`` times."""
    shape = (coarse.shape[-2] * scale, coarse.shape[-1] * scale)
    valid = np.isfinite(coarse)
    if valid.all():
        fine = interpolate(coarse, shape, "lanczos")
        for _ in range(iterations):
            fine = fine + interpolate(coarse - area_average(fine, scale), shape, "lanczos")
        return fine
    # every correction has the input's missing cells (a fine pixel without weight lies in one): one mask
    weights = Renormalisation.of(valid, shape, "lanczos")
    fine = interpolate_valid(coarse, shape, "lanczos", weights)
    residual = coarse - area_average(fine, scale)
    error = float(np.sqrt(np.mean(residual[valid] ** 2)))
    for _ in range(iterations):
        corrected = fine + interpolate_valid(residual, shape, "lanczos", weights)
        after = coarse - area_average(corrected, scale)
        now = float(np.sqrt(np.mean(after[valid] ** 2)))
        if not now < error:  # no better (or NaN): the corrections no longer converge
            break
        fine, residual, error = corrected, after, now
    return fine


#: Coarse columns taken from the other side on each side of a periodic grid (a global one's longitudes) before
#: a classical method runs: beyond the kernels' support (3 for Lanczos-3) and where back-projection's corrections
#: have died away (they decay as the consistent kernel does, :data:`geosr.tiling.CONSISTENT_RADIUS` = 14)
WRAP_CELLS = 16


def classical(coarse: np.ndarray, scale: int, method: str, periodic: bool = False) -> np.ndarray:
    """Any classical method of :data:`CLASSICAL` applied to a coarse (..., y, x) array; the fine pixels
    of its missing (NaN) cells are NaN, the others interpolated from the valid cells. ``periodic``: the
    columns wrap around (a global grid's longitudes, as ``geosr downscale`` runs them): the method runs on
    the grid with :data:`WRAP_CELLS` columns of the other side added on either side, which are then cut off."""
    if periodic:
        n = coarse.shape[-1]
        padded = np.take(coarse, np.arange(-WRAP_CELLS, n + WRAP_CELLS) % n, axis=-1)
        return classical(padded, scale, method)[..., WRAP_CELLS * scale : (WRAP_CELLS + n) * scale]
    if method == "backprojection":
        fine = back_project(coarse, scale)
    else:
        fine = interpolate_valid(coarse, (coarse.shape[-2] * scale, coarse.shape[-1] * scale), method)
    missing = missing_cells(coarse, scale)
    return np.where(missing, np.nan, fine) if missing.any() else fine


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, valid: np.ndarray | None = None) -> float | None:
    """Mean structural similarity (Gaussian window: sigma 1.5, truncated at 4 sigma, edges reflected;
    K1=0.01, K2=0.03; (co)variances without the sample correction), the index averaged over every pixel
    given (:func:`measure` gives the interior, border cropped). scikit-image's ``structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` and the same ``data_range`` truncates
    at 3.5 sigma and leaves a 5-pixel border out of its average: it differs by at most about 3e-4.

    ``None`` when ``data_range`` is not positive: SSIM's stabilising constants are fractions of the
    data range, so SSIM against a constant reference is undefined (0 / 0). With ``valid`` (a mask of
    the pixels to use, not all True), the Gaussian statistics are renormalised over the valid pixels
    and the index averaged over them (``None`` when none is valid).
    """
    from scipy.ndimage import gaussian_filter

    if not data_range > 0:
        return None
    partial = valid is not None and not valid.all()
    if partial and not valid.any():
        return None
    weight = valid.astype(np.float64) if partial else None

    def smooth(x: np.ndarray) -> np.ndarray:
        if weight is None:
            return gaussian_filter(x, 1.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            return gaussian_filter(np.where(valid, x, 0.0), 1.5) / gaussian_filter(weight, 1.5)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = smooth(a), smooth(b)
    # (Co)variances do not change with a common offset: remove one first, so that E[x^2] - E[x]^2
    # does not cancel catastrophically on data far from zero (a DEM at 3000 m with a 1 m range).
    offset = float(np.mean(b[valid])) if partial else float(np.mean(b))
    a0, b0 = a - offset, b - offset
    m_a, m_b = mu_a - offset, mu_b - offset
    var_a = smooth(a0 * a0) - m_a**2
    var_b = smooth(b0 * b0) - m_b**2
    cov = smooth(a0 * b0) - m_a * m_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index[valid].mean()) if partial else float(index.mean())


def slope_degrees(z: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray) -> np.ndarray:
    """Slope in degrees by central differences (pixel sizes in the units of ``z``).

    ``dx`` and ``dy`` are numbers, or one number per row (the first ``z.shape[0]`` are used): the
    pixels of a geographic raster narrow towards the poles, row by row.
    """
    if np.ndim(dx) == 0 and np.ndim(dy) == 0:
        gy, gx = np.gradient(z, dy, dx)
    else:
        rows = z.shape[0]

        def per_row(size: float | np.ndarray) -> np.ndarray:  # a number for every row, or the first rows' own
            values = np.asarray(size, dtype=np.float64)
            return (np.broadcast_to(values, (rows,)) if values.ndim == 0 else values[:rows])[:, None]

        gy, gx = np.gradient(z)
        gx, gy = gx / per_row(dx), gy / per_row(dy)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


@dataclass
class Metrics:
    """Errors of one method over the interior.

    ``psnr`` is ``20 log10(range / rmse)`` with ``range`` the truth's peak-to-peak value over the measured
    pixels (those of ``rmse``: the interior, in the cells without nodata): ``inf`` for an exact
    reconstruction (``rmse == 0``) of a varying truth, and ``None`` (undefined) when the truth is constant
    there (zero range). ``ssim`` takes the same range, and is likewise ``None``; see :func:`ssim`.
    """

    rmse: float
    mae: float
    psnr: float | None
    ssim: float | None
    max_error: float
    slope_rmse: float | None
    consistency_rmse: float


def measure(
    estimate: np.ndarray,
    truth: np.ndarray,
    coarse: np.ndarray,
    scale: int,
    *,
    pixel_size: tuple[float | np.ndarray, float | np.ndarray] | None = None,
) -> Metrics:
    """Metrics of a (y, x) ``estimate`` of ``truth`` over the interior (border of ``2 * scale`` cropped),
    over the pixels of the cells ``coarse`` has (all of them for a complete raster), the same pixels for
    every method (:func:`valid_interior`).

    PSNR and SSIM take the data range of ``truth`` over those pixels, and are ``None`` when it is zero
    (see :class:`Metrics`)."""
    crop = (slice(2 * scale, -2 * scale), slice(2 * scale, -2 * scale))
    valid = ~missing_cells(coarse, scale)[crop]
    if not valid.any():
        raise ValueError(f"no cell without nodata inside the border of {2 * scale} pixels: nothing to measure")
    complete = bool(valid.all())
    err = (estimate - truth)[crop][valid]
    # PSNR's and SSIM's data range: that of the measured pixels, those the errors are taken over (not the
    # cropped border's, nor the finite pixels of missing cells, which no error reads)
    data_range = float(np.ptp(truth[crop][valid]))
    rmse = float(np.sqrt(np.mean(err**2)))
    if data_range > 0:
        psnr: float | None = float(20 * np.log10(data_range / rmse)) if rmse > 0 else float("inf")
    else:
        psnr = None  # PSNR over a zero data range is undefined (log of 0, or of 0 / 0)
    slope = None
    if pixel_size is not None:
        s_err = (slope_degrees(estimate, *pixel_size) - slope_degrees(truth, *pixel_size))[crop]
        s_err = s_err[np.isfinite(s_err)]  # next to nodata the central differences have none
        slope = float(np.sqrt(np.mean(s_err**2))) if s_err.size else None
    # the same border as the errors, in coarse cells: 2 * scale fine pixels are 2 cells
    back = (area_average(estimate, scale) - coarse)[2:-2, 2:-2]
    back = back[np.isfinite(back)]
    return Metrics(
        rmse=rmse,
        mae=float(np.mean(np.abs(err))),
        psnr=psnr,
        ssim=ssim(estimate[crop], truth[crop], data_range, None if complete else valid),
        max_error=float(np.max(np.abs(err))),
        slope_rmse=slope,
        consistency_rmse=float(np.sqrt(np.mean(back**2))),
    )


def evaluate_array(
    fine: np.ndarray,
    scale: int,
    model: object | None = None,
    *,
    pixel_size: tuple[float | np.ndarray, float | np.ndarray] | None = None,
    methods: tuple[str, ...] = CLASSICAL,
    **options: object,
) -> dict[str, Metrics]:
    """Metrics of every method on one (y, x) fine raster (NaN: nodata, see the module's notes).

    With a ``model``, adds ``model`` (its plain output, ``conserve=False``) and ``model_conserved``
    (with ``conserve``, the default output of a model whose card says ``conserve``).
    """
    from geosr.errors import InputError

    fine = np.asarray(fine)
    if fine.ndim != 2:
        hint = "; evaluate_bands takes (band, y, x)" if fine.ndim == 3 else ""
        raise InputError(f"evaluate_array takes a (y, x) raster, got {fine.ndim} dimensions {fine.shape}{hint}")
    return evaluate_bands(fine[None], scale, model, pixel_sizes=[pixel_size], methods=methods, **options)[0]


def evaluate_bands(
    fine: np.ndarray,
    scale: int,
    model: object | None = None,
    *,
    pixel_sizes: list[tuple[float | np.ndarray, float | np.ndarray] | None] | None = None,
    methods: tuple[str, ...] = CLASSICAL,
    periodic: bool = False,
    **options: object,
) -> list[dict[str, Metrics]]:
    """:func:`evaluate_array` for every band of a (band, y, x) fine raster, the model run once on all
    of them (so a model of several bands sees them together); ``pixel_sizes[band]`` for slope errors
    (numbers, or one per row: see :func:`slope_degrees`). ``periodic``: the raster's columns wrap around (a
    global grid, :func:`geosr.io.periodic_columns`), for the model and the classical methods alike; only where
    its width is a whole number of cells (else the cut to whole cells leaves less than a full turn).

    Raises :class:`geosr.errors.ModelError` if the model's output is not finite.
    """
    from geosr.errors import InputError, ModelError
    from geosr.predict import downscale, quiet_scale_warning

    try:
        whole = not isinstance(scale, bool) and float(scale).is_integer() and float(scale) >= 2
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise InputError(f"evaluation needs a whole scale of at least 2 (its pairs are cell averages), got {scale!r}")
    scale = int(float(scale))
    fine = np.asarray(fine)
    if fine.ndim != 3:
        raise InputError(f"evaluate_bands takes a (band, y, x) raster, got {fine.ndim} dimensions {fine.shape}")
    bands = fine.shape[0]
    sizes = pixel_sizes if pixel_sizes is not None else [None] * bands
    h, w = (fine.shape[1] // scale) * scale, (fine.shape[2] // scale) * scale
    periodic = periodic and w == fine.shape[2]
    truth = np.asarray(fine, dtype=np.float64)[:, :h, :w]
    coarse = area_average(truth, scale)
    results = [
        {
            m: measure(classical(coarse[b], scale, m, periodic), truth[b], coarse[b], scale, pixel_size=sizes[b])
            for m in methods
        }
        for b in range(bands)
    ]
    if model is not None:
        # One network run: conservation is a per-cell correction of the output (geosr.conserve), the
        # same whether applied to the whole raster here or tile by tile by ``downscale(conserve=True)``.
        with quiet_scale_warning():  # geosr evaluate reports an untrained scale its own way
            run = {**options, "conserve": False, "periodic": periodic}
            estimate = np.asarray(downscale(coarse, scale, model, **run), dtype=np.float64)
        if not np.isfinite(estimate[~missing_cells(coarse, scale)]).all():  # NaN only where cells are missing
            name = getattr(getattr(model, "card", None), "name", model)
            raise ModelError(
                f"model '{name}' gave NaN or infinite values on this raster, so it cannot be measured; "
                "its weights are broken (a diverged training?): retrain it with a lower --lr"
            )
        for b in range(bands):
            results[b]["model"] = measure(estimate[b], truth[b], coarse[b], scale, pixel_size=sizes[b])
            conserved = conserve(estimate[b], coarse[b], scale)
            results[b]["model_conserved"] = measure(conserved, truth[b], coarse[b], scale, pixel_size=sizes[b])
    return results


def valid_interior(truth: np.ndarray, scale: int) -> np.ndarray:
    """The (y, x) pixels of a fine raster, cropped to whole cells of ``scale``, that every method restores
    and the metrics use: inside the border of ``2 * scale`` pixels, in a cell without nodata."""
    h, w = (truth.shape[-2] // scale) * scale, (truth.shape[-1] // scale) * scale
    cropped = np.asarray(truth, dtype=np.float64)[..., :h, :w]
    inside = ~missing_cells(area_average(cropped, scale), scale)
    border = np.zeros(inside.shape[-2:], dtype=bool)
    border[2 * scale : -2 * scale, 2 * scale : -2 * scale] = True
    return inside & border


def best_classical(results: dict[str, Metrics]) -> str:
    """Name of the classical method with the lowest RMSE (the first of equals, in the order of ``results``).

    RMSE is always defined (over the valid interior pixels), so this stays meaningful where PSNR or SSIM
    is not (a constant band, where every method may be exact).
    """
    return min((m for m in results if not m.startswith("model")), key=lambda m: results[m].rmse)
