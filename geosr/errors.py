"""Exceptions raised by geosr.

Every error geosr raises on purpose derives from :class:`GeosrError` and also from the builtin
exception that matches it, so ``except ValueError`` keeps working for callers who do not know geosr.
Messages say what is wrong, the offending value, and how to fix it, in one line. Warnings (a run that
goes on but whose result may disappoint) derive from :class:`GeosrWarning`, a ``UserWarning``; the
command line prints each as one ``Warning: ...`` line.
"""

from __future__ import annotations


class GeosrError(Exception):
    """Root of every error geosr raises on purpose."""


class InputError(GeosrError, ValueError):
    """The input raster or array cannot be downscaled as given."""


class ScaleError(GeosrError, ValueError):
    """The requested scale or target resolution is invalid."""


class ModelError(GeosrError, ValueError):
    """The model is unknown, unreadable or does not fit the raster."""


class OutputExistsError(GeosrError, FileExistsError):
    """The destination exists and overwriting was not asked for."""


class RasterIOError(GeosrError, OSError):
    """A raster could not be opened, read or written."""


class DeviceError(GeosrError, RuntimeError):
    """The requested compute device is unknown or not available."""


class SchedulerError(GeosrError, ConnectionError):
    """The dask.distributed scheduler cannot be reached or has no workers."""


class TrainingDiverged(GeosrError, ArithmeticError):
    """The training loss became NaN or infinite (too high a learning rate)."""


class GeosrWarning(UserWarning):
    """Root of every warning geosr gives on purpose: the run goes on, but the result may disappoint."""


class ScaleWarning(GeosrWarning):
    """The requested scale lies outside the range of scales the model was trained at."""


class PrecisionWarning(GeosrWarning):
    """The precision asked for is emulated on this device (a CPU without bf16 or fp16 instructions): the run
    gives the same kind of result, many times more slowly than in fp32."""


class Interrupted(KeyboardInterrupt):
    """Ctrl+C or ``kill`` stopped a run; the message says what it left behind."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: the reason given
    in geosr's one-line errors for what a library raised."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
