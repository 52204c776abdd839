"""The training loop: VDSR on mixed-scale batches of area-averaged pairs, residual learning.

Recipe (Kim et al. 2016, adapted): He initialisation, flips and rotations, several scales mixed in
every batch, loss = mean squared error of the residual over valid pixels. Optimiser either the
paper's SGD (momentum 0.9, weight decay 1e-4, high learning rate with adjustable gradient clipping to
[-theta/lr, theta/lr]) or Adam; the budget is a number of epochs or of minutes, whichever ends first.
Checkpoints (model + optimiser + step) are written every epoch so a run can resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geosr.models.card import ModelCard
from geosr.models.files import save_model
from geosr.models.vdsr import VDSR
from geosr.training.data import Sample, cut_sample


@dataclass
class TrainConfig:
    scales: tuple[int, ...] = (2, 3, 4)
    patch: int = 48
    batch_size: int = 16
    steps_per_epoch: int = 100
    epochs: int = 1000
    minutes: float | None = None
    optimizer: str = "adam"
    lr: float = 1e-4
    lr_decay_epochs: int = 0
    clip_theta: float = 0.01
    weight_decay: float = 1e-4
    depth: int = 20
    width: int = 64
    precision: str = "fp32"
    device: str = "cpu"
    seed: int = 0
    val_samples: int = 64
    square_pixels: bool = True
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Batches:
    """Mixed-scale random batches from a list of normalised rasters (picked in proportion to area)."""

    def __init__(self, rasters: Sequence[np.ndarray], config: TrainConfig, seed: int) -> None:
        self.rasters = list(rasters)
        self.config = config
        self.rng = np.random.default_rng(seed)
        areas = np.array([r.shape[1] * r.shape[2] for r in self.rasters], dtype=np.float64)
        self.weights = areas / areas.sum()

    def sample(self) -> Sample:
        cfg = self.config
        while True:
            raster = self.rasters[int(self.rng.choice(len(self.rasters), p=self.weights))]
            scale = int(self.rng.choice(cfg.scales))
            sample = cut_sample(raster, scale, cfg.patch, self.rng, square_pixels=cfg.square_pixels)
            if sample is not None:
                return sample

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        samples = [self.sample() for _ in range(n)]
        return (
            torch.from_numpy(np.stack([s.ilr for s in samples])),
            torch.from_numpy(np.stack([s.target for s in samples])),
            torch.from_numpy(np.stack([s.valid for s in samples])),
        )


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weight = valid.to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def evaluate_batches(
    network: VDSR, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor], device: torch.device, precision: str
) -> tuple[float, float]:
    """RMSE (normalised units) of the network and of bicubic on fixed validation samples."""
    ilr, target, valid = val
    network.eval()
    errs, base = [], []
    with torch.no_grad():
        for i in range(0, len(ilr), 16):
            x = ilr[i : i + 16].to(device)
            with _autocast(device, precision):
                residual = network.residual(x)
            out = x + residual.float()
            t, v = target[i : i + 16].to(device), valid[i : i + 16].to(device)
            errs.append(masked_mse(out, t, v).item())
            base.append(masked_mse(x, t, v).item())
    network.train()
    return math.sqrt(float(np.mean(errs))), math.sqrt(float(np.mean(base)))


def train(
    rasters: Sequence[np.ndarray],
    val_rasters: Sequence[np.ndarray],
    config: TrainConfig,
    output: str | Path,
    card: ModelCard,
    *,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a VDSR on normalised (band, y, x) rasters and save it with ``card`` to ``output``.

    Returns a summary: steps, seconds, final validation RMSE of the model and of bicubic.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    channels = rasters[0].shape[0]
    network = VDSR(channels, depth=config.depth, width=config.width).to(device)
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            network.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    checkpoint = Path(str(output) + ".ckpt")
    step, epoch, elapsed_before = 0, 0, 0.0
    if resume:
        state = torch.load(resume, map_location=device, weights_only=True)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, elapsed_before = int(state["step"]), int(state["epoch"]), float(state["seconds"])
        log(f"resumed from {resume} at epoch {epoch}, step {step}")
    batches = Batches(rasters, config, config.seed + 1000 * epoch + 1)
    val = Batches(val_rasters, config, config.seed + 7).batch(config.val_samples)
    started = time.perf_counter()
    history = []
    rmse, bicubic = evaluate_batches(network, val, device, config.precision)
    log(f"epoch {epoch}: val RMSE {rmse:.5f} vs bicubic {bicubic:.5f} ({100 * (1 - rmse / bicubic):+.1f}%)")
    while epoch < config.epochs:
        lr = config.lr * (0.1 ** (epoch // config.lr_decay_epochs) if config.lr_decay_epochs else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = []
        for _ in range(config.steps_per_epoch):
            ilr, target, valid = (t.to(device) for t in batches.batch(config.batch_size))
            with _autocast(device, config.precision):
                residual = network.residual(ilr)
            loss = masked_mse(ilr + residual.float(), target, valid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optimizer == "sgd":
                torch.nn.utils.clip_grad_value_(network.parameters(), config.clip_theta / lr)
            optimizer.step()
            losses.append(loss.item())
            step += 1
        epoch += 1
        seconds = elapsed_before + time.perf_counter() - started
        rmse, bicubic = evaluate_batches(network, val, device, config.precision)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_rmse": rmse, "val_bicubic": bicubic})
        log(
            f"epoch {epoch} step {step} {seconds / 60:.1f} min: loss {np.mean(losses):.5f}, val RMSE {rmse:.5f} "
            f"vs bicubic {bicubic:.5f} ({100 * (1 - rmse / bicubic):+.1f}%)"
        )
        torch.save(
            {
                "model": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "epoch": epoch,
                "seconds": seconds,
            },
            checkpoint,
        )
        card.training.update(
            {
                "steps": step,
                "epochs": epoch,
                "cpu_seconds" if device.type == "cpu" else "seconds": round(seconds),
                "config": {k: v for k, v in asdict(config).items() if k != "extra"},
            }
        )
        card.metrics.update({"val_rmse_normalised": round(rmse, 6), "val_bicubic_rmse_normalised": round(bicubic, 6)})
        save_model(network.cpu(), card, output)
        network.to(device)
        if config.minutes is not None and seconds >= config.minutes * 60:
            log(f"budget of {config.minutes} minutes reached")
            break
    return {"steps": step, "epochs": epoch, "history": history}
