"""The ``.geosr`` accessor on xarray DataArrays and Datasets.

``da.geosr.downscale(scale=4)`` super-resolves every 2-D (y, x) slice of a DataArray — extra
dimensions such as time or band are carried along — and returns a DataArray on the fine grid:
new x/y coordinates at the fine cell centres (same outer edges, so the same bounds), attributes
kept, the CRS kept (a ``spatial_ref``-style grid-mapping coordinate gets its ``GeoTransform``
updated, which is what rioxarray reads), NaN wherever the footprint has no data. Dask-backed input
gives lazy output whose chunks line up with the input's: nothing runs until ``.compute()`` or a
write, and the model is loaded once per process (or dask worker). With a ``dask.distributed``
client the tiles run on its workers. rioxarray is optional.

Spatial dimensions are recognised by name (``y``/``x``, ``lat``/``lon``, ``latitude``/
``longitude``, ``rlat``/``rlon``, ``northing``/``easting``, ``south_north``/``west_east``), or
given with ``y_dim``/``x_dim``. Coordinates must be regular (evenly spaced, ascending or
descending; 0-360 longitudes are fine). Either way the network sees the grid north-up (y descending,
x ascending), as GDAL reads a raster for the command line and QGIS, so that a NetCDF with ascending
latitudes gives the same values through every front door.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geosr.errors import GeosrWarning, InputError, ModelError
from geosr.georef import check_scale, output_shape
from geosr.io import LATITUDE_UNITS, LONGITUDE_UNITS, STALE_RANGES, markers_in_type, mirrored_array

Y_NAMES = ("y", "lat", "latitude", "rlat", "northing", "south_north")
X_NAMES = ("x", "lon", "longitude", "rlon", "easting", "west_east")


def spatial_dims(obj: xr.DataArray | xr.Dataset, y_dim: str | None = None, x_dim: str | None = None) -> tuple[str, str]:
    """Names of the (y, x) dimensions of ``obj``: ``y_dim``/``x_dim`` if given, else recognised by name."""
    dims = [str(d) for d in obj.dims]
    if isinstance(obj, xr.DataArray) and obj.ndim < 2:  # a time series, a scalar: renaming would not make a grid
        what = f"variable {obj.name!r}" if obj.name is not None else "the DataArray"
        raise InputError(
            f"{what} is not a grid: it has {obj.ndim} dimension{'s' * (obj.ndim != 1)} ({dims}), and a grid needs "
            "two spatial ones; pick a gridded variable"
        )

    def find(given: str | None, names: tuple[str, ...], axis: str) -> str:
        if given is not None:
            if given not in dims:
                raise InputError(f"{axis}_dim={given!r} is not a dimension of the data (dimensions: {dims})")
            return given
        for name in names:
            for dim in dims:
                if dim.lower() == name:
                    return dim
        raise InputError(
            f"no {axis} dimension found among {dims}; name it one of {', '.join(names)} (in xarray "
            f".rename(OLD='{names[0]}'), in a NetCDF file 'ncrename -d OLD,{names[0]}') or pass {axis}_dim=... "
            "to the xarray accessor"
        )

    y, x = find(y_dim, Y_NAMES, "y"), find(x_dim, X_NAMES, "x")
    if y == x:  # else xarray's transpose failed with "axes don't match array"
        raise InputError(f"y and x name the same dimension {y!r}; give y_dim= and x_dim= two different dimensions")
    return y, x


def regular_step(obj: xr.DataArray | xr.Dataset, dim: str) -> float:
    """Spacing of the regular cell-centre coordinate ``dim`` (negative when descending).

    Regular means evenly spaced to 1e-5 of the step, or to the precision of the coordinate's own
    floating-point type (float32 longitudes near 120 degrees are only good to about 1e-5 degrees).
    """
    if dim not in obj.coords:
        others = [str(k) for k, c in obj.coords.items() if c.ndim > 1 and dim in c.dims]
        if others:
            raise InputError(
                f"dimension {dim!r} has no 1-D coordinate, only the 2-D coordinates {', '.join(others)}: a rotated "
                f"or curvilinear grid, which the accessor cannot refine; if it is regular in its own projection (a "
                f"rotated pole, a Lambert grid), give it that projection's 1-D x and y coordinates, else regrid it to "
                f"a regular grid first (gdalwarp -geoloc)"
            )
        raise InputError(f"dimension {dim!r} has no coordinate; assign cell-centre coordinates to it first")
    raw = np.asarray(obj[dim].values)
    if raw.dtype.kind not in "iuf":
        raise InputError(
            f"coordinate {dim!r} holds {raw.dtype} values, not numbers; assign numeric cell-centre coordinates to it"
        )
    values = raw.astype(np.float64)
    if values.size < 2:
        raise InputError(
            f"dimension {dim!r} has {values.size} cell(s); at least 2 are needed to know the spacing: select a "
            "window of at least 2 x 2 cells"
        )
    if not np.isfinite(values).all():
        raise InputError(
            f"coordinate {dim!r} holds NaN or infinite values; assign finite cell-centre coordinates to it"
        )
    step = (values[-1] - values[0]) / (values.size - 1)
    precision = 4 * np.finfo(raw.dtype).eps * np.abs(values).max() if raw.dtype.kind == "f" else 0.0
    if np.all(values == values[0]):
        raise InputError(
            f"coordinate {dim!r} holds the same value ({values[0]:g}) for every cell; assign the cells' centres to it"
        )
    if step == 0 or not _evenly_spaced(values, step, precision):
        # a wrap only where there is one: a longitude-like axis (within +-360 degrees) jumping by about 360 degrees
        # (np.unwrap changes it), regular once unwrapped, by the same test
        unwrapped = np.unwrap(values, period=360.0)
        turned = (unwrapped[-1] - unwrapped[0]) / (values.size - 1)
        if (
            np.abs(values).max() <= 360
            and not np.array_equal(unwrapped, values)
            and turned != 0
            and _evenly_spaced(unwrapped, turned, precision)
        ):
            raise InputError(
                f"coordinate {dim!r} is regular but wraps around at 180 or 360 degrees; give it continuous "
                f"longitudes first, e.g. da.assign_coords({dim}=np.unwrap(da.{dim}, period=360))"
            )
        steps = np.diff(values)
        measured = f"its steps run from {steps.min():.6g} to {steps.max():.6g}, " + (
            f"up to {np.abs(steps - step).max() / abs(step):.2g} of their mean {step:.6g} off it; regular is 1e-5"
            if step
            else f"and it ends where it starts, at {values[0]:g}"
        )
        raise InputError(
            f"coordinate {dim!r} is not regularly spaced; regrid it to a regular axis first ({measured}), e.g. "
            f"da.interp({dim}=np.linspace(da.{dim}.values[0], da.{dim}.values[-1], da.{dim}.size))"
        )
    return float(step)


def _evenly_spaced(values: np.ndarray, step: float, precision: float) -> bool:
    """Whether every difference of ``values`` is ``step`` to 1e-5 of it, or to the coordinate type's ``precision``."""
    return bool(np.allclose(np.diff(values), step, rtol=1e-5, atol=max(abs(step) * 1e-5, precision)))


def step_precision(obj: xr.DataArray | xr.Dataset, dim: str) -> float:
    """How far :func:`regular_step` of ``dim`` can be from the true step by the rounding of its coordinate's own
    floating-point type (its two end values): 0 for a float64 or integer coordinate."""
    raw = np.asarray(obj[dim].values)
    if raw.dtype.kind != "f" or raw.dtype.itemsize >= 8:
        return 0.0
    return float(2 * np.finfo(raw.dtype).eps * np.abs(raw.astype(np.float64)).max() / (raw.size - 1))


def fine_coordinate(values: np.ndarray, n_out: int) -> np.ndarray:
    """Cell centres of ``n_out`` cells spanning the same edges as the regular centres ``values``."""
    n = values.size
    step = (values[-1] - values[0]) / (n - 1)
    edge = values[0] - step / 2
    return edge + (np.arange(n_out) + 0.5) * step * n / n_out


def fine_chunks(chunks: tuple[int, ...], n_in: int, n_out: int) -> tuple[int, ...]:
    """Chunks of a fine axis whose boundaries are the coarse chunk boundaries mapped onto it."""
    bounds = [round(b * n_out / n_in) for b in np.cumsum((0, *chunks))]
    return tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True))


#: Smallest default tile side: a tile reads a halo of about 20 fine pixels around it, so tiles cut to tiny
#: chunks (1 x 1 coarse cells) would each read most of the raster, and the graph grow with its square
MIN_DEFAULT_TILE = 256


def _default_tile(chunk_out: int) -> int:
    """Tile side for a fine chunk of ``chunk_out`` pixels: the chunk split evenly into tiles of at most the
    default, and never below :data:`MIN_DEFAULT_TILE` (a tile may then span several small chunks)."""
    from geosr.predict import DEFAULT_TILE_SIZE

    return max(-(-chunk_out // -(-chunk_out // DEFAULT_TILE_SIZE)), MIN_DEFAULT_TILE)


def _nodata(da: xr.DataArray) -> list[float]:
    """The values marking missing data in ``da`` besides NaN: rioxarray's nodata, else ``_FillValue``,
    ``nodata`` and every ``missing_value`` of the attributes (undecoded data), and of the encoding
    unless it scales the stored numbers (decoded data: those cells are NaN already). Integer markers stay
    Python integers, compared exactly: as a double, 2**64 - 1 would also mark every valid value within 2048 of it."""
    try:
        rio_nodata = da.rio.nodata  # rioxarray, when it is installed and imported
    except AttributeError:
        rio_nodata = None
    except (OverflowError, TypeError, ValueError):  # rioxarray converts it through a float (2**64 - 1 overflows)
        rio_nodata = None  # the attributes and encoding it reads it from are read below, exactly
    stated: list[float] = []
    scaled = any(key in da.encoding for key in ("scale_factor", "add_offset"))
    for where, source in (("attribute", da.attrs), ("encoding", {} if scaled else da.encoding)):
        for key in ("_FillValue", "nodata", "missing_value"):
            if source.get(key) is not None:
                try:
                    stated += _numbers(source[key])
                except (TypeError, ValueError):
                    raise InputError(
                        f"the {where} {key} of {da.name or 'the data'!r} is {source[key]!r}, not a number; set it to "
                        f"the number that marks missing data, drop it, or pass nodata=VALUE"
                    ) from None
    # rioxarray passes an integer marker through a float (2**62 + 1 comes back as 2**62): the attribute's is exact
    rio = [] if rio_nodata is None else _numbers(rio_nodata)
    found = [v for v in rio if not any(v != m and float(v) == float(m) for m in stated)] + stated
    values: list[float] = []
    for value in found:
        if (isinstance(value, int) or not np.isnan(value)) and value not in values:
            values.append(value)
    return values


#: netCDF's default fill of its float types (netCDF4.default_fillvals "f4" and "f8" alike): what the cells of a float
#: variable never written hold, which netCDF4-python and GDAL read as missing where no _FillValue is set
NETCDF_FLOAT_FILL = 9.969209968386869e36


def _stored_type(da: xr.DataArray) -> np.dtype:
    """The type ``da``'s numbers are stored in: that of its encoding (decoded data), else its own."""
    try:
        return np.dtype(da.encoding.get("dtype", da.dtype))
    except TypeError:
        return np.dtype(da.dtype)


def _packing(da: xr.DataArray) -> tuple[float, float] | None:
    """``(scale_factor, add_offset)`` that xarray applied decoding ``da`` (in its encoding), else None."""
    if not any(key in da.encoding for key in ("scale_factor", "add_offset")):
        return None
    scale, offset = (da.encoding.get(key) for key in ("scale_factor", "add_offset"))
    return (1.0 if scale is None else float(np.ravel(scale)[0]), 0.0 if offset is None else float(np.ravel(offset)[0]))


def _default_fill(da: xr.DataArray) -> list[float]:
    """netCDF's default float fill (:data:`NETCDF_FLOAT_FILL`) for float data stored as floats, unscaled, without a
    ``_FillValue``, as netCDF4-python and GDAL mask it; none for integers, whose default fills (255 for bytes) can
    be data, nor for packed data, whose stored fill the scaling moved."""
    declared = da.attrs.get("_FillValue") is not None or da.encoding.get("_FillValue") is not None
    stored = _stored_type(da)
    if da.dtype.kind != "f" or stored.kind != "f" or stored.itemsize < 4 or declared or _packing(da) is not None:
        return []
    return [NETCDF_FLOAT_FILL]


def _valid_bounds(da: xr.DataArray) -> tuple[float | None, float | None]:
    """The least and greatest valid value of ``da`` as it holds them (decoded or not), from its CF
    ``valid_range``, else ``valid_min``/``valid_max`` (None where not stated). Those are in the stored (packed)
    numbers, compared as netCDF4-python compares them: in the stored type (and as unsigned numbers under
    ``_Unsigned``); of decoded packed data they are unpacked here, widened by half a packed step for integer
    storage, so that the rounding of the decoding moves no valid value out."""
    name = da.name or "the data"

    def numbers(key: str, count: int) -> list[float] | None:
        if da.attrs.get(key) is None:
            return None
        try:
            found = _numbers(da.attrs[key])
        except (TypeError, ValueError):
            found = []
        if len(found) != count:
            raise InputError(
                f"the attribute {key} of {name!r} is {da.attrs[key]!r}, not {count} number{'s' * (count > 1)}; set "
                "it to the valid values' bounds, or drop it"
            )
        return found

    valid_range = numbers("valid_range", 2)
    low, high = valid_range or [(numbers(key, 1) or [None])[0] for key in ("valid_min", "valid_max")]
    if low is None and high is None:
        return None, None
    stored = _stored_type(da)
    unsigned = _stored_unsigned(da) or str(da.encoding.get("_Unsigned", "")).strip().lower() == "true"

    def stored_bound(bound: float | None, side: int) -> float | None:
        """``bound`` (``side`` -1 for the least, 1 for the greatest) as the stored numbers are compared with it."""
        if bound is None:
            return None
        if unsigned and stored.kind == "i":
            bound = _as_unsigned(bound, 8 * stored.itemsize)
        with np.errstate(over="ignore", invalid="ignore"):
            if stored.kind in "iu":  # whole numbers: the least (greatest) one within it, and half a step
                return float(np.floor(bound) if side > 0 else np.ceil(bound)) + side * 0.5
            return float(np.asarray(bound, np.float64).astype(stored)) if stored.kind == "f" else float(bound)

    low, high = stored_bound(low, -1), stored_bound(high, 1)
    packing = _packing(da) if "scale_factor" not in da.attrs and "add_offset" not in da.attrs else None
    if packing is None:
        return low, high
    scale, offset = packing  # decoded: the bounds unpacked as the values were
    low, high = (None if b is None else b * scale + offset for b in (low, high))
    if scale < 0:
        low, high = high, low
    if stored.kind == "f":  # the decoding rounded in the data's own type: a little more room
        room = 4 * np.finfo(da.dtype if da.dtype.kind == "f" else np.float64).eps
        low = None if low is None else low - room * (abs(low) + abs(offset))
        high = None if high is None else high + room * (abs(high) + abs(offset))
    return low, high


def _invalid(data: xr.DataArray, bounds: tuple[float | None, float | None]) -> xr.DataArray | None:
    """True where ``data`` lies outside the valid ``bounds`` (:func:`_valid_bounds`), compared in float64; None
    where no bound is stated."""
    low, high = bounds
    masks = [data < np.float64(low)] if low is not None else []
    masks += [data > np.float64(high)] if high is not None else []
    return None if not masks else masks[0] if len(masks) == 1 else masks[0] | masks[1]


def _stored_unsigned(da: xr.DataArray) -> bool:
    """Whether ``da`` holds unsigned integers stored as signed ones, undecoded (CF's ``_Unsigned = "true"``)."""
    return da.dtype.kind == "i" and str(da.attrs.get("_Unsigned", "")).strip().lower() == "true"


def _as_unsigned(marker: float, bits: int) -> float:
    """A missing-data marker of signed storage (int or float, -1 or -1.0) as the unsigned value it stands for."""
    if -(2 ** (bits - 1)) <= marker < 0 and float(marker).is_integer():
        return int(marker) + 2**bits
    return marker


def _numbers(value: Any) -> list[float]:
    """The numbers of an attribute (a scalar or a sequence), each on its own: integers as Python integers
    (exact; NumPy would make [0, 2**64 - 1] floats), the others as floats."""
    items = np.asarray(value).ravel().tolist() if isinstance(value, np.ndarray | np.generic) else value
    numbers: list[float] = []
    for item in items if isinstance(items, list | tuple) else [items]:
        item = item.item() if isinstance(item, np.generic) else item
        whole = isinstance(item, int) and not isinstance(item, bool) and -(2**63) <= item < 2**64
        numbers.append(item if whole else float(item))  # beyond 64 bits, no integer type holds it: a float
    return numbers


def _scale_signs(da: xr.DataArray, others: list[str], band_dim: str | None) -> xr.DataArray | None:
    """For undecoded data stored with a negative scale (the stored numbers fall as the values rise): -1 where the
    scale is negative, else 1, along the dimension its per-band scales run (a ``scale_factor`` or rioxarray's
    ``scales`` of one value per band), or for every slice (one scale); None where no scale is negative."""
    for key in ("scale_factor", "scales"):
        factor = da.attrs.get(key)
        if factor is None or isinstance(factor, str):
            continue
        try:
            scales = np.asarray([1.0 if v is None else v for v in np.asarray(factor, dtype=object).ravel()], float)
        except (TypeError, ValueError):
            continue
        if not (scales < 0).any():
            continue
        if scales.size == 1:
            return xr.DataArray(-1.0)
        named = [band_dim] if band_dim in others else [d for d in others if d.lower() in BAND_NAMES]
        dims = [d for d in named if da.sizes[d] == scales.size]
        if not dims:
            raise InputError(
                f"attribute {key!r} holds {scales.size} scales, some negative ({', '.join(f'{v:g}' for v in scales)}), "
                f"but the data has no band dimension of {scales.size} to apply them along (its dimensions: "
                f"{[str(d) for d in da.dims]}); name it with band_dim=..., or decode the data first "
                "(rioxarray's mask_and_scale=True, xarray's decode_cf=True)"
            )
        return xr.DataArray(np.where(scales < 0, -1.0, 1.0), dims=[dims[0]])
    return None


def _check_north_up(name: str, mapping: xr.DataArray, ydim: str, xdim: str) -> None:
    """Refuse a grid mapping whose ``GeoTransform`` rotates or shears the grid."""
    try:
        terms = [float(v) for v in str(mapping.attrs["GeoTransform"]).split()]
    except (KeyError, ValueError):
        return
    if len(terms) == 6 and (terms[2] != 0 or terms[4] != 0):
        raise InputError(
            f"the grid mapping {name!r} rotates the grid (GeoTransform {mapping.attrs['GeoTransform']!r}), which "
            f"the 1-D coordinates {ydim!r} and {xdim!r} cannot describe; downscale a GeoTIFF of it with "
            "'geosr downscale', or regrid it to a north-up grid first"
        )


def _refit(
    var: xr.DataArray, coarse: tuple[xr.DataArray, xr.DataArray], fine: tuple[np.ndarray, np.ndarray]
) -> xr.DataArray:
    """``var`` (a grid mapping) with its ``GeoTransform`` moved to the fine grid: the stored one with its steps
    divided (``transform * Affine.scale(1 / s)``, exact and in its own orientation) where it describes the
    ``coarse`` (y, x) coordinates, else one made from the ``fine`` (y, x) cell centres."""
    if "GeoTransform" not in var.attrs:
        return var
    var = var.copy()
    try:
        terms = [float(v) for v in str(var.attrs["GeoTransform"]).split()]
    except ValueError:
        terms = []
    (y, x), (fine_y, fine_x) = coarse, fine
    if len(terms) == 6 and _describes(terms[3], terms[5], y) and _describes(terms[0], terms[1], x):
        steps = (terms[1] * (x.size / fine_x.size), terms[5] * (y.size / fine_y.size))  # as georef.output_transform
        var.attrs["GeoTransform"] = " ".join(
            f"{v:.17g}" for v in (terms[0], steps[0], terms[2], terms[3], terms[4], steps[1])
        )
    else:  # none, or one that does not describe the coordinates: made from them
        var.attrs["GeoTransform"] = _geotransform(fine_y, fine_x)
    return var


def _legacy_georef(
    attrs: dict[str, Any], coarse: tuple[xr.DataArray, xr.DataArray], fine: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """``attrs`` with the legacy ``transform`` (an Affine's six or nine terms, which rioxarray reads where no
    ``GeoTransform`` is) and ``res`` (x and y cell sizes) of ``xarray.open_rasterio`` moved to the fine grid, in
    the container they came in: their steps divided where they describe the ``coarse`` (y, x) coordinates (a
    north-up transform, the coordinates' cell sizes), else dropped, rather than kept describing another grid."""
    (y, x), (fine_y, fine_x) = coarse, fine
    factors = (x.size / fine_x.size, y.size / fine_y.size)
    attrs = dict(attrs)

    def like(old: Any, new: list[float]) -> Any:
        if isinstance(old, np.ndarray):
            return np.asarray(new, dtype=old.dtype if old.dtype.kind == "f" else np.float64)
        if type(old) in (list, tuple):
            return type(old)(new)
        return type(old)(*new[:6]) if hasattr(old, "to_gdal") else new[0]  # an Affine itself, or one number

    def terms(key: str) -> list[float] | None:
        if key not in attrs:
            return None
        value = tuple(attrs[key]) if hasattr(attrs[key], "to_gdal") else attrs[key]
        try:
            return [float(v) for v in _numbers(value)]
        except (TypeError, ValueError):  # text: no transform rioxarray reads
            return []

    transform, res = terms("transform"), terms("res")
    if transform is not None:
        a, b, c, d, e, f = (transform + [np.nan] * 6)[:6]
        if len(transform) in (6, 9) and b == 0 and d == 0 and _describes(c, a, x) and _describes(f, e, y):
            attrs["transform"] = like(attrs["transform"], [a * factors[0], b, c, d, e * factors[1], f, *transform[6:]])
        else:
            del attrs["transform"]
    if res is not None:
        steps = [abs(float(x[1] - x[0])), abs(float(y[1] - y[0]))]
        sizes = res * 2 if len(res) == 1 else res
        fits = len(sizes) == 2 and all(np.isclose(abs(r), s, rtol=1e-3) for r, s in zip(sizes, steps, strict=True))
        if fits and (len(res) == 2 or np.isclose(*factors)):
            attrs["res"] = like(attrs["res"], [r * k for r, k in zip(res, factors, strict=False)])
        else:
            del attrs["res"]
    # ACDD's resolution of the grid (a number, or text such as "0.25 degree"), global attributes of a Dataset
    for key, factor in (("geospatial_lat_resolution", factors[1]), ("geospatial_lon_resolution", factors[0])):
        if key in attrs:
            finer = _finer_resolution(attrs[key], factor)
            if finer is None:
                del attrs[key]  # not a resolution geosr can read: dropped rather than left describing the coarse grid
            else:
                attrs[key] = finer
    return attrs


#: A resolution written as text: a number, then a unit without digits: "0.25 degree", "1km", "5e-2 degrees"
_RESOLUTION_TEXT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(\D*)$", re.DOTALL)


def _finer_resolution(value: Any, factor: float) -> Any:
    """An ACDD ``geospatial_*_resolution`` attribute multiplied by ``factor`` (the fine step over the coarse), in
    the form it came in (a number, or text whose leading number changes and whose unit stays); None where it is
    neither, or text with more numbers ("0.25x0.5 degree", "1/4 degree"), which is dropped rather than half
    changed."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value) * factor
    if isinstance(value, str):
        match = _RESOLUTION_TEXT.match(value)
        if match is not None:
            return f"{float(match.group(1)) * factor:.6g}{match.group(2)}"
    return None


def _describes(origin: float, step: float, centres: xr.DataArray) -> bool:
    """Whether cells of ``step`` from the edge ``origin`` are those of the regular cell ``centres`` (either
    orientation), to a thousandth of a step and the rounding of the centres' own floating-point type."""
    raw = np.asarray(centres.values)
    values = raw.astype(np.float64)
    n = values.size
    spacing = (values[-1] - values[0]) / (n - 1)
    eps = np.finfo(raw.dtype).eps if raw.dtype.kind == "f" else 0.0
    tolerance = 1e-3 * abs(spacing) + 4 * eps * float(np.abs(values).max())
    edges = sorted((values[0] - spacing / 2, values[-1] + spacing / 2))
    stored = sorted((origin, origin + n * step))
    return abs(abs(step) - abs(spacing)) * n <= tolerance and all(
        abs(a - b) <= tolerance for a, b in zip(edges, stored, strict=True)
    )


def _grid_mapping(da: xr.DataArray) -> str | None:
    name = da.encoding.get("grid_mapping") or da.attrs.get("grid_mapping")
    if name and name in da.coords:
        return str(name)
    return "spatial_ref" if "spatial_ref" in da.coords else None


def _geotransform(y: np.ndarray, x: np.ndarray) -> str:
    dx, dy = x[1] - x[0], y[1] - y[0]
    return " ".join(f"{v:.17g}" for v in (x[0] - dx / 2, dx, 0.0, y[0] - dy / 2, 0.0, dy))


#: Names (any case) of the dimension that holds a multiband model's bands, unless ``band_dim=`` names it.
BAND_NAMES = ("band", "bands")


def _band_dim(da: xr.DataArray, others: list[str], given: str | None, card: Any) -> str | None:
    """The dimension of ``da`` holding the bands that a multiband model takes together (None for a 1-band
    model, which takes every slice on its own): ``given``, else the one named ``band``. Refuses data
    without one, or with another number of bands than the model takes, rather than taking some other
    dimension (time steps, ensemble members) for bands."""
    if card.in_channels == 1:
        return None
    if given is not None and given not in others:
        raise InputError(
            f"band_dim={given!r} is not a dimension of the data besides the spatial ones (those: {others}); "
            "name the dimension that holds the bands"
        )
    named = [d for d in others if d.lower() in BAND_NAMES]
    if given is None and not named:
        raise InputError(
            f"model {card.name!r} takes {card.in_channels} bands together, but the data has no 'band' dimension "
            f"(its dimensions: {[str(d) for d in da.dims]}); name the dimension that holds the bands with "
            "band_dim=..., or use a 1-band model (applied to each slice)"
        )
    dim = given if given is not None else named[0]
    if da.sizes[dim] != card.in_channels:
        raise ModelError(
            f"model {card.name!r} takes {card.in_channels} bands but dimension {dim!r} has {da.sizes[dim]}; "
            f"select {card.in_channels} of them (da.isel({dim}=[...])) or use a 1-band model (applied to each band)"
        )
    return dim


def _downscale_slices(data: Any, scale: float, loaded: Any, options: dict[str, Any]) -> Any:
    """Downscale a (..., y, x) numpy or dask array into (slices, y_out, x_out).

    A 1-band model runs one slice (numpy) or one chunk of slices (dask) at a time: it treats the
    slices independently, and a long time axis never enters a tile at once. A multiband model
    takes the bands of ``data`` (its last axis before y, x) together, one index of the other axes
    (a time step) at a time, each with its own whole-raster band statistics.
    """
    from geosr.predict import downscale, is_dask

    if loaded.card.in_channels != 1:
        groups = [downscale(data[i], scale, loaded, **options) for i in np.ndindex(data.shape[:-3])]
        if not is_dask(data):
            return np.concatenate(groups)
        import dask.array as dsa

        return dsa.concatenate(groups, axis=0)
    bands = data.reshape((-1, *data.shape[-2:]))
    if not is_dask(bands):
        return np.concatenate([downscale(band, scale, loaded, **options)[None] for band in bands])
    import dask.array as dsa

    bounds = np.cumsum((0, *bands.chunks[0]))
    parts = [downscale(bands[a:b], scale, loaded, **options) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return dsa.concatenate(parts, axis=0)


def _checked_magnitudes(arranged: xr.DataArray, nodata: Any, what: str) -> Any:
    """The data of ``arranged``, whose values beyond float32's range or at its limit (undeclared missing data)
    are refused naming ``what`` and where they lie (``time=... (index 4)``), with xarray's remedies: the core's
    refusal named a band numbered within the slice or the dask chunk it was given, with GDAL's remedies. For
    dask data the check is a task before every chunk's first use, at compute time."""
    from geosr.predict import FLOAT32_MAX, is_dask

    data = arranged.data
    if np.dtype(data.dtype).kind != "f" or np.finfo(data.dtype).max < FLOAT32_MAX:  # integers, float16: in range
        return data
    dims = [str(d) for d in arranged.dims]
    labels = {d: arranged[d].values for d in dims if d in arranged.coords}

    check = functools.partial(_check_magnitudes, nodata=nodata, dims=dims, labels=labels, what=what)
    if not is_dask(data):
        return check(data, (0,) * data.ndim)
    # a module-level function and its arguments, not a closure: the lazy result pickles (joblib, multiprocessing)
    return data.map_blocks(_check_chunk, check, dtype=data.dtype, meta=data._meta)


def _check_magnitudes(
    block: Any, origin: tuple[int, ...], *, nodata: Any, dims: list[str], labels: dict[str, Any], what: str
) -> Any:
    """``block`` (of :func:`_checked_magnitudes`' data, starting at ``origin``), refused if it holds a valid value
    beyond float32's range or at its limit."""
    from geosr.predict import FLOAT32_MAX
    from geosr.stats import unmasked, valid_mask

    values = np.asarray(unmasked(block))
    with np.errstate(invalid="ignore"):
        bad = valid_mask(values, nodata) & (np.abs(values) >= FLOAT32_MAX)
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        at = [int(i) + o for i, o in zip(first, origin, strict=True)]
        where = ", ".join(
            f"{d}={labels[d][i]} (index {i})" if d in labels else f"{d} index {i}"
            for d, i in zip(dims, at, strict=True)
        )
        value = abs(float(values[first]))
        limit = "beyond the range of float32" if value > FLOAT32_MAX else "float32's limit, a usual missing-data marker"
        raise InputError(
            f"{what} holds a value of magnitude {value:.7g} ({limit}) at {where}; if such values mark missing "
            "data, mask them (.where(abs(da) < 1e38)) or declare them (nodata=, _FillValue), else rescale it"
        )
    return block


def _check_chunk(block: Any, check: Callable[[Any, tuple[int, ...]], Any], block_info: Any = None) -> Any:
    """``check`` (of :func:`_checked_magnitudes`) on a dask chunk, told where the chunk lies in the array."""
    location = (block_info or {}).get(0, {}).get("array-location") or [(0, 0)] * block.ndim
    return check(block, tuple(start for start, _ in location))


def _fine_coords(da: xr.DataArray, dims: tuple[str, str], shape: tuple[int, int]) -> dict[str, Any]:
    """The coordinates of ``da`` that do not depend on the spatial ``dims``, and the fine spatial ones."""
    coords: dict[str, Any] = {str(k): c for k, c in da.coords.items() if not set(dims) & set(c.dims)}
    for dim, n_out in zip(dims, shape, strict=True):
        # the coarse cells' bounds variable does not fit the fine grid: its CF link goes with it; the fine centres
        # of the outer cells lie beyond the coarse ones (past 90 degrees for cells centred on a pole), which a
        # valid_range/min/max of the coarse centres would make readers (netCDF4-python, CDO) mask
        attrs = {k: v for k, v in da[dim].attrs.items() if k not in ("bounds", *STALE_RANGES)}
        coords[dim] = (dim, fine_coordinate(np.asarray(da[dim].values, np.float64), n_out), attrs)
    return coords


def _card_of(model: Any) -> Any:
    """The card of a model given as the accessor takes it: a loaded model, a shipped name, a path or None."""
    if hasattr(model, "card"):
        return model.card
    from geosr.models.card import read_card
    from geosr.models.registry import resolve_model

    return read_card(resolve_model(model))


@xr.register_dataarray_accessor("geosr")
class GeosrDataArrayAccessor:
    """``DataArray.geosr``: super-resolution of gridded data."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def downscale(
        self,
        scale: float,
        *,
        model: Any = None,
        device: str = "auto",
        precision: str = "fp32",
        tile_size: int | tuple[int, int] | None = None,
        batch_size: int = 1,
        conserve: bool | None = None,
        ensemble: int = 1,
        calibrate: bool | None = None,
        nodata: float | Sequence[float] | None = None,
        y_dim: str | None = None,
        x_dim: str | None = None,
        band_dim: str | None = None,
    ) -> xr.DataArray:
        """Super-resolve every (y, x) slice by ``scale``.

        Parameters
        ----------
        scale
            Refinement factor (> 1); ``round(n * scale)`` cells along each spatial axis.
        model
            Shipped model name, model file path, loaded model, or None for the default. With a
            dask.distributed cluster, workers load the model file from the same path.
        device, precision, batch_size, conserve, ensemble, calibrate
            As for :func:`geosr.predict.downscale` (an ensemble of 8 needs square cells; each slice,
            such as a time step, gets its own calibration).
        tile_size
            Fine pixels per tile side. By default, for dask-backed data, each fine chunk (the input's
            spatial chunk times the scale) split evenly into tiles of at most 1024; else 1024.
        nodata
            Missing-data value besides NaN, or several (default: rioxarray's nodata, and every ``_FillValue``,
            ``nodata`` and ``missing_value`` of the attributes, or of the encoding when it does not
            scale the stored numbers). Values beyond the CF ``valid_range`` (or ``valid_min``,
            ``valid_max``; in packed units for packed data) are missing too, and for float data without
            a ``_FillValue``, netCDF's default fill (9.96921e36), as netCDF4-python and GDAL read them.
        y_dim, x_dim
            Names of the spatial dimensions when they are not recognised.
        band_dim
            The dimension holding the bands a multiband model takes together (default: the one named
            ``band``); it must have as many as the model's channels. A 1-band model takes every slice on
            its own and ignores it.

        Returns
        -------
        xarray.DataArray
            float32 on the fine grid, same dimension order, NaN where the footprint has no data.
            Lazy when the input is dask-backed, with chunks whose boundaries are the input's chunk
            boundaries on the fine grid.

        Raises
        ------
        geosr.errors.InputError
            Missing or irregular spatial dimensions, or data the model cannot take.
        """
        import geosr
        from geosr.models.files import LoadedModel, load_model
        from geosr.predict import (
            DEFAULT_TILE_SIZE,
            calibration_plan,
            check_ensemble,
            check_numeric,
            conserves,
            is_dask,
            quiet_scale_warning,
            warn_untrained_scale,
        )

        da = self._obj
        scale = check_scale(scale)
        what = f"variable {da.name!r}" if da.name is not None else "the DataArray"
        check_numeric(da.dtype, what)
        kind = not_a_field(da)
        if kind is not None:
            raise InputError(f"{what} is {kind}, not a continuous field; {NOT_A_FIELD_ADVICE}")
        located = geolocation(da)
        if located is not None:  # as a 2-D coordinate of the grid, which the fine grid does not keep
            raise InputError(
                f"{what} holds {located}s (standard_name or units {located}), a coordinate of the grid, not a field: "
                f"super-resolved, a {located} across the antimeridian or a pole would be wrong by degrees; compute "
                f"the fine grid's {located}s from its projection (pyproj.Transformer) instead"
            )
        ydim, xdim = spatial_dims(da, y_dim, x_dim)
        dy, dx = regular_step(da, ydim), regular_step(da, xdim)
        check_ensemble(ensemble, (dx, dy), step_precision(da, xdim) + step_precision(da, ydim))
        mapping = _grid_mapping(da)
        # every grid mapping coordinate that carries a GeoTransform (the one named by grid_mapping, and any other
        # such as rioxarray's spatial_ref beside a file's crs) describes this grid: checked, and moved to the fine one
        transforms = [
            str(k) for k, c in da.coords.items() if "GeoTransform" in c.attrs and not {ydim, xdim} & set(c.dims)
        ]
        for name in dict.fromkeys([*([mapping] if mapping is not None else []), *transforms]):
            _check_north_up(name, da[name], ydim, xdim)
        if 0 in da.shape:
            raise InputError(f"the data has zero size ({dict(da.sizes)}); nothing to downscale")
        loaded = model if isinstance(model, LoadedModel) else load_model(model, "cpu")
        others = [str(d) for d in da.dims if d not in (ydim, xdim)]
        band = _band_dim(da, others, band_dim, loaded.card)
        if band is not None:  # the bands come last before y, x: the model takes them together
            others = [d for d in others if d != band] + [band]
        arranged = da.transpose(*others, ydim, xdim)
        if nodata is None:
            missing = _nodata(da)
        else:
            try:
                missing = _numbers(nodata)
            except (TypeError, ValueError):
                raise InputError(f"nodata must be a number or a list of numbers, got {nodata!r}") from None
        # a float variable's cells never written hold netCDF's default fill, without a _FillValue to say so
        missing += [value for value in _default_fill(da) if value not in missing]
        bounds = _valid_bounds(da)  # CF valid_range (or valid_min/valid_max): the values beyond are missing
        if _stored_unsigned(arranged):
            # undecoded NetCDF-3 bytes (or shorts) of unsigned values, stored signed with _Unsigned = "true" (xarray
            # decodes them unless mask_and_scale=False): read as the unsigned numbers they are, and their markers too
            bits = 8 * arranged.dtype.itemsize
            arranged = arranged.copy(data=arranged.data.view(f"u{arranged.dtype.itemsize}"))
            missing = [_as_unsigned(m, bits) for m in missing]
        # undecoded data stored with a negative scale (a scale_factor, or per band rioxarray's scales): the stored
        # numbers fall as the values rise, and the network is equivariant only to positive scalings; those slices
        # run on the negated numbers, as the command line runs a GeoTIFF band with a negative scale
        # (geosr.io.band_signs), and their output is negated back
        signs = _scale_signs(da, others, band or band_dim)
        # the core masks one value besides NaN; with more (or before a negation, or beside cells beyond the valid
        # range, which no one value marks) they all become NaN here, compared in the data's own type (the float64
        # that masking makes of integers would merge 2**64 - 1 with its neighbours)
        invalid = _invalid(arranged, bounds)
        if invalid is not None or len(missing) > 1 or (missing and signs is not None):
            if missing:
                marked = arranged.isin(markers_in_type(missing, arranged.dtype))
                invalid = marked if invalid is None else invalid | marked
            arranged = arranged.where(~invalid)
            missing = []
        if signs is not None:
            # negated exactly (unsigned and the lowest signed integers do not negate in their own type)
            arranged = arranged if arranged.dtype.kind == "f" else arranged.astype(np.float64)
            arranged = (arranged * signs.astype(arranged.dtype)).transpose(*arranged.dims)
        ny, nx = arranged.shape[-2:]
        ny_out, nx_out = output_shape(ny, nx, scale)
        data = _checked_magnitudes(arranged, missing[0] if missing else None, what)
        # The network runs on the grid as a north-up GeoTIFF stores it (row 0 north, columns west to east),
        # as GDAL (the command line, QGIS) reads every raster, a bottom-up NetCDF included: without a
        # self-ensemble its output depends on the orientation, and the same file must give the same result
        # through every front door. Ascending y (or descending x) is flipped in, and the output back.
        flips = (dy > 0, dx < 0)
        lazy = is_dask(data)
        if lazy:
            out_chunks = (fine_chunks(data.chunks[-2], ny, ny_out), fine_chunks(data.chunks[-1], nx, nx_out))
        if tile_size is None:
            tile_size = (
                (_default_tile(max(out_chunks[0])), _default_tile(max(out_chunks[1]))) if lazy else DEFAULT_TILE_SIZE
            )
        options = {
            "nodata": missing[0] if missing else None,
            "device": device,
            "precision": precision,
            "tile_size": tile_size,
            "batch_size": batch_size,
            "conserve": conserve,
            "ensemble": ensemble,
            "calibrate": calibrate,
            # a global grid's longitudes wrap around: no seam where its last column meets its first
            "periodic": periodic_longitudes(da, xdim, mapping, dx),
        }
        with quiet_scale_warning():  # warned once below, not once per slice
            out = _downscale_slices(mirrored_array(data, flips), scale, loaded, options)
        out = out.reshape((*arranged.shape[:-2], ny_out, nx_out))
        if signs is not None:  # negated back, slice by slice
            along = [d for d in arranged.dims if d in signs.dims]
            shape = [signs.sizes.get(d, 1) for d in arranged.dims]
            out = out * signs.transpose(*along).values.astype(np.float32).reshape(shape)
        out = mirrored_array(out, flips)
        out = out.rechunk((*data.chunks[:-2], *out_chunks)) if lazy else np.ascontiguousarray(out)
        coords = _fine_coords(da, (ydim, xdim), (ny_out, nx_out))
        for name in transforms:
            coords[name] = _refit(da[name], (da[ydim], da[xdim]), (coords[ydim][1], coords[xdim][1]))
        # valid_range/min/max: of packed data they are in packed units (CF 8.1), which the float output is not;
        # of any data they bound the input, not the output, whose detail may overshoot them (precipitation
        # below a valid_min of 0), and readers that apply them (netCDF4-python, CDO) would mask those pixels
        # _Unsigned: the float output holds the unsigned values themselves
        # actual_range: the input's own minimum and maximum, which the output's are not
        dropped = {"_FillValue", "missing_value", "nodata", "_Unsigned", *STALE_RANGES}
        attrs = {k: v for k, v in da.attrs.items() if k not in dropped}
        if "coordinates" in attrs:  # CF's list of auxiliary coordinates: those on the coarse grid are gone
            kept = [name for name in str(attrs["coordinates"]).split() if name in coords]
            attrs["coordinates"] = " ".join(kept)
            if not kept:
                del attrs["coordinates"]
        attrs.update(
            geosr_version=geosr.__version__,
            geosr_model=loaded.card.name,
            geosr_scale=f"{scale:g}",
            geosr_conserve="yes" if conserves(loaded.card, conserve, (ny, nx), scale) else "no",
            geosr_ensemble=str(ensemble),
            geosr_calibrate="no" if calibration_plan(loaded.card, calibrate, 1, (ny, nx), scale) is None else "yes",
            geosr_periodic="yes" if options["periodic"] else "no",  # the columns wrapped around: a global grid
        )
        # the legacy transform and res of xarray.open_rasterio, which rioxarray reads beside the coordinates
        attrs = _legacy_georef(attrs, (da[ydim], da[xdim]), (coords[ydim][1], coords[xdim][1]))
        result = xr.DataArray(out, dims=(*others, ydim, xdim), coords=coords, attrs=attrs, name=da.name)
        result.name = da.name  # an unnamed input stays unnamed: xarray names it after a dask array's graph key
        warn_untrained_scale(loaded.card, scale)  # every check passed; a lazy result has computed nothing yet
        # (a ScaleWarning for the caller, unless the Dataset accessor quietened it to warn once for all)
        result.encoding["_FillValue"] = np.float32(np.nan)
        if mapping is not None and "grid_mapping" not in attrs:  # in both, xarray refuses to write it
            result.encoding["grid_mapping"] = mapping
        return result.transpose(*da.dims)


#: What to do with a variable that is not a continuous field.
NOT_A_FIELD_ADVICE = (
    "regrid categories with nearest neighbour (.interp(method='nearest')) and compute cell measures for the fine grid"
)


def not_a_field(var: xr.DataArray, measure: bool = False) -> str | None:
    """What ``var`` is when it is not a continuous field, in words: categories (CF ``flag_values`` or
    ``flag_masks``, whose in-between values mean nothing) or a cell measure (``standard_name`` cell_area or
    cell_thickness, or named in another variable's ``cell_measures``: a value per cell, which the fine
    cells do not share); None for a field."""
    if "flag_values" in var.attrs or "flag_masks" in var.attrs:
        return "categorical (flag_values)"
    if measure or var.attrs.get("standard_name") in ("cell_area", "cell_thickness"):
        return "a cell measure"
    return None


def periodic_longitudes(da: xr.DataArray, xdim: str, mapping: str | None, step: float) -> bool:
    """Whether ``da``'s columns wrap around (:func:`geosr.io.periodic_columns`, for xarray): its ``xdim`` is a
    longitude (by CF's ``standard_name`` or ``units``, by its name ``lon``/``longitude``, or by a
    ``latitude_longitude`` grid mapping), or a rotated pole's ``grid_longitude`` in degrees, and its cells of
    ``step`` degrees span one full turn (to a quarter of a cell: :func:`geosr.io.full_turn`)."""
    from geosr.io import full_turn

    coord = da[xdim]
    by_mapping = mapping is not None and da[mapping].attrs.get("grid_mapping_name") == "latitude_longitude"
    named = str(xdim).strip().lower() in ("lon", "longitude")
    rotated = coord.attrs.get("standard_name") == "grid_longitude" and str(
        coord.attrs.get("units", "")
    ).strip().lower() in (
        "degrees",
        "degree",
    )
    if not (by_mapping or named or rotated or geolocation(coord) == "longitude"):
        return False
    return full_turn(step * da.sizes[xdim], step)


def geolocation(var: xr.DataArray) -> str | None:
    """What ``var`` is, "latitude" or "longitude", where it is one by CF (its ``standard_name``, else its
    ``units``: degrees_north, degrees_east and their variants), such as the 2-D latitudes of a projected grid
    stored as a data variable (WRF's XLAT, or any file opened with decode_coords=False); None for the others."""
    standard = str(var.attrs.get("standard_name", "")).strip()
    units = str(var.attrs.get("units", "")).strip().lower()
    if standard == "latitude" or units in LATITUDE_UNITS:
        return "latitude"
    if standard == "longitude" or units in LONGITUDE_UNITS:
        return "longitude"
    return None


def _measure_links(text: Any) -> list[tuple[str, str]]:
    """The ``(measure:, variable)`` pairs of a CF ``cell_measures`` attribute ("area: areacella"); none for
    anything but text."""
    return re.findall(r"(\w+:)\s*(\S+)", text) if isinstance(text, str) else []


def _cell_measures(ds: xr.Dataset) -> set[str]:
    """The variables named in the CF ``cell_measures`` attributes of ``ds``."""
    return {name for var in ds.variables.values() for _, name in _measure_links(var.attrs.get("cell_measures"))}


def without_measures(ds: xr.Dataset, dropped: set[str]) -> xr.Dataset:
    """``ds`` without the entries of its CF ``cell_measures`` ("area: areacella") and ``ancillary_variables``
    ("tas_qc tas_sd") attributes that name the ``dropped`` variables (left out of it), and without the
    attributes left empty. Names of other variables (external ones, listed in the global
    ``external_variables``) stay."""
    changed = {}
    for name, var in ds.data_vars.items():
        links = {}
        pairs = _measure_links(var.attrs.get("cell_measures")) if dropped else []
        if any(measure in dropped for _, measure in pairs):
            links["cell_measures"] = " ".join(f"{key} {measure}" for key, measure in pairs if measure not in dropped)
        ancillary = var.attrs.get("ancillary_variables")
        names = ancillary.split() if dropped and isinstance(ancillary, str) else []
        if any(other in dropped for other in names):
            links["ancillary_variables"] = " ".join(other for other in names if other not in dropped)
        if links:
            changed[name] = var.copy(deep=False)
            changed[name].attrs = {k: v for k, v in {**var.attrs, **links}.items() if k not in links or links[k]}
    return ds.assign(changed) if changed else ds


@xr.register_dataset_accessor("geosr")
class GeosrDatasetAccessor:
    """``Dataset.geosr``: super-resolution of every gridded variable."""

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    def downscale(self, scale: float, *, model: Any = None, **options: Any) -> xr.Dataset:
        """Super-resolve every data variable that has both spatial dimensions.

        Parameters
        ----------
        scale
            Refinement factor (> 1).
        model
            A model for every variable (see :meth:`GeosrDataArrayAccessor.downscale`), or a dict
            mapping variable names to models (the others get the default model; a name that is not
            a downscaled variable is refused).
        **options
            Passed on to :meth:`GeosrDataArrayAccessor.downscale` (``device``, ``tile_size``,
            ``conserve``, ``y_dim``, ...).

        Returns
        -------
        xarray.Dataset
            The downscaled variables, the variables without spatial dimensions (such as time
            bounds) unchanged, and the dataset's attributes. Variables with only one spatial
            dimension (such as latitude bounds) are dropped, since they no longer fit the grid, and so are
            the CF ``bounds`` variables on the spatial grid (the vertices of 2-D latitudes and longitudes)
            and its latitudes and longitudes (by ``standard_name`` or ``units``), as its 2-D coordinates are.

        Raises
        ------
        geosr.errors.InputError
            As for :meth:`GeosrDataArrayAccessor.downscale`, and for a ``model`` dict naming a variable
            that is not downscaled (a typo would otherwise give that variable the default model).
        """
        scale = check_scale(scale)  # once, as every variable's would be (and the warning below compares it)
        ds = self._obj
        ydim, xdim = spatial_dims(ds, options.get("y_dim"), options.get("x_dim"))
        spatial = {ydim, xdim}
        # CF cell bounds (the `bounds` of a coordinate, such as the vertices of a rotated grid's 2-D lat/lon) are
        # corners of the coarse cells, not a field: on the spatial grid they are dropped with what they bound
        bounds = {str(v.attrs["bounds"]) for v in ds.variables.values() if isinstance(v.attrs.get("bounds"), str)}
        # categories (flag_values) and cell measures (areacella) on the grid are not fields: dropped, with a warning
        measures = _cell_measures(ds)
        others = {
            str(name): kind
            for name, var in ds.data_vars.items()
            if spatial <= set(var.dims) and (kind := not_a_field(var, str(name) in measures)) is not None
        }
        # latitudes and longitudes on the grid (WRF's XLAT, or 2-D lat/lon opened with decode_coords=False) are
        # coordinates, not fields: dropped as the 2-D coordinates are
        located = {
            str(name): f"{kind}s (a coordinate)"
            for name, var in ds.data_vars.items()
            if spatial <= set(var.dims) and str(name) not in others and (kind := geolocation(var)) is not None
        }
        gridded = [
            str(name)
            for name, var in ds.data_vars.items()
            if spatial <= set(var.dims) and str(name) not in bounds and str(name) not in {*others, *located}
        ]
        if not gridded:
            left_out = {**others, **located}
            left = f" (left out: {', '.join(f'{n!r}, {k}' for n, k in left_out.items())})" if left_out else ""
            raise InputError(f"no data variable of the dataset has both dimensions {ydim!r} and {xdim!r}{left}")
        if others:
            warnings.warn(
                f"left out {'; '.join(f'{n!r}: {k}' for n, k in others.items())}: not continuous fields; "
                f"{NOT_A_FIELD_ADVICE}",
                GeosrWarning,
                stacklevel=2,
            )
        for name, var in ds.variables.items():
            if not spatial & set(var.dims):
                _check_north_up(str(name), var, ydim, xdim)
        if isinstance(model, dict):
            unknown = [str(key) for key in model if key not in gridded]
            if unknown:
                raise InputError(
                    f"model= names {', '.join(repr(k) for k in unknown)}, which the dataset has no gridded variable "
                    f"of (those downscaled: {', '.join(gridded)}); check the variable names"
                )
        from geosr.predict import quiet_scale_warning, untrained_scale_message, warn_untrained_scale

        out: dict[str, xr.DataArray] = {}
        chosen_models: list[Any] = []
        with quiet_scale_warning():  # warned below, once per model, not once per variable
            for name, var in ds.data_vars.items():
                if str(name) in {*bounds, *others, *located} and spatial & set(var.dims):
                    continue
                if spatial <= set(var.dims):
                    chosen = model.get(name) if isinstance(model, dict) else model
                    out[str(name)] = var.geosr.downscale(scale, model=chosen, **options)
                    if all(chosen is not other for other in chosen_models):
                        chosen_models.append(chosen)
                elif not spatial & set(var.dims):
                    out[str(name)] = var
        said = set()
        for card in (_card_of(chosen) for chosen in chosen_models):
            message = untrained_scale_message(card, scale)
            if message is not None and message not in said:  # models alike in name and scales warn alike: once
                said.add(message)
                warn_untrained_scale(card, scale)
        # grid mappings (coordinates or data variables) get the fine grid's GeoTransform, like each variable's
        fine = next(v for v in out.values() if spatial <= set(v.dims))
        grids = ((ds[ydim], ds[xdim]), (fine[ydim].values, fine[xdim].values))
        for name, var in out.items():
            if not spatial & set(var.dims):
                out[name] = _refit(var, *grids)
        kept = {name: _refit(coord, *grids) for name, coord in ds.coords.items() if not spatial & set(coord.dims)}
        attrs = _legacy_georef(dict(ds.attrs), *grids)
        result = xr.Dataset(out, attrs=attrs).assign_coords(kept)
        # no link (cell_measures, ancillary_variables) to a variable left out of it
        result = without_measures(result, {str(name) for name in ds.variables if name not in result.variables})
        unlimited = [d for d in ds.encoding.get("unlimited_dims", ()) if d in result.dims]
        if unlimited:  # a record dimension (time) stays one in a written file, as xarray's own operations keep it
            result.encoding["unlimited_dims"] = set(unlimited)
        return result
