"""Model cards: what a weight file holds and what it was trained for.

Reading a card needs only the safetensors header (no torch, no tensors), so listing models is fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geosr.errors import ModelError
from geosr.tiling import Kernel, kernel_named

CARD_KEY = "geosr"
FORMAT_VERSION = 1


@dataclass
class ModelCard:
    """Metadata stored with a model's weights.

    Attributes
    ----------
    name
        Short model name (``dem``, ``climate``, or a user's own).
    architecture
        Network architecture; only ``"vdsr"`` is known.
    in_channels, depth, width
        Shape of the network.
    bands
        Names of the bands or variables it was trained for (one entry per channel).
    units
        Units of those bands (``"m"`` for elevation).
    normalisation
        How inputs are normalised before the network (per-band whole-raster mean and std).
    scales
        Scales it was trained for.
    degradation
        How coarse training pairs were made from fine rasters.
    interpolation
        Kernel used to bring the coarse raster to the fine grid before the network.
    cell_input
        The network also takes each band's input cells (coarse values repeated onto the fine grid).
    conserve
        Conserve by default: unless told otherwise, runs at whole scales make each input cell's
        output pixels average to the input value (the model was trained and measured so).
    calibrate
        Self-calibrate by default: scale each band's residual by how much of it the input's own
        coarser copy supports (:mod:`geosr.calibrate`), for models whose detail suits some fields
        and not others.
    fill_trend
        The trend of the fill of missing cells next to data (:func:`geosr.tiling.extend_into_missing`):
        0, each filled cell the mean of its known neighbours; t > 0, in the first ring a neighbour's
        slope continued by t of a cell. Chosen by measurement next to nodata
        (``benchmarks/nodata_edges.py --trend``).
    training
        Free-form record of the training data, recipe, budget and command.
    metrics
        Free-form record of measured quality.
    description
        One paragraph for humans.
    """

    name: str
    in_channels: int
    depth: int = 20
    width: int = 64
    architecture: str = "vdsr"
    bands: list[str] = field(default_factory=lambda: ["band"])
    units: list[str] = field(default_factory=lambda: [""])
    normalisation: str = "per-band standardisation with whole-raster mean and standard deviation"
    scales: list[float] = field(default_factory=lambda: [2.0, 3.0, 4.0])
    degradation: str = "area average over each coarse cell"
    interpolation: str = "bicubic (Keys a=-0.5), edges replicated"
    conserve: bool = False
    cell_input: bool = False
    calibrate: bool = False
    fill_trend: float = 0.0
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def kernel(self) -> Kernel:
        """The interpolation kernel named by ``interpolation``."""
        return kernel_named(self.interpolation)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model file") -> ModelCard:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            card = cls(**known)
            _check_fields(card)
        except RecursionError:  # JSON nested thousands deep: nothing geosr writes
            raise ModelError(
                f"{source} has an unreadable model card (nested too deeply); re-save it with geosr"
            ) from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source} has an unreadable model card ({exc}); re-save it with geosr") from None
        if card.format_version > FORMAT_VERSION:
            raise ModelError(
                f"{source} was written by a newer geosr (model format {card.format_version}, this geosr reads "
                f"up to {FORMAT_VERSION}); upgrade geosr"
            )
        if card.architecture != "vdsr":
            raise ModelError(f"{source} holds a {card.architecture!r} model; geosr only runs 'vdsr' models")
        try:
            kernel_named(card.interpolation)
        except ValueError as exc:
            raise ModelError(f"{source}: {exc}; this geosr cannot run it, upgrade geosr") from None
        return card


#: The largest scale a card may name (a card of scale 1e308 or inf broke the warnings that quote it)
MAX_SCALE = 1000
#: How deep a card's training record and metrics may nest (geosr writes 2 or 3 levels: a fine-tuned model's chain)
MAX_NESTING = 64


def printable(text: str) -> str:
    """``text`` with each character a terminal would act on (a tab, a newline, an escape code) as a space: what a
    card's name, bands and units may hold (a band's description or a file's name may hold more)."""
    return "".join(c if c.isprintable() else " " for c in text)


def _nesting(value: Any, depth: int = 0) -> int:
    """How deep ``value`` nests dicts and lists, counted up to :data:`MAX_NESTING` + 1 (no deeper recursion)."""
    if depth > MAX_NESTING or not isinstance(value, dict | list):
        return depth
    items = value.values() if isinstance(value, dict) else value
    return max((_nesting(item, depth + 1) for item in items), default=depth + 1)


def _check_fields(card: ModelCard) -> None:
    """Raise ValueError naming the first field of ``card`` whose value has the wrong type."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def whole(low: int | None) -> tuple[Any, str]:
        def ok(v: Any) -> bool:
            return number(v) and isinstance(v, int) and (low is None or v >= low)

        return ok, "a whole number" + ("" if low is None else f" >= {low}")

    checks = {
        "name": (lambda v: isinstance(v, str) and v.isprintable(), "printable text"),
        "in_channels": whole(1),
        "depth": whole(2),
        "width": whole(1),
        "architecture": (lambda v: isinstance(v, str), "text"),
        "bands": (
            lambda v: isinstance(v, list) and all(isinstance(b, str) and b.isprintable() for b in v),
            "a list of names (printable text)",
        ),
        "units": (
            lambda v: isinstance(v, list) and all(u is None or (isinstance(u, str) and u.isprintable()) for u in v),
            "a list of units (printable text)",
        ),
        "normalisation": (lambda v: isinstance(v, str), "text"),
        "scales": (
            lambda v: isinstance(v, list) and v and all(number(x) and 1 < x <= MAX_SCALE for x in v),
            f"a list of numbers > 1 and at most {MAX_SCALE}",
        ),
        "degradation": (lambda v: isinstance(v, str), "text"),
        "interpolation": (lambda v: isinstance(v, str), "text"),
        "conserve": (lambda v: isinstance(v, bool), "true or false"),
        "cell_input": (lambda v: isinstance(v, bool), "true or false"),
        "calibrate": (lambda v: isinstance(v, bool), "true or false"),
        "fill_trend": (lambda v: number(v) and 0 <= v <= 1, "a number from 0 to 1"),
        "training": (
            lambda v: isinstance(v, dict) and _nesting(v) <= MAX_NESTING,
            f"an object nested at most {MAX_NESTING} deep",
        ),
        "metrics": (
            lambda v: isinstance(v, dict) and _nesting(v) <= MAX_NESTING,
            f"an object nested at most {MAX_NESTING} deep",
        ),
        "description": (lambda v: isinstance(v, str), "text"),
        "format_version": whole(1),
    }
    for name, (ok, what) in checks.items():
        value = getattr(card, name)
        if not ok(value):
            raise ValueError(f"field '{name}' should be {what}, got {value!r:.60}")
    for name in ("bands", "units"):  # one per channel: band names pick and order a multiband model's inputs
        if len(getattr(card, name)) != card.in_channels:
            raise ValueError(
                f"field '{name}' should have one entry per channel ({card.in_channels}), got {len(getattr(card, name))}"
            )


def jsonable(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a diverged training's metrics) as ``None``, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def flat_items(section: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted.key, value)`` pairs of a card section, nested dicts (a fine-tuned model's
    ``started_from`` chain) opened up, except a training ``config``, which stays one value."""
    items: list[tuple[str, Any]] = []
    for key, value in section.items():
        if isinstance(value, dict) and key != "config":
            items += flat_items(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def read_card(path: str | Path) -> ModelCard:
    """Read the model card of a weight file without loading its tensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(
            f"{path} is not a geosr model file ({exc}); pass a .safetensors file written by geosr"
        ) from None
    if CARD_KEY not in metadata:
        raise ModelError(f"{path} has no geosr model card; pass a .safetensors file written by geosr")
    return ModelCard.from_json(metadata[CARD_KEY], source=str(path))
