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

from geosr.devices import select_device
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


def card_shapes(card: ModelCard) -> dict[str, tuple[int, ...]]:
    """The tensors (name: shape) of the VDSR network a card describes (:class:`geosr.models.vdsr.VDSR`), without
    building it: its convolutions ``body.0``, ``body.2``, ... (a ReLU between each)."""
    first = card.in_channels * (2 if card.cell_input else 1)
    channels = [first] + [card.width] * (card.depth - 1) + [card.in_channels]
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(card.depth):
        shapes[f"body.{2 * layer}.weight"] = (channels[layer + 1], channels[layer], 3, 3)
        shapes[f"body.{2 * layer}.bias"] = (channels[layer + 1],)
    return shapes


def _state_mismatch(expected: dict[str, tuple[int, ...]], found: dict[str, Any]) -> str:
    """What differs between the tensors (shapes) a network expects and those a file holds, in words ("" if none)."""

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f"... and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [
        f"{k} is {tuple(found[k].shape)}, the card's network has {tuple(expected[k])}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k])
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing: {names(missing)}")
    if extra:
        parts.append(f"{len(extra)} unexpected tensor(s): {names(extra)}")
    if shapes:
        parts.append(shapes[0] + (f" (and {len(shapes) - 1} more of another shape)" if len(shapes) > 1 else ""))
    return "; ".join(parts)


#: The largest pickle of a torch file read to tell a training checkpoint (its tensors are stored apart).
_PICKLE_BYTES = 16 * 2**20


def is_training_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint written by ``geosr train`` (OUTPUT.ckpt: a torch zip file whose pickle
    holds the run's state, see :func:`geosr.training.train.train`), which is not a model file."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == "data.pkl"]
            if len(pickles) != 1 or pickles[0].file_size > _PICKLE_BYTES:
                return False
            data = archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError):
        return False
    return all(key in data for key in (b"model", b"optimizer", b"epoch", b"step", b"seconds"))


def refuse_checkpoint(path: str | Path) -> None:
    """A :class:`ModelError` naming what to do with a training checkpoint given where a model is expected (its
    safetensors header could not be read: "header too large")."""
    if not is_training_checkpoint(path):
        return
    path = str(path)
    model = path[: -len(".ckpt")] if path.endswith(".ckpt") else ""
    belongs = f" ('{model}')" if model and Path(model).is_file() else ""
    raise ModelError(
        f"'{path}' is a training checkpoint, not a model; continue its run with geosr train --resume {path}, or "
        f"use the model file it belongs to{belongs}"
    )


def load_model(model: str | Path | None = None, device: Any = "cpu") -> LoadedModel:
    """Load a shipped model by name, or a model file by path, onto ``device`` in eval mode."""
    path = resolve_model(model)
    try:
        card = read_card(path)
    except ModelError:
        refuse_checkpoint(path)  # a training checkpoint: say so, and what to do with it
        raise
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read model file {path} ({exc})") from None
    # checked against the card's shapes before the network is built: a card claiming a depth of 10^9 built layers
    # until memory ran out
    if 2 * card.depth > len(tensors) + 1000:  # counted first: a depth of 10^9 would make 2 x 10^9 expected shapes
        mismatch = f"{len(tensors)} tensors, where the card's network of depth {card.depth} has {2 * card.depth}"
    else:
        mismatch = _state_mismatch(card_shapes(card), tensors)
    if mismatch:
        raise ModelError(
            f"model file {path} does not match its card ({mismatch}); re-save it with geosr or pass another model"
        )
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise ModelError(
                f"model file {path} holds {str(tensor.dtype).replace('torch.', '')} weights ({name}), not floating "
                "point numbers; re-save it with geosr or pass another model"
            )
        if not bool(torch.isfinite(tensor).all()):  # every output would be NaN, written as nodata without a word
            raise ModelError(
                f"model file {path} has NaN or infinite weights ({name}): a training that diverged, or a damaged "
                "file; train it again or pass another model"
            )
    network = VDSR(card.in_channels, depth=card.depth, width=card.width, cell_input=card.cell_input)
    network.load_state_dict(tensors, strict=True)
    network.eval().requires_grad_(False).to(select_device(device))  # torch asserted, for CUDA it lacks
    # absolute: dask tasks carry the path, and may run in another working directory (or on another machine's worker)
    return LoadedModel(network, card, os.path.abspath(path), _digest(path))
