"""The models shipped inside the package and how a model name or path is resolved."""

from __future__ import annotations

import os
from pathlib import Path

from geosr.errors import ModelError
from geosr.models.card import ModelCard, read_card

WEIGHTS_DIR = Path(__file__).with_name("weights")
#: Model used when none is named.
DEFAULT_MODEL = "dem"


def list_models() -> dict[str, ModelCard]:
    """Cards of the models shipped with geosr, by name."""
    return {path.stem: read_card(path) for path in sorted(WEIGHTS_DIR.glob("*.safetensors"))}


def resolve_model(model: str | Path | None) -> Path:
    """Path of a model given by shipped name or by file path (``None`` means the default model)."""
    if model is not None and not isinstance(model, str | os.PathLike):  # a network, a number: str() is no name
        raise ModelError(
            f"model must be a shipped model's name, a model file's path or a loaded model "
            f"(geosr.models.files.load_model), got a {type(model).__name__}"
        )
    name = DEFAULT_MODEL if model is None else os.fspath(model)
    # a name with a folder or the suffix in it ('./dem', 'dem.safetensors') is a path, never a shipped model
    looks_like_path = isinstance(model, Path) or "/" in name or "\\" in name or name.endswith(".safetensors")
    shipped = WEIGHTS_DIR / f"{name}.safetensors"
    if not looks_like_path and shipped.is_file():
        return shipped
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if name and path.is_dir():  # Path('') is the working folder
        inside = sorted(p.name for p in path.glob("*.safetensors"))
        hint = f"it holds {', '.join(inside[:3])}" if inside else "it holds no .safetensors file"
        raise ModelError(f"model {name!r} is a folder, not a model file ({hint}); pass the path of a .safetensors file")
    available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
    if not available:
        where = "no trained model ships with this version of geosr yet"
        hint = "pass the path of a .safetensors model file (see `geosr models`)"
    else:
        where = f"shipped models: {', '.join(available)}"
        hint = "pass one of those names or the path of a .safetensors model file"
    if model is None:
        raise ModelError(f"the default model {DEFAULT_MODEL!r} is not installed ({where}); {hint}")
    raise ModelError(f"unknown model {name!r}: not a shipped model nor an existing file ({where}); {hint}")
