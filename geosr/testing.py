"""Synthetic data and small models for tests, examples and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fbm_surface(
    shape: tuple[int, int], *, beta: float = 3.0, seed: int = 0, relief: float = 500.0, base: float = 300.0
) -> np.ndarray:
    """Fractional Brownian surface (power spectrum ~ k**-beta) scaled to ``relief`` metres above ``base``."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    amplitude = k ** (-beta / 2)
    amplitude[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=shape)
    field = (field - field.min()) / (np.ptp(field) or 1.0)
    return (base + relief * field).astype(np.float32)


def random_model(
    path: str | Path,
    *,
    in_channels: int = 1,
    depth: int = 4,
    width: int = 8,
    seed: int = 0,
    name: str = "random-test",
    interpolation: str = "bicubic",
    conserve: bool = False,
    cell_input: bool = False,
    calibrate: bool = False,
    fill_trend: float = 0.0,
) -> Path:
    """Save a randomly initialised (untrained) VDSR to ``path``; right for pipeline properties only.

    ``interpolation`` names the kernel of its input (see :data:`geosr.tiling.KERNELS`); ``conserve``
    is the card's default for conservation; ``cell_input`` makes the network take the input cells;
    ``calibrate`` is the card's default for self-calibration; ``fill_trend`` the card's trend of the
    fill next to missing cells (:func:`geosr.tiling.extend_into_missing`).
    """
    import torch

    from geosr.models.card import ModelCard
    from geosr.models.files import save_model
    from geosr.models.vdsr import VDSR
    from geosr.tiling import KERNELS

    torch.manual_seed(seed)
    network = VDSR(in_channels, depth=depth, width=width, cell_input=cell_input)
    with torch.no_grad():
        network.body[-1].weight.mul_(10.0)
    card = ModelCard(
        name=name,
        in_channels=in_channels,
        depth=depth,
        width=width,
        bands=[f"band{i + 1}" for i in range(in_channels)],
        units=[""] * in_channels,
        description="Randomly initialised, untrained: for testing the pipeline, not for use.",
        interpolation=KERNELS[interpolation].description,
        conserve=conserve,
        cell_input=cell_input,
        calibrate=calibrate,
        fill_trend=fill_trend,
    )
    return save_model(network, card, path)
