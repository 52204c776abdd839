"""Model files: the VDSR network, its weight files and the models shipped with geosr.

A model file is a safetensors file: the network's tensors plus a JSON model card stored in the
file's metadata under the key ``geosr``. Loading never unpickles anything. Shipped models live in
``geosr/models/weights/NAME.safetensors``.
"""

from __future__ import annotations

from geosr.models.card import ModelCard, read_card
from geosr.models.registry import DEFAULT_MODEL, list_models, resolve_model

__all__ = ["DEFAULT_MODEL", "ModelCard", "list_models", "read_card", "resolve_model"]
