"""Saving and loading model files (safetensors tensors + JSON card). Imports torch."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from geosr.errors import ModelError
from geosr.models.card import CARD_KEY, ModelCard, read_card
from geosr.models.registry import resolve_model
from geosr.models.vdsr import VDSR


@dataclass
class LoadedModel:
    """A network ready to run, with its card and where it came from."""

    network: VDSR
    card: ModelCard
    source: str
    digest: str

    @property
    def receptive_radius(self) -> int:
        return self.network.receptive_radius

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("geosr.LoadedModel", self.digest)


def save_model(network: VDSR, card: ModelCard, path: str | Path) -> Path:
    """Write ``network``'s weights and ``card`` to a safetensors file."""
    shape = (network.in_channels, network.depth, network.width, network.cell_input)
    if (card.in_channels, card.depth, card.width, card.cell_input) != shape:
        raise ModelError("model card does not match the network's shape")
    from geosr.io import replaced_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in network.state_dict().items()}
    with replaced_atomically(path) as tmp:  # an interrupted save leaves the old file whole
        save_file(tensors, str(tmp), metadata={CARD_KEY: card.to_json()})
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_model(model: str | Path | None = None, device: Any = "cpu") -> LoadedModel:
    """Load a shipped model by name, or a model file by path, onto ``device`` in eval mode."""
    path = resolve_model(model)
    card = read_card(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read model file {path} ({exc})") from None
    network = VDSR(card.in_channels, depth=card.depth, width=card.width, cell_input=card.cell_input)
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"model file {path} does not match its card ({first})") from None
    network.eval().requires_grad_(False).to(device)
    # absolute: dask tasks carry the path, and may run in another working directory (or on another machine's worker)
    return LoadedModel(network, card, os.path.abspath(path), _digest(path))
