"""Raster files: the only module that touches paths.

Reading is by window (masked, so nodata values, NaN and GDAL masks all become NaN). Writing goes
window by window to a tiled, compressed GeoTIFF under a temporary name in the destination folder,
which is renamed onto the destination only once complete; a Cloud Optimized GeoTIFF is made from
that temporary file with overviews before the rename.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geosr.errors import InputError, OutputExistsError, RasterIOError, first_line
from geosr.tiling import Span, wrapped_pieces


@dataclass
class RasterInfo:
    """What the pipeline needs to know about an input raster, and the metadata to carry over."""

    path: Path
    height: int
    width: int
    count: int
    dtype: str
    crs: Any
    transform: Any
    nodata: float | None
    descriptions: tuple[str | None, ...] = ()
    units: tuple[str | None, ...] = ()
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    colorinterp: tuple[Any, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    band_tags: list[dict[str, str]] = field(default_factory=list)
    # the tags of named metadata domains (GDAL's update_tags(ns=...)), of the raster and of each band
    tag_domains: dict[str, dict[str, str]] = field(default_factory=dict)
    band_tag_domains: list[dict[str, dict[str, str]]] = field(default_factory=list)
    gcps: list[Any] = field(default_factory=list)  # ground control points, where they are the georeferencing
    gcp_crs: Any = None
    rpcs: Any = None  # rational polynomial coefficients beside a transform (rasterio's RPC), carried to the fine grid
    georeferenced: bool = True  # False: no transform or GCPs (GDAL's default transform, pixel space; a CRS kept)


def _gdal_name(name: str) -> bool:
    """True for names GDAL resolves itself: ``/vsi...`` paths and ``DRIVER:...`` subdatasets."""
    return name.startswith("/vsi") or re.match(r"^[A-Za-z][A-Za-z0-9_]+:", name) is not None


def _missing_subdataset(name: str) -> str | None:
    """For a subdataset name (``NETCDF:"file.nc":var``) whose file exists but that GDAL cannot open, what the
    file holds instead, in one line; else None. GDAL says 'No such file or directory' of an existing file."""
    import rasterio

    match = re.match(r'^([A-Za-z][A-Za-z0-9_]+):"?(.+?)"?:([^:"]+)$', name)
    if match is None or not Path(match.group(2)).is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(match.group(2)) as whole:
                subdatasets, bands = list(whole.subdatasets), whole.count
    except Exception:  # noqa: BLE001 - not a file GDAL reads either: the general message says so
        return None
    if not subdatasets:
        if not bands:
            return None
        return f"'{match.group(2)}' has no subdataset {match.group(3)!r}: it holds one raster; pass the file itself"
    names = ", ".join(sub.rsplit(":", 1)[-1] for sub in subdatasets)
    return (
        f"'{match.group(2)}' has no subdataset {match.group(3)!r} (its subdatasets: {names}); pass one of them, "
        f"for example '{subdatasets[0]}'"
    )


def _open(name: str | Path) -> Any:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    # a GDAL name is passed on as given: a Path would fold '/vsizip//abs/a.zip' into a relative name
    path = Path(name)
    if not path.exists() and not _gdal_name(str(name)):
        raise InputError(f"input file '{path}' does not exist; check the path")
    if path.is_dir() and not (path / ".zarray").exists() and not (path / ".zgroup").exists():
        raise InputError(f"input '{path}' is a folder, not a raster; pass a raster file such as a GeoTIFF")
    try:
        with warnings.catch_warnings():
            # A raster without georeferencing is still a raster; the warning would break the
            # one-line error report of the command line.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(str(name))
    except RasterioIOError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unrecognised format"
        missing = _missing_subdataset(str(name))
        if missing is not None:
            raise InputError(missing) from None
        raise InputError(
            f"'{path}' is not a raster GDAL can read ({reason}); pass a GeoTIFF or another GDAL raster"
        ) from None


@contextlib.contextmanager
def open_raster(path: str | Path, bands: Sequence[int] | None = None) -> Iterator[Any]:
    """Open a raster for reading, turning GDAL's errors into one clear :class:`InputError`; with
    ``bands`` (1-based), seen through those bands only, in that order (:class:`BandSubset`)."""
    dataset = _open(path)
    try:
        yield dataset if bands is None else BandSubset(dataset, bands)
    finally:
        dataset.close()


class BandSubset:
    """A rasterio dataset seen through some of its bands, in a given order: ``count``, the per-band
    metadata, ``tags(i)`` and ``read`` follow the chosen bands; everything else is the dataset's."""

    def __init__(self, dataset: Any, bands: Sequence[int]) -> None:
        chosen = [int(b) for b in bands]
        if dataset.count == 0:
            raster_info(dataset)  # a container of subdatasets: says which and how to pick one
        if not chosen:
            raise InputError("no band chosen; name at least one (for example --bands 1)")
        if len(set(chosen)) != len(chosen):
            raise InputError(f"bands {','.join(map(str, chosen))} name a band twice; give each once")
        wrong = [b for b in chosen if not 1 <= b <= dataset.count]
        if wrong:
            raise InputError(
                f"'{dataset.name}' has {dataset.count} band(s); there is no band {wrong[0]} (bands count from 1)"
            )
        self._dataset, self._bands = dataset, chosen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)

    def _pick(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[b - 1] for b in self._bands)

    count = property(lambda self: len(self._bands))
    band_numbers = property(lambda self: tuple(self._bands))  # the raster's numbers of the chosen bands
    dtypes = property(lambda self: self._pick(self._dataset.dtypes))
    colorinterp = property(lambda self: self._pick(self._dataset.colorinterp))
    descriptions = property(lambda self: self._pick(self._dataset.descriptions))
    units = property(lambda self: self._pick(self._dataset.units))
    scales = property(lambda self: self._pick(self._dataset.scales))
    offsets = property(lambda self: self._pick(self._dataset.offsets))
    nodatavals = property(lambda self: self._pick(self._dataset.nodatavals))
    mask_flag_enums = property(lambda self: self._pick(self._dataset.mask_flag_enums))
    nodata = property(lambda self: self.nodatavals[0])

    def tags(self, bidx: int = 0, **kwargs: Any) -> dict[str, str]:
        return self._dataset.tags(self._bands[bidx - 1] if bidx else 0, **kwargs)

    def tag_namespaces(self, bidx: int = 0) -> list[str]:
        return self._dataset.tag_namespaces(self._bands[bidx - 1] if bidx else 0)

    def read(self, indexes: int | Sequence[int] | None = None, **kwargs: Any) -> Any:
        if indexes is None:
            return self._dataset.read(self._bands, **kwargs)
        if isinstance(indexes, int):
            return self._dataset.read(self._bands[indexes - 1], **kwargs)
        return self._dataset.read([self._bands[i - 1] for i in indexes], **kwargs)


def raster_info(dataset: Any) -> RasterInfo:
    """Shape, georeferencing and metadata of an open rasterio dataset."""
    if dataset.count == 0 and dataset.subdatasets:
        names = ", ".join(sub.rsplit(":", 1)[-1] for sub in dataset.subdatasets)
        # --variable reads NetCDF and Zarr only: offered for a container of another kind (HDF5, GeoPackage), it
        # was then refused
        grid = grid_format(Path(str(dataset.name))) is not None
        variable = "pass --variable NAME to write NetCDF or Zarr, or " if grid else "pass "
        raise InputError(
            f"'{dataset.name}' holds {len(dataset.subdatasets)} subdatasets ({names}) but no band of its own; "
            f"{variable}one subdataset as INPUT for a GeoTIFF, for example '{dataset.subdatasets[0]}'"
        )
    if dataset.width == 0 or dataset.height == 0 or dataset.count == 0:
        raise InputError(
            f"'{dataset.name}' has zero size ({dataset.count} bands of {dataset.height} x {dataset.width} "
            "pixels); nothing to downscale"
        )
    _check_bands(dataset)
    gcps, gcp_crs = dataset.gcps
    # GDAL's default transform (identity, when the file stores none) is no placement, whether or not the file
    # declares a CRS; an identity transform the file stores is one (pixel space, an engineering CRS)
    stored = not dataset.transform.is_identity or _stores_geotransform(dataset)
    by_gcps = bool(gcps) and not stored  # GCPs, not a transform, place the raster
    placed = stored or bool(gcps)
    if not placed and dataset.rpcs is not None:
        raise InputError(
            f"'{dataset.name}' is georeferenced by RPCs only, which geosr cannot carry to a finer grid; "
            "orthorectify it first (gdalwarp -rpc)"
        )
    if not placed and dataset.tags(ns="GEOLOCATION"):
        raise InputError(
            f"'{dataset.name}' is placed only by geolocation arrays (a curvilinear grid's 2-D longitudes and "
            "latitudes), which geosr cannot carry to a finer grid: its output would have no georeferencing; "
            "warp it to a regular grid first (gdalwarp -geoloc -t_srs EPSG:4326 IN OUT.tif)"
        )
    return RasterInfo(
        path=Path(dataset.name),
        height=dataset.height,
        width=dataset.width,
        count=dataset.count,
        dtype=str(np.result_type(*dataset.dtypes)),
        crs=dataset.crs,
        transform=dataset.transform,
        # GDAL's dataset nodata is band 1's: where band 1 has none, the first band's that has one
        nodata=next((value for value in _nodatavals(dataset) if value is not None), None),
        descriptions=tuple(dataset.descriptions),
        units=tuple(dataset.units),
        scales=tuple(dataset.scales),
        offsets=tuple(dataset.offsets),
        colorinterp=tuple(dataset.colorinterp),
        tags=dict(dataset.tags()),
        band_tags=[_carried_tags(dataset.tags(i)) for i in range(1, dataset.count + 1)],
        tag_domains=_custom_domains(dataset),
        band_tag_domains=[_custom_domains(dataset, i) for i in range(1, dataset.count + 1)],
        gcps=list(gcps) if by_gcps else [],
        gcp_crs=gcp_crs if by_gcps else None,
        rpcs=dataset.rpcs,
        georeferenced=placed,
    )


def _nodatavals(dataset: Any) -> list[float | None]:
    """Each band's nodata as GDAL gives it as a double. rasterio reports None for an Int64 or UInt64 nodata that
    the double rounds beyond the type (2**64 - 1 and 2**63 - 1 round to 2**64 and 2**63), yet GDAL masks the
    band by it: read from the VRT that describes the dataset (which states it exactly), it is not lost, so the
    output keeps it (float32: its nearest float) and --keep-dtype refuses it in words that are true."""
    from rasterio.enums import MaskFlags

    values = list(dataset.nodatavals)
    lost = [
        i
        for i, (value, dtype, flags) in enumerate(zip(values, dataset.dtypes, dataset.mask_flag_enums, strict=True))
        if value is None and dtype in ("int64", "uint64") and MaskFlags.nodata in flags
    ]
    if lost:
        stated = _vrt_nodata(dataset)
        numbers = getattr(dataset, "band_numbers", range(1, dataset.count + 1))  # the raster's, under --bands
        for i in lost:
            value = stated.get(numbers[i])
            info = np.iinfo(dataset.dtypes[i])
            if value is not None and info.min <= value <= info.max:  # GDAL masks by a nodata its type holds only
                values[i] = float(value)
    return values


def _vrt_of(dataset: Any) -> Any:
    """The XML root of a VRT copy of ``dataset`` (GDAL describes the raster's metadata there exactly)."""
    import xml.etree.ElementTree as ET

    import rasterio.shutil
    from rasterio.io import MemoryFile

    with MemoryFile(ext=".vrt") as vrt:
        rasterio.shutil.copy(getattr(dataset, "_dataset", dataset), vrt.name, driver="VRT")
        return ET.fromstring(vrt.read())


def _stores_geotransform(dataset: Any) -> bool:
    """Whether GDAL found a geotransform in the file: rasterio gives the identity both for none and for a stored
    identity (pixel space written on purpose), but a VRT copy states a stored one."""
    try:
        return _vrt_of(dataset).find("GeoTransform") is not None
    except Exception:  # noqa: BLE001 - a driver GDAL cannot describe as a VRT: no placement, as before
        return False


def _vrt_nodata(dataset: Any) -> dict[int, int]:
    """The integer nodata values a VRT copy of ``dataset`` states, by band number (GDAL writes them exactly)."""
    stated: dict[int, int] = {}
    try:
        root = _vrt_of(dataset)
        for band in root.iter("VRTRasterBand"):
            with contextlib.suppress(TypeError, ValueError):
                stated[int(band.get("band", ""))] = int(str(band.findtext("NoDataValue")).strip())
    except Exception:  # noqa: BLE001 - a driver GDAL cannot describe as a VRT: the nodata stays unknown, as before
        return {}
    return stated


#: GDAL's metadata domains that describe how a file is stored or read (its structure, subdatasets, the
#: georeferencing carried otherwise, a colour profile, TIFF and EXIF internals), not what its values are
STRUCTURAL_DOMAINS = frozenset(
    {
        "IMAGE_STRUCTURE",
        "DERIVED_SUBDATASETS",
        "SUBDATASETS",
        "RPC",
        "GEOLOCATION",
        "IMAGERY",
        "COLOR_PROFILE",
        "TIFF",
        "EXIF",
    }
)

#: The drivers whose other named domains are the ones a user or program set (other drivers, such as ENVI's or
#: NITF's, present their header fields as domains: the input's sizes and layout, false of the output)
CUSTOM_DOMAIN_DRIVERS = ("GTiff", "COG", "VRT")


def _custom_domains(dataset: Any, bidx: int = 0) -> dict[str, dict[str, str]]:
    """The tags of the named metadata domains of ``dataset`` (band ``bidx``, or the raster for 0) that a user
    or program set (``update_tags(ns="MYDOMAIN")``) in a GeoTIFF or VRT, without GDAL's
    :data:`STRUCTURAL_DOMAINS` and its ``xml:`` and ``json:`` ones; carried to a GeoTIFF output as its default
    domain's tags are (GDAL's COG driver keeps only the default domain of a ``--cog`` output)."""
    if getattr(dataset, "driver", None) not in CUSTOM_DOMAIN_DRIVERS:
        return {}
    try:
        names = dataset.tag_namespaces(bidx) or []
    except Exception:  # noqa: BLE001 - a rasterio or driver without the list: the default domain only, as before
        return {}
    domains = {}
    for name in names:
        if not name or name.upper() in STRUCTURAL_DOMAINS or name.lower().startswith(("xml:", "json:")):
            continue
        with contextlib.suppress(Exception):
            tags = dict(dataset.tags(bidx, ns=name))
            if tags:
                domains[name] = tags
    return domains


def _carried_tags(tags: dict[str, str]) -> dict[str, str]:
    """A band's tags without GDAL's statistics (``STATISTICS_*``), which describe the input's values."""
    return {k: v for k, v in tags.items() if not k.upper().startswith("STATISTICS_")}


def _real_numbers(dtype: str) -> bool:
    """Whether GDAL's data type ``dtype`` (as rasterio names it) holds real numbers: not complex ones, among
    them GDAL's complex integers (``complex_int16``), which NumPy has no type for."""
    try:
        return np.dtype(dtype).kind in "iuf"
    except TypeError:
        return False


def _check_bands(dataset: Any) -> None:
    """Refuse bands whose values are not quantities: complex numbers, palette indices, alpha masks."""
    from rasterio.enums import ColorInterp

    every = getattr(dataset, "_dataset", dataset)  # all the raster's bands, under --bands too
    numbers = getattr(dataset, "band_numbers", range(1, dataset.count + 1))  # the raster's, under --bands
    alphas = [b for b, c in enumerate(every.colorinterp, 1) if c == ColorInterp.alpha]
    # GDAL reads an alpha band as the other bands' mask only when it is Byte or UInt16 (a per-dataset alpha
    # mask); one of another type would leave its transparent pixels as data once --bands leaves it out
    masking = not alphas or all(_alpha_masks(every, b) for b in range(1, every.count + 1) if b not in alphas)
    for i, dtype, interp in zip(numbers, dataset.dtypes, dataset.colorinterp, strict=True):
        kind = categorical(every.tags(i))
        if kind is not None:
            raise InputError(
                f"band {i} of '{dataset.name}' is categorical ({kind}): its values are classes, and values between "
                "them mean nothing; regrid it with nearest neighbour instead (gdalwarp -r near -tr XRES YRES)"
            )
        if not _real_numbers(dtype):
            raise InputError(
                f"band {i} of '{dataset.name}' holds {dtype} values, not real numbers; write its real part, "
                "amplitude or phase to a raster of its own first"
            )
        if interp == ColorInterp.palette:
            raise InputError(
                f"band {i} of '{dataset.name}' is a palette band: its values index a colour table, which cannot "
                "be super-resolved; expand it to RGB first (gdal_translate -expand rgb)"
            )
        if interp == ColorInterp.alpha:
            others = [str(b) for b, c in enumerate(every.colorinterp, 1) if c != ColorInterp.alpha]
            # 'pass --bands N,N': the QGIS tool says it as its Bands parameter
            leave = f"pass --bands {','.join(others)} to leave it out (its transparent pixels become nodata), or "
            leave = leave if others and masking else ""
            raise InputError(
                f"band {i} of '{dataset.name}' is an alpha band (a transparency mask, not data); {leave}turn it "
                "into nodata first (gdalwarp -dstnodata VALUE, or gdal_translate -b 1 ... -mask none to drop it)"
            )
    if not masking:
        band = alphas[0]
        raise InputError(
            f"band {band} of '{dataset.name}' is an alpha band ({every.dtypes[band - 1]}) that GDAL does not read as "
            "the other bands' mask (it does for a Byte or UInt16 alpha, on bands without a nodata value), so its "
            "transparent pixels would become data; turn them into nodata first (gdalwarp -dstnodata VALUE)"
        )


def categorical(tags: dict[str, str]) -> str | None:
    """What makes a band of these metadata a set of classes, in words, or None: CF's ``flag_values`` or
    ``flag_masks`` (a NetCDF variable read through GDAL, as the xarray accessor refuses it) or a thematic layer
    (``LAYER_TYPE=thematic``, ERDAS Imagine and KEA)."""
    for key in ("flag_values", "flag_masks"):
        if key in tags:
            return f"{key} {tags[key]}"
    if str(tags.get("LAYER_TYPE", "")).strip().lower() == "thematic":
        return "LAYER_TYPE thematic; if its values are quantities, set the band's LAYER_TYPE to athematic first"
    return None


def _alpha_masks(dataset: Any, band: int) -> bool:
    """Whether GDAL masks ``band`` of ``dataset`` by the raster's alpha band."""
    from rasterio.enums import MaskFlags

    return MaskFlags.alpha in dataset.mask_flag_enums[band - 1]


def north_up_flips(info: RasterInfo) -> tuple[bool, bool]:
    """Whether a raster's rows run south to north (a positive y pixel size) and its columns east to west
    (a negative x pixel size): such a raster is run north-up, as GDAL reads a bottom-up NetCDF and as
    the accessor runs ascending latitudes, so that the result does not depend on the storage order.
    Rotated, ground-control-point and ungeoreferenced rasters (pixel space) run as stored."""
    t = info.transform
    if not info.georeferenced or info.gcps or t.b != 0 or t.d != 0:
        return False, False
    return t.e > 0, t.a < 0


#: How close to one full turn a geographic raster's width must be for its columns to wrap around, in pixels: a
#: global grid whose pixel size is stored rounded (0.0083333 degrees for 30 arc-seconds: 43200 of them span
#: 359.99856 degrees, 0.17 of a pixel short) wraps; one a column short or long does not
FULL_TURN_PIXELS = 0.25


def full_turn(width: float, step: float, units_per_turn: float = 360.0) -> bool:
    """Whether ``width`` (the raster's extent along its columns, in its CRS's angular units) of columns of
    ``step`` is one full turn of longitude, to :data:`FULL_TURN_PIXELS` of a column: the last column then
    neighbours the first."""
    return abs(abs(width) - units_per_turn) <= FULL_TURN_PIXELS * abs(step)


def periodic_columns(info: RasterInfo) -> bool:
    """Whether a raster's columns wrap around: a north-up (or south-up, east-to-west) grid in a geographic CRS
    whose columns span 360 degrees of longitude, to a quarter of a column (a global climate grid, -180 to 180
    or 0 to 360), so
    that its last column neighbours its first and the output must not have a seam there; also one without a
    CRS whose netCDF metadata says its columns are longitudes (:func:`_netcdf_longitudes`). Rotated,
    ground-control-point and projected rasters never do."""
    t, crs = info.transform, info.crs
    if not info.georeferenced or info.gcps or t.b != 0 or t.d != 0:
        return False
    if crs is None:  # GDAL's reading of a NetCDF without a grid mapping: its longitude says so in the metadata
        return _netcdf_longitudes(info.tags) and full_turn(t.a * info.width, t.a)
    if not crs.is_geographic:
        return False
    try:  # degrees for nearly every geographic CRS; grads (EPSG:4807) or radians turn at other numbers
        radians = float(crs.units_factor[1])
        per_turn = 2 * math.pi / radians if radians > 0 else 360.0
    except Exception:  # noqa: BLE001 - a CRS whose unit rasterio cannot tell: degrees, as most are
        per_turn = 360.0
    return full_turn(t.a * info.width, t.a, per_turn)


#: CF's units of latitude and of longitude (any case): of a NetCDF's coordinates (the accessor), and as GDAL's
#: netCDF driver lists them in a raster's metadata (``lon#units``)
LATITUDE_UNITS = ("degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn")
LONGITUDE_UNITS = ("degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese")


def _netcdf_longitudes(tags: dict[str, str]) -> bool:
    """Whether a raster without a CRS has longitudes for columns by its netCDF metadata, as GDAL's netCDF driver
    reads a file without a grid mapping (``lon#units=degrees_east``, ``lon#standard_name=longitude``), and as
    ``gdal_translate`` carries it into a GeoTIFF: the accessor then calls the same grid global (a ``lon`` axis),
    and both doors must wrap it alike."""
    for key, value in tags.items():
        name, _, attribute = key.rpartition("#")
        text = str(value).strip().lower()
        if name and attribute == "units" and text in LONGITUDE_UNITS:
            return True
        if name and attribute == "standard_name" and text == "longitude":
            return True
    return False


def mirrored(span: Span, size: int, flip: bool) -> Span:
    """``span`` of an axis of ``size`` counted from the other end where ``flip``."""
    return Span(size - span.stop, size - span.start) if flip else span


def mirrored_array(data: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    """A (band, y, x) array with its rows (columns) reversed where ``flips`` (:func:`north_up_flips`) says:
    stored order to north-up, and back. A view."""
    return data[..., :: -1 if flips[0] else 1, :: -1 if flips[1] else 1]


def read_window(
    dataset: Any, rows: Span, cols: Span, flips: tuple[bool, bool] = (False, False), oriented: bool = True
) -> np.ndarray:
    """Read a (band, y, x) window as float64 with NaN wherever the raster holds no data; with ``flips``
    (:func:`north_up_flips`), rows and columns are counted from the other edge and read mirrored. With
    ``oriented`` (the default, as the network runs them), a band with a negative scale is negated
    (:func:`band_signs`); without, the stored numbers are returned as they are. Columns beyond the raster's
    edges (an unwrapped span of a periodic plan, :func:`periodic_columns`) are read from the other side."""
    from rasterio.windows import Window

    if cols.start < 0 or cols.stop > dataset.width:
        pieces = wrapped_pieces(cols, dataset.width)
        return np.concatenate([read_window(dataset, rows, piece, flips, oriented) for piece in pieces], axis=-1)
    rows, cols = mirrored(rows, dataset.height, flips[0]), mirrored(cols, dataset.width, flips[1])

    from rasterio.errors import RasterioIOError

    window = Window(cols.start, rows.start, cols.size, rows.size)
    try:
        if len(set(dataset.dtypes)) == 1:
            parts = [dataset.read(window=window, masked=True)]
        else:  # bands of different types are read one by one
            parts = [dataset.read(i, window=window, masked=True)[None] for i in range(1, dataset.count + 1)]
    except RasterioIOError as exc:
        # rasterio says only 'Read failed. See previous exception for details.': GDAL's reason is its cause
        reason = first_line(exc.__cause__ or exc)
        advice = "the file may be truncated or damaged: check it with gdalinfo -checksum, and copy or download it again"
        if "No such file or directory" in reason:  # a VRT's source, moved or deleted: nothing to download again
            advice = "a file it reads from is missing: check the paths of its sources (a VRT's SourceFilename)"
        where = f"rows {rows.start}-{rows.stop} of '{dataset.name}'"
        raise RasterIOError(f"cannot read {where} ({reason}); {advice}") from None
    stored = [np.ma.getdata(p) for p in parts]
    data = np.concatenate([p.astype(np.float64) for p in stored])
    mask = np.concatenate([np.ma.getmaskarray(p) for p in parts])
    for band, marker in [*_nodata_beside_mask(dataset), *_missing_values(dataset)]:
        # GDAL masks by a file's mask (internal, .msk) and then ignores the band's nodata: both are missing data
        values = stored[0][band] if len(stored) == 1 else stored[band][0]
        mask[band] |= values == marker
    data[mask | ~np.isfinite(data)] = np.nan
    signs = band_signs(dataset) if oriented else np.ones(1)
    if (signs < 0).any():  # the values' own orientation: a band stored with a negative scale runs negated
        data *= signs[:, None, None]
    return np.ascontiguousarray(mirrored_array(data, flips))


def _nodata_beside_mask(dataset: Any) -> list[tuple[int, Any]]:
    """(band index, nodata in the band's own type) for each band whose mask is not its nodata (a per-dataset
    mask, internal or a .msk file) though it states one: GDAL's mask then leaves those cells valid. Found once
    per open dataset (each window read asks)."""
    # the object's own attribute (a --bands view would otherwise get its dataset's through __getattr__)
    cached = getattr(dataset, "__dict__", {}).get("_geosr_beside_mask")
    if cached is not None:
        return cached
    from rasterio.enums import MaskFlags

    found: list[tuple[int, Any]] = []
    beside = [MaskFlags.nodata not in flags for flags in dataset.mask_flag_enums]
    if any(beside):
        values: list[Any] = list(dataset.nodatavals)
        if any(b and dtype in ("int64", "uint64") for b, dtype in zip(beside, dataset.dtypes, strict=True)):
            # a 64-bit integer nodata as a double is not the band's (2**62 + 1 reads 2**62): the VRT's is exact
            stated = _vrt_nodata(dataset)
            numbers = getattr(dataset, "band_numbers", range(1, dataset.count + 1))  # the raster's, under --bands
            for i, dtype in enumerate(dataset.dtypes):
                if dtype in ("int64", "uint64") and numbers[i] in stated:
                    values[i] = stated[numbers[i]]
        for i, (value, dtype) in enumerate(zip(values, dataset.dtypes, strict=True)):
            # a NaN nodata: those cells are missing anyway
            if beside[i] and value is not None and not (isinstance(value, float) and np.isnan(value)):
                found += [(i, marker) for marker in markers_in_type([value], np.dtype(dtype))]
    with contextlib.suppress(AttributeError):
        dataset._geosr_beside_mask = found
    return found


def _missing_values(dataset: Any) -> list[tuple[int, Any]]:
    """(band index, marker in the band's own type) for each CF ``missing_value`` of a band (a NetCDF variable read
    through GDAL, or a GeoTIFF that gdal_translate made of one) that is not the band's nodata: GDAL masks only the
    ``_FillValue``, so cells holding the other marker read as data (the accessor and ``--variable`` mask both).
    In stored units, as the markers are. Found once per open dataset."""
    cached = getattr(dataset, "__dict__", {}).get("_geosr_missing_values")
    if cached is not None:
        return cached
    every = getattr(dataset, "_dataset", dataset)
    numbers = getattr(dataset, "band_numbers", range(1, dataset.count + 1))  # the raster's, under --bands
    found: list[tuple[int, Any]] = []
    for i, (number, dtype, nodata) in enumerate(zip(numbers, dataset.dtypes, dataset.nodatavals, strict=True)):
        text = every.tags(number).get("missing_value")
        if text is None:
            continue
        try:  # GDAL writes an attribute of several values as {a,b}
            values = [float(v) for v in str(text).strip().strip("{}").split(",") if v.strip()]
        except ValueError:
            continue
        kept = [v for v in markers_in_type(values, np.dtype(dtype)) if nodata is None or v != nodata]
        found += [(i, marker) for marker in kept if not np.isnan(marker)]
    with contextlib.suppress(AttributeError):
        dataset._geosr_missing_values = found
    return found


def markers_in_type(values: list[float], dtype: np.dtype) -> np.ndarray:
    """Missing-data ``values`` as an array of ``dtype`` to compare data of that type with: in its precision for a
    float type (as the core compares its one value); for an integer type exactly, those it cannot hold left out."""
    if dtype.kind == "f":
        with np.errstate(over="ignore"):  # beyond the type's range: infinite, which is missing anyway
            return np.asarray(values, dtype=np.float64).astype(dtype)
    if dtype.kind not in "iu":
        return np.asarray(values, dtype=np.float64)
    info = np.iinfo(dtype)
    whole = [int(v) for v in values if (isinstance(v, int) or (np.isfinite(v) and v == int(v)))]
    whole = [v for v in whole if info.min <= v <= info.max]
    return np.asarray(whole, dtype=dtype)


def band_signs(dataset: Any) -> np.ndarray:
    """Per band, -1 where the band's GDAL scale is negative (the stored numbers rise as the values fall), else 1.

    The network's output is equivariant only to positive scalings (``f(a*x + b) = a*f(x) + b`` for ``a > 0``):
    a band stored with a negative scale is run on its negated stored numbers (:func:`read_window` negates them)
    and its output negated back before it is written, so that it gets the result of its values, as through the
    accessor on the decoded grid, the NetCDF door or any reader that applies the scale."""
    scales = getattr(dataset, "scales", None) or (1.0,) * dataset.count
    return np.where(np.asarray([s if s is not None else 1.0 for s in scales], dtype=np.float64) < 0, -1.0, 1.0)


def iter_blocks(dataset: Any, block_rows: int = 512) -> Iterator[np.ndarray]:
    """Read the whole raster's stored numbers as consecutive strips of ``block_rows`` rows (``geosr evaluate``
    and ``geosr train`` apply the scales and offsets themselves; :func:`iter_windows` reads for the network)."""
    for start in range(0, dataset.height, block_rows):
        rows = Span(start, min(start + block_rows, dataset.height))
        yield read_window(dataset, rows, Span(0, dataset.width), oriented=False)


#: Pixels per band that :func:`iter_windows` reads at once (8 MiB of float64 a band).
WINDOW_PIXELS = 512 * 2048


def iter_windows(dataset: Any, max_pixels: int | None = None, oriented: bool = True) -> Iterator[np.ndarray]:
    """Read the whole raster as windows of at most ``max_pixels`` (default :data:`WINDOW_PIXELS`) pixels per
    band, in no particular shape: memory follows ``max_pixels`` however wide the raster (:func:`iter_blocks`
    reads strips of its full width: 16 MiB a band for every 1000 columns). Across, a window spans whole
    blocks of the file's storage (a tiled GeoTIFF's tiles; a striped file's whole rows, then fewer of them)."""
    height, width = dataset.height, dataset.width
    max_pixels = max_pixels or WINDOW_PIXELS
    try:
        block_w = int(dataset.block_shapes[0][1])
    except (AttributeError, IndexError, TypeError, ValueError):
        block_w = width
    block_w = max(1, min(block_w, width))
    cols = max(block_w, min(width, max_pixels // 512) // block_w * block_w)
    rows = max(1, min(512, max_pixels // cols))
    for top in range(0, height, rows):
        for left in range(0, width, cols):
            window = (Span(top, min(top + rows, height)), Span(left, min(left + cols, width)))
            yield read_window(dataset, *window, oriented=oriented)


#: GDAL's virtual file systems that read a file inside an archive or a compressed file
ARCHIVE_PREFIXES = ("/vsizip/", "/vsitar/", "/vsigzip/", "/vsi7z/", "/vsirar/")


def archive_of(name: str) -> Path | None:
    """The archive (or compressed file) on disk that the GDAL name ``name`` reads from, if any:
    ``/vsizip/data.zip/dem.tif`` -> ``data.zip``, ``/vsizip//abs/data.zip/dem.tif`` (or the same with the
    double slash collapsed, as :class:`~pathlib.Path` writes it) -> ``/abs/data.zip``, ``/vsigzip/dem.tif.gz``
    -> ``dem.tif.gz``, ``/vsizip/{a.zip}/dem.tif`` -> ``a.zip``; nested archives name the outermost."""
    prefix = next((p for p in ARCHIVE_PREFIXES if name.startswith(p)), None)
    if prefix is None:
        return None
    rest = name[len(prefix) :]
    if rest.startswith("{") and "}" in rest:  # GDAL's braces around an archive name holding a '.zip/'
        rest = rest[1 : rest.index("}")]
    inner = "/" + rest.lstrip("/")  # an archive inside another GDAL file system: /vsizip//vsitar/a.tar/b.zip/...
    if inner.startswith("/vsi"):
        return archive_of(inner)
    parts = Path(rest).parts
    for end in range(len(parts), 0, -1):  # the longest leading part that is a file: the archive
        for candidate in (Path(*parts[:end]), Path("/", *parts[:end])):
            if candidate.is_file():
                return candidate
    return None


def files_read(dataset: Any) -> list[str]:
    """The files GDAL reads for ``dataset`` (its ``files``: a VRT's sources, side files), through VRTs of
    VRTs: GDAL lists a VRT's own sources, not those of a VRT among them."""
    import rasterio

    listed = list(dataset.files or [])
    opened = {str(dataset.name)}
    pending = [f for f in listed if f.lower().endswith(".vrt")]
    while pending:
        name = pending.pop()
        if name in opened:
            continue
        opened.add(name)
        try:
            with rasterio.open(name) as inner:
                more = list(inner.files or [])
        except (rasterio.errors.RasterioError, OSError):
            continue  # what GDAL cannot open here, it does not read for the input either
        for file in more:
            if file not in listed:
                listed.append(file)
                if file.lower().endswith(".vrt"):
                    pending.append(file)
    return listed


def check_world_file(src: Path | str, dst: Path) -> None:
    """Refuse to write an output without a transform (the input has none, or only GCPs) beside a world file GDAL
    would read for it (``OUT.tfw``, ``OUT.tifw``, ``OUT.wld``, in any case): it would place the output where the
    input is not (and hide its GCPs). The file is left alone; it may be another raster's (a ``.wld`` serves every
    raster of its name)."""
    suffixes = {f"{dst.suffix[:2]}{dst.suffix[-1:]}w".lower(), f"{dst.suffix}w".lower(), ".wld"}
    wanted = {f"{dst.stem}{suffix}".lower() for suffix in suffixes}
    try:
        found = sorted(name for name in os.listdir(dst.parent) if name.lower() in wanted)
    except OSError:
        return
    if found:
        raise InputError(
            f"'{dst.parent / found[0]}' is a world file GDAL would read for the output, placing it where the input "
            f"'{src}' (which has no transform) is not; move it away or choose another name with -o"
        )


def check_destination(
    src: Path, dst: Path, overwrite: bool, *, store: bool = False, input_files: Sequence[str] = ()
) -> None:
    """Refuse to clobber the input or an existing file (unless ``overwrite``), or to write nowhere.

    ``store`` allows a folder as destination (a Zarr store); ``input_files`` are the other files GDAL
    reads for the input (a VRT's sources, an ENVI header, side files), never replaced either.
    """
    size, limit = len(os.fsencode(dst.name)), name_max(dst.parent)
    if size > limit:  # else a bare 'File name too long' from the first look at it
        raise InputError(
            f"output name '{dst.name[:40]}...' is {size} bytes long, more than the {limit} a file name may have in "
            f"'{dst.parent}'; choose a shorter name with -o"
        )
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputExistsError(f"output '{dst}' is the input file; choose another name with -o")
    for name in (str(src), *input_files) if dst.exists() else ():  # a name inside an archive reads the archive
        archive = archive_of(name)
        if archive is not None and archive.resolve() == dst.resolve():
            raise OutputExistsError(
                f"output '{dst}' is the archive the input '{name}' is read from; choose another name with -o"
            )
    if dst.exists() and any(Path(f).exists() and Path(f).resolve() == dst.resolve() for f in input_files):
        raise OutputExistsError(
            f"output '{dst}' is one of the files GDAL reads for the input '{src}'; choose another name with -o"
        )
    if dst.is_dir() and not store:  # before 'pass --overwrite', which would not replace a folder either
        raise OutputExistsError(f"output '{dst}' is a folder; give a file name with -o")
    if dst.exists() and not dst.is_file() and not dst.is_dir():  # renaming onto /dev/null would replace the device
        raise OutputExistsError(
            f"output '{dst}' is not a regular file (a device, pipe or socket); give a file name with -o"
        )
    if os.path.lexists(dst) and not overwrite:  # a link too, whose target is gone
        raise OutputExistsError(
            f"output '{dst}' already exists; pass --overwrite to replace it or -o to choose another"
        )
    if not dst.parent.is_dir():
        raise InputError(f"output folder '{dst.parent}' does not exist; create it or choose another -o")
    if not os.access(dst.parent, os.W_OK | os.X_OK):  # else refused only at the first write, after all the work
        raise RasterIOError(
            f"output folder '{dst.parent}' is not writable; make it writable (chmod u+w) or choose another -o"
        )


def check_geotiff_name(dst: Path) -> None:
    """Refuse a GeoTIFF destination named as another GDAL raster format (``-o dem.png``, ``-o dem.vrt``):
    geosr writes GeoTIFF only, and a GeoTIFF under such a name misleads every program that goes by it. Refuse
    too a name GDAL reads as a side file of another raster (``-o dem.tif.ovr``, ``.msk``, ``.aux``,
    ``.aux.xml``, in any case): GDAL would serve it as that raster's overviews, mask or metadata."""
    from rasterio.drivers import raster_driver_extensions

    side = next((s for s in (*SIDE_FILES_ANY_CASE, ".aux", *SIDE_FILES_EXACT) if dst.name.lower().endswith(s)), None)
    if side is not None and len(dst.name) > len(side):
        owner = dst.name[: -len(side)]
        raise InputError(
            f"output '{dst}' ends in {dst.name[-len(side) :]}, which GDAL reads as a side file (overviews, mask or "
            f"metadata) of a raster named '{owner}', and would serve as that raster's; give it a .tif name "
            f"(for example -o {dst.with_name(Path(owner).stem + '_x.tif')})"
        )
    suffix = dst.suffix.lower().lstrip(".")
    driver = raster_driver_extensions().get(suffix) if suffix else None
    if driver not in (None, "GTiff", "COG"):
        raise InputError(
            f"output '{dst}' has the suffix .{suffix} of GDAL's {driver} format, but geosr writes GeoTIFF; give it "
            f"a .tif name (for example -o {dst.with_suffix('.tif')}) and convert it afterwards if needed "
            f"(gdal_translate -of {driver})"
        )


#: How much smaller than its raw size a compressed output is assumed to be at best (DEFLATE with a
#: predictor rarely does better on float rasters), for :func:`check_space`.
BEST_COMPRESSION = 4


def check_space(dst: Path, shape: tuple[int, int], count: int, dtype: str) -> None:
    """Refuse an output that cannot fit in its folder's free space even when compressed."""
    raw = shape[0] * shape[1] * count * np.dtype(dtype).itemsize
    free = shutil.disk_usage(dst.parent).free
    if raw > BEST_COMPRESSION * free:
        raise InputError(
            f"the output would be {shape[1]} x {shape[0]} pixels x {count} bands, {raw / 1e9:.3g} GB uncompressed, "
            f"and cannot fit in the {free / 1e9:.3g} GB free in '{dst.parent}'; "
            "choose a smaller scale (a coarser resolution) or another folder"
        )


def geotiff_tile_size(tile_size: int) -> int:
    """The tile side a GeoTIFF output is written with: ``tile_size`` rounded up to a multiple of 16,
    GeoTIFF's block unit, so that one tile fills every block it touches (GDAL writes a partly written
    DEFLATE block again at the end of the file, leaving the old copy as dead space: tiles of 100 made a
    file 6.5 times its size). Tiles stitch without seams whatever their size, so the values are the same."""
    return -(-int(tile_size) // 16) * 16


def _block_size(tile_size: int) -> int:
    """GeoTIFF block side that tiles of ``tile_size`` (a multiple of 16, :func:`geotiff_tile_size`) fill
    exactly: the largest multiple of 16 up to 512 that divides it and is at least 128, else the tile
    itself up to 2048 pixels, else the largest multiple of 16 below 128 that divides it (64 for 3008)."""
    for size in range(512, 127, -16):
        if tile_size % size == 0:
            return size
    if tile_size <= 2048:
        return tile_size
    return next(size for size in range(112, 15, -16) if tile_size % size == 0)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: DEFLATE rather than ZSTD: every GDAL build (and so every QGIS) can read it.
COMPRESSION = "DEFLATE"


@dataclass
class OutputSpec:
    """How the output GeoTIFF is laid out and what it says about itself."""

    height: int
    width: int
    count: int
    dtype: str
    crs: Any
    transform: Any
    nodata: float | None
    tile_size: int
    tags: dict[str, str]
    info: RasterInfo
    gcps: list[Any] = field(default_factory=list)  # instead of a transform, for a raster georeferenced by GCPs
    rpcs: Any = None  # the input's RPCs on the fine grid (rasterio's RPC), kept beside the transform


def written_nodata(dtype: str, nodata: float | None) -> Any:
    """The nodata a GeoTIFF band of ``dtype`` reads back after rasterio writes ``nodata``: rasterio passes it to
    GDAL as a double, which GDAL stores as text that an Int64/UInt64 band parses only up to the exponent
    (-9223372036854775808 reads back as -9, -2**62 as -4)."""
    import rasterio

    path = f"/vsimem/geosr-nodata-{uuid.uuid4().hex}.tif"  # one per call: runs in threads do not share it
    profile = {"driver": "GTiff", "height": 1, "width": 1, "count": 1, "dtype": dtype, "nodata": nodata}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no georeferencing: a probe
            with rasterio.open(path, "w", **profile):
                pass
            with rasterio.open(path) as probe:
                return probe.nodata
    finally:
        with contextlib.suppress(Exception):
            from rasterio.shutil import delete

            delete(path)


def same_nodata(dtype: str, written: float | None, nodata: float | None) -> bool:
    """Whether ``written`` and ``nodata`` are the same nodata of a ``dtype`` band (both NaN, or equal in the type)."""
    if written is None or nodata is None:
        return written is nodata
    if np.isnan(written) or np.isnan(nodata):
        return bool(np.isnan(written) and np.isnan(nodata))
    if np.dtype(dtype).kind == "f":
        with np.errstate(over="ignore"):
            return bool(np.dtype(dtype).type(written) == np.dtype(dtype).type(nodata))
    return int(written) == int(nodata)


def check_nodata_writable(dtype: str, nodata: float | None, source: Any) -> None:
    """Refuse an output whose nodata a GeoTIFF would not keep (:func:`written_nodata`), before any work: its
    missing pixels would read back as data, and valid pixels equal to the value stored instead as missing."""
    if nodata is None or np.dtype(dtype).kind not in "iu":
        return
    info = np.iinfo(dtype)
    if not info.min <= nodata <= info.max:  # such as 2**64 - 1, which the double rasterio writes rounds to 2**64
        raise InputError(
            f"the {dtype} nodata of '{source}' lies at the end of the {dtype} range, which a double (as rasterio "
            f"writes nodata) rounds to {nodata:.17g}, beyond the type: a GeoTIFF written by rasterio cannot keep it; "
            "drop --keep-dtype to write float32, or give the input a nodata of at most 15 digits first "
            "(gdal_edit.py -a_nodata VALUE)"
        )
    written = written_nodata(dtype, nodata)
    if not same_nodata(dtype, written, nodata):
        raise InputError(
            f"the {dtype} nodata {int(nodata)} of '{source}' cannot be stored in a GeoTIFF written by rasterio "
            f"(it reads back as {written:g}); drop --keep-dtype to write float32, or give the input a nodata of "
            "at most 15 digits first (gdal_edit.py -a_nodata VALUE)"
        )


#: Units in the last place between a valid float value and a float nodata: GDAL takes values within a
#: few of them for nodata (ARE_REAL_EQUAL: |a - b| < 2 eps |a + b|)
NODATA_ULPS = 16


def _reads_as(values: np.ndarray, nodata: float) -> np.ndarray:
    """Where float ``values`` would read back as a float ``nodata`` (GDAL's tolerance, with a margin)."""
    fill = values.dtype.type(nodata)
    return np.abs(values - fill) <= np.abs(off_nodata(nodata, values.dtype) - fill)


def off_nodata(nodata: float, dtype: np.dtype) -> Any:
    """The value a valid pixel on a float ``nodata`` (-9999.0) moves to, so that it does not read back as
    missing: :data:`NODATA_ULPS` steps of the type towards zero (above it for a nodata of 0)."""
    fill = value = np.dtype(dtype).type(nodata)
    target = np.dtype(dtype).type(0 if fill else 1)
    for _ in range(NODATA_ULPS):
        value = np.nextafter(value, target)
    return value


def _missing_block(ds: Any, size: int) -> str | None:
    """The first block of an open GeoTIFF of ``size`` bytes that was never written or lies beyond its end."""
    rows, cols = ds.block_shapes[0]
    pixel = ds.interleaving is not None and ds.interleaving.value == "PIXEL"  # one block holds every band
    for band in [1] if pixel else ds.indexes:
        for y in range(-(-ds.height // rows)):
            for x in range(-(-ds.width // cols)):
                offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band) or 0)
                length = int(ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band) or 0)
                if not offset or not length or offset + length > size:
                    return f"block {x},{y} of band {band} is missing"
    return None


#: Attributes bounding the input's values, which the output's detail overshoots (and GDAL's NetCDF driver masks by)
STALE_RANGES = ("valid_range", "valid_min", "valid_max", "actual_range")
#: ACDD's attributes of the grid's resolution, which describe the input's cells
STALE_RESOLUTIONS = ("geospatial_lat_resolution", "geospatial_lon_resolution")


def _current(tags: dict[str, str]) -> dict[str, str]:
    """``tags`` without those that describe the input and not the output (a NetCDF variable's ``valid_range``,
    ``actual_range``, the ACDD resolution; as GDAL names them, ``tas#valid_range``, ``NC_GLOBAL#...``): the
    xarray accessor drops or updates the same attributes. And without ``missing_value``, whose cells
    (:func:`_missing_values`) are written as the band's nodata: left, it would mask valid output values."""
    stale = (*STALE_RANGES, *STALE_RESOLUTIONS, "missing_value")  # its cells are the output's nodata now
    return {k: v for k, v in tags.items() if k.rsplit("#", 1)[-1] not in stale}


class TileWriter:
    """Writes fine tiles into a temporary GeoTIFF, then moves it onto the destination atomically."""

    def __init__(self, dst: Path, spec: OutputSpec, *, cog: bool = False, overwrite: bool = True) -> None:
        self.dst, self.spec, self.cog, self.overwrite = dst, spec, cog, overwrite
        # every temporary file, recorded before it is created (new_temp), deleted by discard()
        self._extra: list[Path] = []
        self._dataset: Any = None
        self.block = _block_size(geotiff_tile_size(spec.tile_size))

    def __enter__(self) -> TileWriter:
        # the temporary file is made here, not in __init__: an interrupt between __init__ and __enter__ (or in
        # either) left it behind, the ``with`` block not yet begun; any error or interrupt in here deletes it
        try:
            self._create()
        except BaseException:
            self.discard()
            raise
        return self

    def _create(self) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        dst = self.dst
        try:
            self.tmp = new_temp(dst.parent, dst.name, ".geosr-part", self._extra, room=TEMP_SIDE_ROOM)
        except OSError as exc:  # a folder made read-only, or full, since the checks
            raise RasterIOError(
                f"cannot create the output in '{dst.parent}' ({exc.strerror or exc}); free it or choose another -o"
            ) from None
        self._extra.append(Path(f"{self.tmp}.aux.xml"))  # GDAL's side file for metadata a TIFF tag cannot hold
        spec = self.spec
        integer = np.issubdtype(np.dtype(spec.dtype), np.integer)
        block = self.block
        profile = {
            "driver": "GTiff",
            "height": spec.height,
            "width": spec.width,
            "count": spec.count,
            "dtype": spec.dtype,
            "nodata": spec.nodata,
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "predictor": 2 if integer else 3,
            "BIGTIFF": "IF_SAFER",
            "compress": COMPRESSION,
            # compress blocks on every core: single-threaded DEFLATE took 1.0 s of every 16.8 MP written
            # (0.53 s on two cores), a large part of the run once the network is on a GPU
            "num_threads": "ALL_CPUS",
        }
        try:
            if spec.rpcs is not None:
                profile.update(rpcs=spec.rpcs)
            if spec.gcps:
                profile.update(gcps=spec.gcps, crs=spec.crs)
            elif spec.transform is not None:
                profile.update(crs=spec.crs, transform=spec.transform)
            elif spec.crs is not None:  # a CRS without a transform (pixel space): kept, as gdal_translate keeps it
                profile.update(crs=spec.crs)
            with warnings.catch_warnings():
                # an ungeoreferenced input gives an ungeoreferenced output (no geotransform), as in GDAL
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._dataset = rasterio.open(self.tmp, "w", **profile)
        except Exception as exc:
            raise RasterIOError(f"cannot create output beside '{self.dst}' ({exc})") from None
        if spec.nodata is not None and not same_nodata(spec.dtype, self._dataset.nodata, spec.nodata):
            written = self._dataset.nodata  # its missing pixels would read back as data
            raise RasterIOError(
                f"the output's nodata {spec.nodata!r} would be stored as {written!r}; drop --keep-dtype to write "
                "float32"
            )

    def write(self, rows: slice, cols: slice, values: np.ndarray) -> None:
        """Write a (band, y, x) block of output values (NaN where no data) at ``rows``, ``cols``."""
        from rasterio.windows import Window

        spec = self.spec
        dtype = np.dtype(spec.dtype)
        missing = np.isnan(values)
        out = values
        if dtype.kind == "f":
            with np.errstate(over="ignore"):
                out = values.astype(dtype)
            overflow = ~missing & ~np.isfinite(out)
            if overflow.any():
                band = int(np.argwhere(overflow)[0][0]) + 1
                raise InputError(
                    f"band {band} of '{spec.info.path}' holds values beyond the range of the {dtype} output; "
                    f"pass --keep-dtype to write the input's {spec.info.dtype}"
                    if dtype != np.dtype(spec.info.dtype)
                    else f"band {band} of '{spec.info.path}' comes out beyond the range of {dtype}"
                )
            if spec.nodata is not None and np.isfinite(spec.nodata):
                out = np.where(~missing & _reads_as(out, spec.nodata), off_nodata(spec.nodata, dtype), out)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            out = np.clip(np.rint(np.nan_to_num(values)), info.min, info.max)
            if spec.nodata is not None:
                # a valid value rounded onto nodata moves one step to its own side of it (-0.4 with nodata 0
                # becomes -1), or inwards where nodata is the type's limit
                below = np.nan_to_num(values) < spec.nodata
                step = np.where(below if info.min < spec.nodata < info.max else spec.nodata == info.max, -1, 1)
                out = np.where(~missing & (out == spec.nodata), spec.nodata + step, out)
        if spec.nodata is not None:
            out = np.where(missing, spec.nodata, out)
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        self._dataset.write(out.astype(dtype, copy=False), window=window)

    def _write_metadata(self) -> None:
        ds, info = self._dataset, self.spec.info
        ds.update_tags(**_current({**info.tags, **self.spec.tags}))
        for domain, tags in info.tag_domains.items():
            ds.update_tags(ns=domain, **tags)
        for i in range(1, ds.count + 1):
            if info.band_tags[i - 1]:
                ds.update_tags(i, **_current(info.band_tags[i - 1]))
            for domain, tags in (info.band_tag_domains[i - 1] if info.band_tag_domains else {}).items():
                ds.update_tags(i, ns=domain, **tags)
            if info.descriptions[i - 1]:
                ds.set_band_description(i, info.descriptions[i - 1])
            if info.units[i - 1]:
                ds.set_band_unit(i, info.units[i - 1])
        ds.scales, ds.offsets = info.scales, info.offsets
        with contextlib.suppress(ValueError):
            ds.colorinterp = info.colorinterp

    def _make_cog(self) -> Path:
        from rasterio.shutil import copy as gdal_copy

        # recorded before it exists, with the overview files GDAL's COG driver makes beside it meanwhile
        cog = new_temp(self.dst.parent, self.dst.name, ".geosr-cog", self._extra, room=TEMP_SIDE_ROOM)
        self._extra += [Path(f"{cog}{side}") for side in (".ovr.tmp", ".msk.ovr.tmp", ".aux.xml")]
        integer = np.issubdtype(np.dtype(self.spec.dtype), np.integer)
        try:
            gdal_copy(
                self.tmp,
                cog,
                driver="COG",
                COMPRESS=COMPRESSION,
                PREDICTOR="STANDARD" if integer else "FLOATING_POINT",
                BLOCKSIZE=512,
                OVERVIEWS="AUTO",
                OVERVIEW_RESAMPLING="AVERAGE",
                BIGTIFF="IF_SAFER",
                NUM_THREADS="ALL_CPUS",
            )
        except Exception as exc:  # noqa: BLE001 - GDAL's errors (a full disk) are not all rasterio's
            raise self._incomplete(first_line(exc)) from None
        return cog

    def commit(self) -> Path:
        """Finish the file and move it onto the destination."""
        self._write_metadata()
        self._dataset.close()
        self._dataset = None
        self._check_complete(self.tmp)
        final = self._make_cog() if self.cog else self.tmp
        if final != self.tmp:
            self._check_complete(final)
        # with a new file's mode (new_temp makes it private); GDAL's side files of the file replaced (which
        # describe it, not this output) are removed before the rename, so nothing is left to do after it
        side = Path(f"{final}.aux.xml")  # what GeoTIFF cannot hold (a rotated pole's CRS), GDAL keeps in its
        keeps = side.is_file()  # side file: it goes along, as gdal_translate leaves it (deleted, the CRS was lost)
        if keeps and len(os.fsencode(f"{self.dst.name}.aux.xml")) > name_max(self.dst.parent):
            raise RasterIOError(  # before the output is in place: published, it would have lost its CRS
                f"the output's CRS can be kept only in a side file '{self.dst.name}.aux.xml' (GeoTIFF cannot hold "
                "it), whose name would be too long; choose a shorter name with -o"
            )
        _publish(final, self.dst, self.overwrite, keep=(self.spec.info.path,))
        if keeps:
            os.replace(side, Path(f"{self.dst}.aux.xml"))
        self.discard()
        return self.dst

    def _check_complete(self, path: Path) -> None:
        """Refuse a GeoTIFF that GDAL could not write in full: every block must lie inside the file.

        GDAL writes the blocks still in its cache when the file is closed, and rasterio reports no error
        when that fails (a full disk, a quota, a lost network share): the file is left truncated or with
        blocks never written, and would have been renamed onto the destination as if complete.
        """
        import rasterio

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an ungeoreferenced output (pixel space)
                with rasterio.open(path) as ds:
                    problem = _missing_block(ds, path.stat().st_size)
        except Exception as exc:  # noqa: BLE001 - whatever GDAL says, the file is not a complete GeoTIFF
            problem = first_line(exc)
        if problem is not None:
            raise self._incomplete(problem)

    def _incomplete(self, problem: str) -> RasterIOError:
        try:
            free = shutil.disk_usage(self.dst.parent).free
        except OSError as exc:  # the folder itself is gone: the bare FileNotFoundError named neither cause nor fix
            return RasterIOError(
                f"the output folder '{self.dst.parent}' is gone ({exc.strerror or exc}): it was removed or unmounted "
                "during the run; create it again (or choose another -o) and run again"
            )
        return RasterIOError(
            f"the output could not be written in full beside '{self.dst}' ({problem}; {free / 1e6:.3g} MB free "
            "there); free some space or choose another -o"
        )

    def discard(self) -> None:
        """Close and delete the temporary files (the destination is left untouched)."""
        if self._dataset is not None:
            with contextlib.suppress(Exception):
                self._dataset.close()
            self._dataset = None
        for path in self._extra:
            with contextlib.suppress(OSError):  # gone, or never made (a name too long for a side file)
                path.unlink()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()


#: Suffixes of the gridded formats read and written through xarray, by format.
GRID_SUFFIXES = {".nc": "netcdf", ".nc4": "netcdf", ".cdf": "netcdf", ".zarr": "zarr"}


def grid_format(path: Path) -> str | None:
    """``"netcdf"`` or ``"zarr"`` for a NetCDF file or Zarr store name, else None."""
    return GRID_SUFFIXES.get(path.suffix.lower())


#: HDF5 chunk cache of each NetCDF variable geosr opens or writes (netCDF4's default: 64 MiB each). Tiles read the
#: input and write the output row by row, so a larger cache only keeps chunks of rows already done; at the
#: default, memory grew with the grid until both caches were full (+128 MiB at 12000 x 12000, 2 x scale).
NETCDF_CHUNK_CACHE = 4 * 2**20


def set_netcdf_chunk_cache(setting: Any) -> tuple[int, int, float] | None:
    """Set netCDF4's HDF5 chunk cache for the variables opened from now on in this process: ``setting`` is a size
    in bytes (slots and preemption kept) or netCDF4's whole (bytes, slots, preemption). Returns the setting
    before, or None without netCDF4 (then nothing is set)."""
    try:
        import netCDF4
    except ImportError:
        return None
    before = netCDF4.get_chunk_cache()
    size, slots, preemption = (setting, *before[1:]) if np.isscalar(setting) else setting
    netCDF4.set_chunk_cache(int(size), int(slots), float(preemption))
    return before


@contextlib.contextmanager
def netcdf_chunk_cache(nbytes: int = NETCDF_CHUNK_CACHE) -> Iterator[None]:
    """Give the NetCDF variables opened or created inside (through netCDF4, xarray's default engine) an HDF5
    chunk cache of ``nbytes``; the previous setting comes back after. Without netCDF4 it does nothing."""
    before = set_netcdf_chunk_cache(nbytes)
    try:
        yield
    finally:
        if before is not None:
            set_netcdf_chunk_cache(before)


#: The libraries that read and write each grid format through xarray (any one will do; netCDF4 first, as
#: geosr's climate extra installs it; scipy reads NetCDF-3 only, so it does not count for an output)
GRID_LIBRARIES = {"netcdf": ("netCDF4", "h5netcdf"), "zarr": ("zarr",)}


def _needs_library(kind: str, role: str, path: Path) -> InputError:
    library = GRID_LIBRARIES[kind][0]
    return InputError(
        f"the {role} '{path}' is {'a NetCDF file' if kind == 'netcdf' else 'a Zarr store'}, which needs the "
        f"{library} package; install it: pip install '{library}' (or pip install 'geosr[climate]')"
    )


def check_grid_library(kind: str, role: str, path: Path) -> None:
    """Refuse a NetCDF or Zarr output (or a Zarr input) whose library is not installed, before any work, in
    one line (xarray raised a bare ImportError or ValueError after it); a NetCDF input is tried with the
    libraries there are (:func:`open_grid` says what is missing when none reads it)."""
    import importlib.util

    if not any(importlib.util.find_spec(library) for library in GRID_LIBRARIES[kind]):
        raise _needs_library(kind, role, path)


def open_grid(path: str | Path, variable: str) -> Any:
    """Open a NetCDF file (lazily indexed) or Zarr store (dask-backed, in its own chunks) lazily as a Dataset.

    Refuses a file that has no data variable ``variable``, naming those it has, or whose ``variable`` has
    fewer than two dimensions (a grid mapping, a scalar) or is the CF bounds of a coordinate, naming the
    gridded ones.
    """
    import xarray as xr

    path = Path(path)
    kind = grid_format(path)
    if kind is None:
        raise InputError(
            f"--variable selects a variable of a NetCDF file (.nc) or a Zarr store (.zarr), and '{path}' is "
            "neither; drop --variable for a GeoTIFF or another GDAL raster"
        )
    if not path.exists():
        raise InputError(f"input '{path}' does not exist; check the path")
    if kind == "zarr":
        check_grid_library(kind, "input", path)
    try:
        with warnings.catch_warnings():
            # a store without consolidated metadata (written by zarr itself, or by another tool) reads the same,
            # only slower to open: xarray's warning about it is advice to the store's writer, not to this user
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated metadata")
            # times before 1582 or beyond 2262 are read as cftime dates and written back with the same encoding
            warnings.filterwarnings("ignore", message="Unable to decode time axis into full numpy.datetime64")
            # NetCDF lazily, without dask: chunks={} makes one dask chunk of each stored chunk, the whole
            # variable for a contiguous one (every time step at once); the caller chunks it by tile, and each
            # chunk then reads only its part of the file
            try:
                ds = xr.open_zarr(path) if kind == "zarr" else xr.open_dataset(path)
            except ValueError as exc:
                if "decode" not in str(exc) or "time" not in str(exc):
                    raise
                # times xarray cannot decode ("months since 1958-1-1", as NCEP's and NCL's files have): read as
                # the numbers they are stored as, which are written back unchanged with their units and calendar
                opener = xr.open_zarr if kind == "zarr" else xr.open_dataset
                ds = opener(path, decode_times=False)
    except (OSError, ValueError, KeyError) as exc:
        if "dependencies may not be installed" in str(exc):  # a NetCDF-4 file, and only scipy to read it
            raise _needs_library(kind, "input", path) from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"'{path}' is not a {kind} dataset xarray can read ({reason})") from None
    if variable not in ds.data_vars:
        coordinate = variable in ds.coords
        ds.close()
        names = ", ".join(str(v) for v in ds.data_vars) or "none"
        if coordinate:  # it is in the file, as a coordinate: "has no variable" would send the user looking for it
            raise InputError(
                f"{variable!r} is a coordinate of '{path}', not a data variable (its data variables: {names}); pick "
                "one of those with --variable"
            )
        raise InputError(f"'{path}' has no variable {variable!r} (its variables: {names}); pick one with --variable")
    bounds = {str(v.attrs.get("bounds")) for v in ds.variables.values()}  # CF cell bounds: no grids either
    if ds[variable].ndim < 2 or variable in bounds:  # such as a grid mapping, a scalar, time bounds: no grid
        names = ", ".join(str(v) for v in ds.data_vars if ds[v].ndim >= 2 and str(v) not in bounds) or "none"
        dims = list(ds[variable].dims)
        ds.close()
        raise InputError(
            f"variable {variable!r} of '{path}' is not a grid (its dimensions: {dims}); pick a gridded "
            f"variable with --variable (those with 2 or more dimensions, bounds aside: {names})"
        )
    return ds


#: Encoding that says what the stored values mean (type, time units and calendar, packing, fill value),
#: kept on every variable written; the rest (chunks, compressors, filters, contiguity) describes the
#: input's storage, which may clash with the output's format (a Zarr v2 codec in a Zarr v3 store) or
#: chunks (time bounds read 3 steps a chunk, written one step a chunk), so the writer chooses it anew.
VALUE_ENCODING = ("dtype", "units", "calendar", "_FillValue", "missing_value", "scale_factor", "add_offset")


def write_grid(
    ds: Any,
    dst: Path,
    encoding: dict[str, dict[str, Any]] | None = None,
    zarr_format: int | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``ds`` as NetCDF or Zarr (by the suffix of ``dst``) under a temporary name, then rename it.

    Dask-backed variables are computed chunk by chunk as they are written (by the active dask
    scheduler, a distributed client included). An existing ``dst`` is replaced only once the new
    file is complete; an interrupted write leaves ``dst`` as it was. Each variable keeps the
    :data:`VALUE_ENCODING` part of its encoding, updated by ``encoding`` (by variable name);
    ``zarr_format`` (2 or 3) picks the Zarr version (default: the zarr library's). A Zarr variable whose
    dask chunks are uneven (as a non-whole scale maps them) is written in chunks of its largest. Without
    ``overwrite`` an output that appeared meanwhile (another run) is left as it is, and this one refused.
    """
    kind = grid_format(dst)
    if kind is None:
        raise InputError(
            f"output '{dst}' must be a NetCDF file (.nc) or a Zarr store (.zarr) for a --variable input; "
            "for a GeoTIFF pass a GDAL subdataset such as 'NETCDF:\"file.nc\":NAME' as INPUT without --variable"
        )
    ds = ds.copy(deep=False)
    if kind == "zarr":
        # A Zarr array has chunks of one size (the last may be smaller). The input's chunks mapped onto the fine
        # grid at a scale such as 2.3 alternate (1024, 1023, 1024...), which xarray refuses to write to Zarr:
        # such a variable is rechunked to its largest chunk (each new chunk reads at most two computed ones).
        for name in list(ds.variables):
            sizes = ds.variables[name].chunksizes if ds.variables[name].chunks else {}
            uneven = {dim: max(c) for dim, c in sizes.items() if len(set(c[:-1])) > 1 or c[-1] > c[0]}
            if uneven:
                ds.variables[name].data = ds.variables[name].chunk(uneven).data
    encodings = {}
    for name, variable in ds.variables.items():
        kept = {key: value for key, value in variable.encoding.items() if key in VALUE_ENCODING}
        variable.encoding = {}
        encodings[name] = {**kept, **(encoding or {}).get(name, {})}
    # CF: coordinates and their cell bounds hold no missing values. xarray gives every float variable a
    # _FillValue of NaN unless told otherwise; one that had none keeps none (a data variable's fill is its own).
    bounds = {str(ds[name].attrs.get("bounds")) for name in ds.coords}
    for name in {str(name) for name in ds.coords} | (bounds & {str(name) for name in ds.variables}):
        if "_FillValue" not in encodings[name] and "missing_value" not in encodings[name]:
            encodings[name]["_FillValue"] = None
    ds = _encode_times(ds, encodings)
    parent = dst.parent.resolve()
    made: list[Path] = []  # the temporary file or store, recorded before it exists (new_temp)
    try:
        tmp = new_temp(parent, dst.name, ".geosr-part", made, folder=kind == "zarr", room=TEMP_SIDE_ROOM)
        if kind == "zarr":
            with warnings.catch_warnings():
                # zarr-python 3 warns that consolidated metadata is not in the Zarr 3 specification;
                # xarray and every Zarr reader use it, and without it xarray warns on every open.
                warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
                extra = {} if zarr_format is None else {"zarr_format": zarr_format}
                ds.to_zarr(tmp, mode="w", encoding=encodings, **extra)
        else:
            ds.to_netcdf(tmp, encoding=encodings)
        _publish(tmp, dst, overwrite)
    except (RuntimeError, OSError) as exc:
        _remove_all(made)
        # a full disk: netCDF4 says only "NetCDF: HDF error" (and Zarr an OSError), which names no cause or fix
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        if not (full or "HDF error" in str(exc) or "No space left" in str(exc)):
            raise
        free = shutil.disk_usage(parent).free
        raise RasterIOError(
            f"the output could not be written in full beside '{dst}' ({first_line(exc)}; {free / 1e6:.3g} MB free "
            "there: a full disk?); free some space or choose another -o"
        ) from None
    except BaseException:
        _remove_all(made)
        raise
    return dst


def _encode_times(ds: Any, encodings: dict[str, dict[str, Any]]) -> Any:
    """``ds`` with its decoded dates stored as numbers in their ``units`` exactly as the input wrote them.

    xarray rewrites the units text it is given ("days since 2000-01-01 00:00:00" becomes "days since
    2000-01-01", "hours since 1850-01-01 06:00:00" "hours since 1850-01-01T06:00:00") and names a calendar
    the input had not ("proleptic_gregorian"). Each date variable with ``units`` in its encoding (the
    CF bounds of one without, its coordinate's) is encoded here by xarray's own coder with those units,
    its calendar (when it had none, the CF default "standard", and no calendar attribute written then)
    and its dtype, and carries the units and calendar text of the input verbatim.
    """
    import xarray as xr
    from xarray.coding.times import CFDatetimeCoder

    for name in list(ds.coords):  # the bounds of a date coordinate are read and written in its units (as xarray)
        bound = ds[name].attrs.get("bounds")
        if isinstance(bound, str) and bound in ds.variables and _is_date(ds.variables[bound]):
            for key in ("units", "calendar"):
                if key in encodings[str(name)] and key not in encodings[bound]:
                    encodings[bound][key] = encodings[str(name)][key]
    replaced = {}
    for name, variable in ds.variables.items():
        settings = encodings[str(name)]
        units = settings.get("units")
        if not isinstance(units, str) or not _is_date(variable) or "units" in variable.attrs:
            continue
        calendar = settings.get("calendar")
        given = {key: settings[key] for key in ("units", "calendar", "dtype") if key in settings}
        if calendar is None and np.issubdtype(variable.dtype, np.datetime64):
            given["calendar"] = "standard"  # the CF default, by which the input was read (cftime dates know theirs)
        encoded = CFDatetimeCoder().encode(
            xr.Variable(variable.dims, variable.data, variable.attrs, given), name=str(name)
        )
        attrs = {**encoded.attrs, "units": units}
        if calendar is None and attrs.get("calendar") in ("standard", "gregorian"):
            del attrs["calendar"]  # the default, which the input left unsaid
        elif calendar is not None:
            attrs["calendar"] = calendar
        replaced[name] = xr.Variable(variable.dims, encoded.data, attrs)
        encodings[str(name)] = {k: v for k, v in settings.items() if k not in ("units", "calendar")}
    coords = {name: value for name, value in replaced.items() if name in ds.coords}
    data = {name: value for name, value in replaced.items() if name not in ds.coords}
    return ds.assign_coords(coords).assign(data)


def _is_date(variable: Any) -> bool:
    """Whether ``variable`` holds decoded dates: numpy datetime64 or cftime objects."""
    if np.issubdtype(variable.dtype, np.datetime64):
        return True
    if variable.dtype != object or variable.size == 0:
        return False
    first = np.asarray(variable.data[(0,) * variable.ndim]).item()  # one element (of one chunk if lazy)
    return type(first).__module__.split(".")[0] == "cftime"


@contextlib.contextmanager
def replaced_atomically(dst: Path) -> Iterator[Path]:
    """A temporary file beside ``dst`` to write; moved onto ``dst`` when the block ends without error
    (with the mode of any new file: mkstemp and safetensors make it private), deleted otherwise, so
    that an interrupted write leaves ``dst`` as it was."""
    dst = Path(dst)
    made: list[Path] = []  # recorded before it exists (new_temp)
    try:
        tmp = new_temp(dst.parent, dst.name, ".part", made)
        yield tmp
        _replace(tmp, dst)
    except BaseException:
        _remove_all(made)
        raise


#: Random characters in a temporary name (as tempfile's).
TEMP_RANDOM = 8

#: Bytes a temporary file's name leaves free for the names GDAL derives from it: ``.aux.xml`` of the file being
#: written, and the COG driver's ``.msk.ovr.tmp`` while it builds overviews.
TEMP_SIDE_ROOM = len(".msk.ovr.tmp")


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of ``folder`` allows (255 where it does not say)."""
    try:
        limit = int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError, TypeError):  # no pathconf (Windows), or no such folder
        return 255
    return limit if limit > 0 else 255


def temp_prefix(parent: Path, name: str, suffix: str, room: int = 0) -> str:
    """``.NAME.`` for a temporary name ``.NAME.XXXXXXXX{suffix}`` in ``parent``, NAME cut short where the whole
    (and ``room`` more bytes) would exceed the longest file name there: a valid output name of 235 to 255 bytes
    otherwise failed with 'File name too long', the temporary name being 21 bytes longer."""
    budget = name_max(parent) - len(os.fsencode(f"..{suffix}")) - TEMP_RANDOM - room
    part = name
    while part and len(os.fsencode(part)) > budget:
        part = part[:-1]
    return f".{part}."


def _temp_file(parent: Path, prefix: str, suffix: str) -> str:
    """The name of a temporary file or folder ``{prefix}XXXXXXXX{suffix}`` in ``parent``, not yet made
    (:func:`new_temp` records it, then makes it)."""
    return os.path.join(parent, f"{prefix}{secrets.token_hex(TEMP_RANDOM // 2)}{suffix}")


def new_temp(parent: Path, name: str, suffix: str, made: list[Path], *, folder: bool = False, room: int = 0) -> Path:
    """Create a private empty file (or ``folder``) ``.NAME.XXXXXXXX{suffix}`` beside the output ``name`` in
    ``parent`` (:func:`temp_prefix`) and return it. Its path is appended to ``made`` before it exists, so that
    an interrupt (Ctrl+C, ``kill``) landing at any point finds it there to delete: created by ``mkstemp``, a
    file was recorded only after it returned, and one interrupt in between left the file behind."""
    prefix = temp_prefix(parent, name, suffix, room)
    for _ in range(tempfile.TMP_MAX):
        path = Path(_temp_file(parent, prefix, suffix))
        made.append(path)
        try:
            if folder:
                os.mkdir(path, 0o700)
            else:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600))
        except OSError as exc:
            made.remove(path)  # not created: another's (the name was taken), or none at all
            if isinstance(exc, FileExistsError):
                continue
            raise
        return path
    raise FileExistsError(errno.EEXIST, f"no free temporary name in '{parent}'")


def _remove_all(paths: Sequence[Path]) -> None:
    for path in paths:
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


#: GDAL's side files of a raster ``NAME`` that hold its overviews or mask, matched ignoring case (GDAL finds
#: ``NAME.OVR`` or ``Name.Tif.Ovr`` among a folder's files as it finds ``NAME.ovr``), and of its metadata (PAM;
#: GDAL reads that one only spelled exactly so)
SIDE_FILES_ANY_CASE = (".ovr", ".msk")
SIDE_FILES_EXACT = (".aux.xml",)


def stale_side_files(dst: Path, keep: Sequence[Path] = ()) -> list[Path]:
    """The files beside ``dst`` that GDAL would attach to a raster written there, with their overviews, mask or
    metadata: ``NAME.ovr`` and ``NAME.msk`` in any case, ``NAME.aux.xml``, and an ERDAS RRD file (``NAME.aux``,
    or ``STEM.aux`` as gdaladdo --config USE_RRD YES writes it; ``.AUX`` too) whose header names ``NAME`` as
    the file it describes. Left beside a new output, GDAL (and QGIS) would show their old overviews and
    metadata as the new file's. Never among them: a file of another raster of the folder (``OUT.TIF.ovr``
    where ``OUT.TIF`` exists beside ``out.tif``), the files in ``keep`` (the input) and ``dst`` itself."""
    folder = dst.parent
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    any_case = {(dst.name + side).lower() for side in SIDE_FILES_ANY_CASE}
    exact = [dst.name + side for side in SIDE_FILES_EXACT]
    rrd = [dst.name + ".aux", dst.name + ".AUX"]
    if dst.suffix:
        rrd += [dst.stem + ".aux", dst.stem + ".AUX"]

    def spelled(name: str, spellings: list[str]) -> bool:  # or the same file, on a case-insensitive file system
        return name in spellings or any(
            name.lower() == s.lower() and _same_file(folder / name, folder / s) for s in spellings
        )

    found = []
    for name in names:
        path = folder / name
        if name == dst.name or path.is_dir():
            continue
        if name.lower() in any_case:
            owner = folder / name[: -len(SIDE_FILES_ANY_CASE[0])]  # the raster whose side file it is by its name
            if owner.name != dst.name and os.path.lexists(owner) and not _same_file(owner, dst):
                continue  # another raster's (its name in another case), not a side file of this one's name
        elif not spelled(name, exact) and not (spelled(name, rrd) and _rrd_describes(path, dst)):
            continue
        if any(_same_file(path, Path(k)) for k in keep):
            continue
        found.append(path)
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _rrd_describes(path: Path, dst: Path) -> bool:
    """Whether ``path`` is an ERDAS RRD (.aux) file that GDAL attaches to ``dst``: one whose dependent file is
    ``dst``'s name (in any case, as GDAL compares it), or names no file that exists (GDAL then takes it for
    any raster of its name). A file of another kind under that name is not GDAL's, and is left alone."""
    try:
        with open(path, "rb") as f:
            if not f.read(32).upper().startswith(b"EHFA_HEADER_TAG"):
                return False
        import rasterio

        with warnings.catch_warnings(), rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            warnings.simplefilter("ignore")
            with rasterio.open(path) as aux:
                dependent = aux.tags(ns="HFA").get("HFA_DEPENDENT_FILE")
    except Exception:  # noqa: BLE001 - not a file GDAL reads as an RRD: not one it attaches either
        return False
    if dependent is None:
        return False
    if os.path.basename(dependent).lower() == dst.name.lower():
        return True
    return not os.path.lexists(dst.parent / dependent) and not os.path.lexists(dependent)


def _remove_stale_side_files(dst: Path, keep: Sequence[Path] = ()) -> None:
    for path in stale_side_files(dst, keep):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


#: (destination, device, inode) of each output this process was about to move into place, recorded before the
#: rename (:func:`written_since` tells which of them were): an interrupt landing just after the rename was
#: reported as 'no output was written' though the output was complete and had replaced the old one.
PUBLISHED: list[tuple[Path, int, int]] = []


def written_since(mark: int) -> list[Path]:
    """The outputs moved into place since ``len(PUBLISHED)`` was ``mark`` that are still there."""
    written = []
    for dst, device, inode in PUBLISHED[mark:]:
        try:
            st = os.stat(dst)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (device, inode) and dst not in written:
            written.append(dst)
    return written


def _publish(new: Path, dst: Path, overwrite: bool, keep: Sequence[Path] = ()) -> None:
    """Move the finished ``new`` onto ``dst``: replacing what is there with ``overwrite``, else never, even
    an output another run wrote meanwhile (checked at the start, it was absent): a file is linked, which
    fails where a name exists, then its temporary name removed. Either way with the mode a new file gets
    (temporary files and folders are made private). Before that, the side files GDAL would attach to
    ``dst`` (:func:`stale_side_files`; ``keep``, the input, never) are deleted: they describe the file
    replaced, or another that was there once."""
    appeared = OutputExistsError(
        f"output '{dst}' appeared while this run was writing it (another run?) and was left as it is; pass "
        "--overwrite to replace it or -o to choose another"
    )
    if not overwrite and os.path.lexists(dst):  # not a side file of another run's output removed
        raise appeared
    if not new.is_dir():
        _remove_stale_side_files(dst, keep)
    st = os.stat(new)
    PUBLISHED.append((dst, st.st_dev, st.st_ino))
    if overwrite:
        _replace(new, dst)
        return
    os.chmod(new, (0o777 if new.is_dir() else 0o666) & ~_umask())  # as _replace gives it
    if new.is_dir():  # a Zarr store: renaming a folder fails onto anything but an empty folder
        if os.path.lexists(dst):
            raise appeared
        try:
            os.rename(new, dst)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise appeared from None
            raise
        return
    try:
        os.link(new, dst)
    except FileExistsError:
        raise appeared from None
    except OSError:  # a file system without hard links: checked, then renamed
        if os.path.lexists(dst):
            raise appeared from None
        os.replace(new, dst)
        return
    os.unlink(new)


def _replace(new: Path, dst: Path) -> None:
    """Move ``new`` onto ``dst``; an old folder (a Zarr store) or a file of the other kind goes only after."""
    os.chmod(new, (0o777 if new.is_dir() else 0o666) & ~_umask())
    if dst.exists() and (dst.is_dir() or new.is_dir()):
        # the old store goes aside into a folder of its own, under a name that does not exist there (a fixed
        # side name, left by an interrupted removal or taken by a run beside this one, made every later
        # --overwrite fail; renaming onto an existing folder fails for a link, and on Windows)
        made: list[Path] = []  # the holder, recorded before it exists (new_temp)
        aside: Path | None = None
        try:
            holder = new_temp(dst.parent, dst.name, ".geosr-old", made, folder=True)
            aside = holder / dst.name
            os.replace(dst, aside)
            os.replace(new, dst)
            _remove(holder)  # a link set aside goes, not the store it pointed to
        except BaseException:
            # an interrupt may land just after either rename: the old output goes back where the new one has
            # not taken its place (deleted with the holder, it was lost), and goes once the new one has
            if aside is not None and os.path.lexists(aside) and os.path.lexists(new):
                os.replace(aside, dst)
            _remove_all(made)
            raise
    else:
        os.replace(new, dst)
