"""Model cards: what a weight file holds and what it was trained for.

Reading a card needs only the safetensors header (no torch, no tensors), so listing models is fast.
"""

from __future__ import annotations

import json
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
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            card = cls(**known)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source} has an unreadable model card ({exc}); re-save it with geosr") from None
        if card.architecture != "vdsr":
            raise ModelError(f"{source} holds a {card.architecture!r} model; geosr only runs 'vdsr' models")
        try:
            kernel_named(card.interpolation)
        except ValueError as exc:
            raise ModelError(f"{source}: {exc}; this geosr cannot run it, upgrade geosr") from None
        return card


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
