"""Devices: the names geosr takes (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) and the torch device each
one picks. Below :mod:`geosr.models` and :mod:`geosr.predict`, which both choose one; torch is imported where a
device is picked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geosr.errors import DeviceError

if TYPE_CHECKING:
    import torch

#: The device names geosr takes (``cuda:N`` for the Nth GPU)
DEVICES = ("auto", "cpu", "cuda", "mps")


def select_device(device: str | None = "auto") -> torch.device:
    """The torch device for a name: ``auto`` picks CUDA, then Apple MPS, then the CPU."""
    import torch

    name = device_name(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    instead = "use --device cpu or auto (device='cpu' in Python)"
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was asked for but no CUDA GPU is available; {instead}")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device {name!r} was asked for but Apple MPS is not available; {instead}")
    try:
        return torch.device(name)
    except RuntimeError:  # 'cuda:x', 'cpu:1:2'
        raise DeviceError(
            f"unknown device {name!r}; choose one of {', '.join(DEVICES)} (cuda:N for the Nth GPU)"
        ) from None


def device_name(device: Any) -> str:
    """The lower-case name of a device given as text, a ``torch.device`` or ``None`` (``auto``), refused unless it is
    one of :data:`DEVICES` (``cuda:1``: a numbered one). Whether it is present is :func:`select_device`'s to say, where
    the work runs (a lazy result's tasks may run on a cluster's GPU workers)."""
    name = "auto" if device is None else str(device).strip().lower()
    if not isinstance(device, str | type(None)) and type(device).__name__ != "device":
        raise DeviceError(f"device must be a name such as 'cpu' or 'cuda', got a {type(device).__name__}")
    if name.split(":")[0] not in DEVICES:
        raise DeviceError(f"unknown device {str(device)!r}; choose one of {', '.join(DEVICES)}")
    return name
