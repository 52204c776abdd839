"""The training loop: VDSR on mixed-scale batches of area-averaged pairs, residual learning.

Recipe (Kim et al. 2016, adapted): He initialisation, flips and rotations, several scales mixed in
every batch, loss = mean squared error over valid pixels, averaged between the output itself and
the output after mass conservation (:mod:`geosr.conserve`), so that the model is good both alone and
with ``--conserve``. Optimiser either the
paper's SGD (momentum 0.9, weight decay 1e-4, high learning rate with adjustable gradient clipping to
[-theta/lr, theta/lr]) or Adam; the budget is a number of epochs or of minutes, whichever ends first.
Checkpoints (model + optimiser + step + patch sampler + recipe) are written every epoch so a run can
resume; a resume with another recipe (data, scales, patch, batch, seed...) is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geosr.conserve import conserve_torch
from geosr.errors import GeosrWarning, InputError, ModelError, TrainingDiverged, first_line
from geosr.io import replaced_atomically
from geosr.models.card import ModelCard
from geosr.models.files import load_model, save_model
from geosr.models.vdsr import VDSR
from geosr.predict import warn_emulated_precision
from geosr.tiling import KERNELS, fill_radius
from geosr.training.data import Prepared, Sample


@dataclass
class TrainConfig:
    scales: tuple[int, ...] = (2, 3, 4)
    patch: int = 48
    batch_size: int = 16
    steps_per_epoch: int = 100
    #: the budget, counted from the start of the run a resume continues: epochs, minutes or both (whichever ends
    #: first); None for no limit of that kind (at least one must be set, except to resume: both None continue the
    #: budget kept in the checkpoint, :data:`DEFAULT_EPOCHS` for one written before checkpoints kept it)
    epochs: int | None = 1000
    minutes: float | None = None
    optimizer: str = "adam"
    lr: float = 1e-4
    lr_decay_epochs: int = 0
    cosine: bool = False
    loss: str = "mse"
    clip_theta: float = 0.01
    weight_decay: float = 1e-4
    depth: int = 20
    width: int = 64
    precision: str = "fp32"
    device: str = "cpu"
    seed: int = 0
    val_samples: int = 64
    square_pixels: bool = True
    interpolation: str = "bicubic"
    cell_input: bool = False  # the network also takes the input cells (geosr.models.vdsr)
    #: fine pixels at each side of a patch left out of the loss and the validation RMSE: there the network's
    #: receptive field (20 pixels for 20 layers) reaches the patch's zero padding, which inference never
    #: sees (the tiler's halo gives every output pixel its real neighbours); 0 counts every pixel
    loss_margin: int = 0
    #: missing coarse cells next to data filled from their neighbours, as inference fills them
    #: (geosr.tiling.extend_into_missing); False: the band mean, as the shipped models were trained
    fill_missing: bool = True
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: The budget of ``geosr train`` given neither --epochs nor --minutes, and of a resumed run given neither whose
#: checkpoint does not keep its run's budget (written before checkpoints kept it).
DEFAULT_EPOCHS = 50


def _budget_options(epochs: int | None, minutes: float | None) -> str:
    """A budget as the options that ask for it: ``--epochs 10 --minutes 30``."""
    given = [f"--epochs {epochs}"] if epochs is not None else []
    return " ".join(given + ([f"--minutes {minutes:g}"] if minutes is not None else []))


def _kept_budget(state: dict[str, Any]) -> tuple[int | None, float | None] | None:
    """The budget (epochs, minutes) of the run that wrote a checkpoint, or None where it keeps none (written
    before checkpoints kept it)."""
    kept = state.get("budget")
    if not isinstance(kept, dict) or (kept.get("epochs") is None and kept.get("minutes") is None):
        return None
    epochs, minutes = kept.get("epochs"), kept.get("minutes")
    return None if epochs is None else int(epochs), None if minutes is None else float(minutes)


def _spent(budget: str, config: TrainConfig) -> str:
    """What budget a resumed run given neither --epochs nor --minutes has spent: its checkpoint's, or the default."""
    if budget == "kept":
        return f"all of the budget of the run that wrote it ({_budget_options(config.epochs, config.minutes)})"
    return (
        f"the default budget of {DEFAULT_EPOCHS} epochs, used without --epochs or --minutes where a checkpoint "
        "keeps no budget of its own (written by an older geosr)"
    )


#: Random patches tried in a row before a raster set is declared unable to give one.
MAX_TRIES = 10_000


class Batches:
    """Mixed-scale random batches from a list of normalised rasters.

    Rasters are picked in proportion to ``weights`` (default: their area).
    """

    def __init__(
        self,
        rasters: Sequence[np.ndarray],
        config: TrainConfig,
        seed: int,
        weights: Sequence[float] | None = None,
        what: str = "training",
        fill_trend: float = 0.0,
    ) -> None:
        self.what = what
        self.fill_trend = fill_trend  # the model card's (geosr.tiling.extend_into_missing), when config fills
        self.rasters = list(rasters)
        self.config = config
        self.rng = np.random.default_rng(seed)
        if weights is None:
            weights = [r.shape[1] * r.shape[2] for r in self.rasters]
        chances = np.asarray(weights, dtype=np.float64)
        self.weights = chances / chances.sum()
        self.prepared: dict[tuple[int, int], Prepared] = {}

    def _prepared(self, index: int, scale: int) -> Prepared:
        key = (index, scale)
        if key not in self.prepared:
            cfg = self.config
            kernel = KERNELS[cfg.interpolation]
            # every cell inference would fill for a network of this depth, conserving (the larger halo)
            fill = fill_radius(cfg.depth + scale, scale, kernel) if cfg.fill_missing else 0
            self.prepared[key] = Prepared(self.rasters[index], scale, kernel, fill, self.fill_trend)
        return self.prepared[key]

    def sample(self) -> Sample:
        cfg = self.config
        for _ in range(MAX_TRIES):
            index = int(self.rng.choice(len(self.rasters), p=self.weights))
            scale = int(self.rng.choice(cfg.scales))
            sample = self._prepared(index, scale).cut(cfg.patch, self.rng, square_pixels=cfg.square_pixels)
            if sample is not None:
                return sample
        raise InputError(
            f"no {cfg.patch}-pixel patch of the {self.what} part with at least half of its pixels valid was found "
            f"in {MAX_TRIES} tries at scales {', '.join(map(str, cfg.scales))} (a patch must hold whole cells of "
            f"every scale, and 15% at one end of each raster is the validation part); use a smaller --patch-size, "
            f"smaller --scales, or rasters with more valid data"
        )

    def scales_without_patches(self) -> list[int]:
        """The scales at which no raster can give a patch with half its pixels valid (:meth:`Prepared.can_cut`):
        nodata can leave a scale none where the rasters are large enough for it, and :meth:`sample` would then
        quietly train the other scales alone."""
        cfg = self.config
        return [
            int(scale)
            for scale in cfg.scales
            if not any(self._prepared(index, int(scale)).can_cut(cfg.patch) for index in range(len(self.rasters)))
        ]

    def batch(self, n: int) -> Batch:
        samples = [self.sample() for _ in range(n)]
        return Batch(
            torch.from_numpy(np.stack([s.ilr for s in samples])),
            torch.from_numpy(np.stack([s.target for s in samples])),
            torch.from_numpy(np.stack([s.valid for s in samples])),
            torch.from_numpy(np.stack([s.coarse_up for s in samples])),
            torch.tensor([s.scale for s in samples]),
        )


@dataclass
class Batch:
    ilr: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor
    coarse_up: torch.Tensor
    scales: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.ilr, self.target, self.valid, self.coarse_up, self.scales)))

    def __getitem__(self, index: slice) -> Batch:
        return Batch(self.ilr[index], self.target[index], self.valid[index], self.coarse_up[index], self.scales[index])

    def conserved(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` with each sample's cell means set to its coarse input (see geosr.conserve).

        Patches start on a cell boundary; where the patch size is not a multiple of a scale (``--patch-size
        40 --scales 3``), the whole cells are conserved and the partial cells at the far edges, whose
        averages take in pixels outside the patch, are left as they are (they were all left before, so the
        conserved half of the loss and the conserved validation RMSE were the plain ones at that scale).
        """
        result = out.clone()
        for scale in self.scales.unique().tolist():
            pick = self.scales == scale
            s = int(scale)
            if out.shape[-1] % s == 0 and out.shape[-2] % s == 0:
                result[pick] = conserve_torch(out[pick], self.coarse_up[pick], s)
                continue
            h, w = (out.shape[-2] // s) * s, (out.shape[-1] // s) * s
            if h and w:
                part = out[pick].clone()
                part[..., :h, :w] = conserve_torch(out[pick][..., :h, :w], self.coarse_up[pick][..., :h, :w], s)
                result[pick] = part
        return result

    def loss(self, residual: torch.Tensor, kind: str = "mse", margin: int = 0) -> torch.Tensor:
        """Mean of the masked MSE of the output and of the conserved output (see module docstring).

        ``kind="relative"`` divides each sample's squared error by the error of its interpolated input
        (the ILR) plus the batch's mean ILR error, so that every scale and every relief counts alike
        instead of the coarsest scale and the steepest patches dominating the sum. ``margin`` pixels at
        each side are left out (:attr:`TrainConfig.loss_margin`; conservation still uses the whole patch).
        """
        out = self.ilr + residual.float()
        conserved = self.conserved(out)
        inner = _inner(margin)
        out, conserved, ilr, target, valid = (t[inner] for t in (out, conserved, self.ilr, self.target, self.valid))
        errors = 0.5 * (sample_mse(out, target, valid) + sample_mse(conserved, target, valid))
        if kind == "mse":
            weights = valid.flatten(1).sum(1).to(errors.dtype)
            return (errors * weights).sum() / weights.sum().clamp(min=1.0)
        baseline = sample_mse(ilr, target, valid).detach()
        return (errors / (baseline + baseline.mean()).clamp(min=1e-12)).mean()


def _inner(margin: int) -> tuple[slice, ...]:
    """The index of a (N, C, H, W) batch without ``margin`` pixels at each side."""
    cut = slice(margin, -margin) if margin > 0 else slice(None)
    return (Ellipsis, cut, cut)


def learning_rate(config: TrainConfig, epoch: int, seconds: float = 0.0) -> float:
    """Learning rate of an epoch: constant, step decay (x0.1 every ``lr_decay_epochs``) or cosine to 0 at the
    end of the budget: of the epochs, or of the minutes where ``seconds`` (trained so far) have used more of
    them (``--minutes 60 --schedule cosine`` anneals over the hour, not over the 50 default epochs)."""
    if config.cosine:
        progress = 0.0 if config.epochs is None else epoch / config.epochs
        if config.minutes is not None:
            progress = max(progress, min(1.0, seconds / (config.minutes * 60)))
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.lr_decay_epochs:
        return config.lr * 0.1 ** (epoch // config.lr_decay_epochs)
    return config.lr


def sample_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Masked mean squared error of each sample of a (N, C, H, W) batch."""
    weight = valid.to(pred.dtype)
    return ((pred - target) ** 2 * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1.0)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weight = valid.to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _diverged(what: str, lr: float, saved: bool, output: str | Path) -> TrainingDiverged:
    """The one-line error of a training whose numbers became NaN or infinite."""
    if saved:
        kept = f"{output} holds the last finished epoch's model"
    else:
        kept = f"{output} is unchanged" if Path(output).exists() else "this run wrote no model"
    return TrainingDiverged(
        f"training diverged: {what} (learning rate {lr:g}); lower --lr (for example {lr / 10:g}); {kept}"
    )


def _gain(rmse: float, base: float) -> str:
    """How much lower ``rmse`` is than the interpolation's ``base``, in percent (n/a for a base of 0)."""
    return f"{100 * (1 - rmse / base):+.1f}%" if base > 0 else "n/a: the interpolation is exact"


#: Validation samples per network call (:func:`evaluate_batches`); an RMSE is the root of the chunks' mean MSE.
VAL_CHUNK = 16


def evaluate_batches(
    network: VDSR, val: Batch, device: torch.device, precision: str, margin: int = 0
) -> tuple[float, float, float]:
    """RMSE (normalised units) of the network, the network + conservation, and the ILR on validation samples
    (without ``margin`` pixels at each side of a patch, :attr:`TrainConfig.loss_margin`)."""
    network.eval()
    inner = _inner(margin)
    errs, cons = [], []
    with torch.no_grad():
        for i in range(0, len(val.ilr), VAL_CHUNK):
            part = val[i : i + VAL_CHUNK].to(device)
            with _autocast(device, precision):
                residual = network.residual(network.inputs(part.ilr, part.coarse_up))
            out = part.ilr + residual.float()
            target, valid = part.target[inner], part.valid[inner]
            errs.append(masked_mse(out[inner], target, valid).item())
            cons.append(masked_mse(part.conserved(out)[inner], target, valid).item())
    network.train()
    base = interpolation_rmse(val.ilr, val, margin)
    return math.sqrt(float(np.mean(errs))), math.sqrt(float(np.mean(cons))), base


def interpolation_rmse(ilr: torch.Tensor, val: Batch, margin: int = 0) -> float:
    """RMSE (normalised units) of an interpolation ``ilr`` of the validation patches ``val`` against their
    targets, without ``margin`` pixels at each side, in :data:`VAL_CHUNK` chunks as the network's."""
    inner = _inner(margin)
    chunks = [
        masked_mse(
            ilr[i : i + VAL_CHUNK][inner], val.target[i : i + VAL_CHUNK][inner], val.valid[i : i + VAL_CHUNK][inner]
        )
        for i in range(0, len(ilr), VAL_CHUNK)
    ]
    return math.sqrt(float(np.mean([c.item() for c in chunks])))


def bicubic_rmse(
    val_rasters: Sequence[np.ndarray], config: TrainConfig, val: Batch, fill_trend: float = 0.0
) -> float | None:
    """RMSE (normalised units) of bicubic interpolation on the validation patches ``val``, which were cut
    with ``config``'s kernel and ``fill_trend`` (:func:`interpolation_rmse`): the classical baseline every
    epoch is also printed against. None when the network's input is bicubic already."""
    if config.interpolation == "bicubic":
        return None
    # the same seed cuts the same patches: where they lie depends on the data and the seed, not the kernel
    bicubic = replace(config, interpolation="bicubic")
    same = Batches(val_rasters, bicubic, config.seed + 7, what="validation", fill_trend=fill_trend)
    same = same.batch(config.val_samples)
    if not (torch.equal(same.target, val.target) and torch.equal(same.valid, val.valid)):
        raise AssertionError("the bicubic validation patches are not the network's")
    return interpolation_rmse(same.ilr, val, config.loss_margin)


def training_bytes(config: TrainConfig, channels: int) -> int:
    """A lower bound of the memory a training step takes: the weights with their gradients and two optimiser
    states, and the activations the backward pass keeps (one float per feature per pixel per layer: each
    ReLU works in place). A 64-patch batch of 48-pixel patches for the 20 x 64 network: about 0.7 GiB by
    this count, 1.2 GiB measured (the process's peak)."""
    first = channels * (2 if config.cell_input else 1)
    weights = (first + (config.depth - 2) * config.width + channels) * 9 * config.width
    pixels = config.batch_size * config.patch**2
    return 4 * (4 * weights + pixels * config.width * (config.depth - 1))


def device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (the machine's for the CPU), or None where it cannot be told."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        if device.type == "cpu":
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError, RuntimeError):  # no sysconf (Windows), no such GPU
        pass
    return None


def _gib(size: int) -> str:
    gib = size / 2**30
    return f"{gib:.1f} GiB" if gib < 1e6 else f"{gib:.1e} GiB"


def check_memory(config: TrainConfig, channels: int, device: torch.device) -> None:
    """Refuse, before anything is allocated, a network or batch that cannot fit in ``device``'s memory (a huge
    width fails in the allocator, a huge batch swaps until the machine kills the run)."""
    total = device_memory(device)
    needed = training_bytes(config, channels)
    if total is None or needed <= total:
        return
    where = "this machine's" if device.type == "cpu" else f"the {device.type} device's"
    raise InputError(
        f"training with batch size {config.batch_size}, {config.patch}-pixel patches, depth {config.depth} and "
        f"width {config.width} needs at least {_gib(needed)}, more than {where} {_gib(total)} "
        "of memory; lower --batch-size, --patch-size, --depth or --width"
    )


def train(
    rasters: Sequence[np.ndarray],
    val_rasters: Sequence[np.ndarray],
    config: TrainConfig,
    output: str | Path,
    card: ModelCard,
    *,
    resume: str | Path | None = None,
    init: str | Path | None = None,
    weights: Sequence[float] | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train a VDSR on normalised (band, y, x) rasters and save it with ``card`` to ``output``.

    ``weights`` sets how often each raster is sampled (default: in proportion to its area).
    ``init`` starts from the weights of a model file of the same shape (fine-tuning, new optimiser);
    ``resume`` continues a checkpoint (weights, optimiser, step, the patch sampler's state). The card's
    ``interpolation`` is set from ``config.interpolation``; a model fine-tuned from one that conserves (or
    self-calibrates, or fills with a trend) by default does too, and any other conserves by default when its
    conserved validation RMSE is the lower.

    ``progress(step, total_steps)`` is called after every step; ``total_steps`` is None where the run has a budget
    of minutes (the minutes may end it before its epochs). Returns a summary: steps, epochs, seconds (trained in
    all, a resumed run's earlier ones too), ``ended_by`` (``"epochs"`` or ``"minutes"``: the budget that ended the
    run), the validation RMSE before training and a per-epoch history. A resumed run whose ``config`` has neither
    ``epochs`` nor ``minutes`` continues the budget kept in its checkpoint (:data:`DEFAULT_EPOCHS` where the
    checkpoint, written before they kept it, has none).
    """
    if config.epochs is None and config.minutes is None and not resume:
        raise InputError("a training run needs a budget: a number of epochs, of minutes, or both")
    checkpoint = Path(str(output) + ".ckpt")
    for path, what in ((Path(output), "writes its model"), (checkpoint, "keeps its checkpoint")):
        if path.is_dir():  # replacing it with the file would delete the folder and its files
            raise InputError(f"'{path}' is a folder, where this run {what}; move it or choose another output")
    if config.loss_margin < 0 or 2 * config.loss_margin >= config.patch:
        raise InputError(
            f"a loss margin of {config.loss_margin} pixels leaves nothing of a {config.patch}-pixel patch to learn "
            f"from; use a margin of 0 to {(config.patch - 1) // 2}, or larger patches"
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    warn_emulated_precision(device, config.precision)
    channels = rasters[0].shape[0]
    check_memory(config, channels, device)
    network = VDSR(channels, depth=config.depth, width=config.width, cell_input=config.cell_input).to(device)
    if card.in_channels != channels:  # found now, not when the first epoch's model is saved
        raise ModelError(f"the model card says {card.in_channels} channels, but the rasters have {channels} bands")
    card.depth, card.width = config.depth, config.width
    card.interpolation = KERNELS[config.interpolation].description
    card.cell_input = config.cell_input
    card.scales = [float(s) for s in config.scales]  # what it was trained for, whatever the card said
    state = _load_checkpoint(resume, device) if resume else None
    budget = "given"  # where the budget comes from: the options, the checkpoint, or the default
    if state is not None and config.epochs is None and config.minutes is None:
        kept = _kept_budget(state)  # resumed without --epochs or --minutes: the budget its run was given
        budget = "kept" if kept is not None else "default"
        epochs, minutes = kept if kept is not None else (DEFAULT_EPOCHS, None)
        config = replace(config, epochs=epochs, minutes=minutes)
    inherited = (state or {}).get("started_from")
    if init and inherited is not None:
        # resumed: the model it started from as it was when the run began (the --init file may have been
        # rewritten since, by this very run with -o the same file); the weights are the checkpoint's
        card.training["started_from"] = inherited["training"]
        card.conserve, card.calibrate = bool(inherited["conserve"]), bool(inherited["calibrate"])
        card.fill_trend = float(inherited["fill_trend"])
    elif init:
        start = load_model(init, "cpu")
        have = (start.card.in_channels, start.card.depth, start.card.width)
        if have != (channels, config.depth, config.width):
            raise ModelError(
                f"the model to start from ({init}) has {have[0]} channels, depth {have[1]} and width {have[2]}, "
                f"but training asks for {channels}, {config.depth} and {config.width}; match them or drop --init"
            )
        if start.card.cell_input and not config.cell_input:
            raise ModelError(f"the model to start from ({init}) takes the input cells; train with --cell-input")
        begin = start.network.with_cell_input() if config.cell_input and not start.card.cell_input else start.network
        network.load_state_dict(begin.state_dict())
        # the whole chain of earlier stages stays (each with its own started_from), without the bulky configs
        earlier = {k: v for k, v in start.card.training.items() if k != "config"}
        card.training["started_from"] = {"model": str(init), "interpolation": start.card.interpolation, **earlier}
        # the defaults of inference it was made for: conserved, self-calibrated, filled as the model started from
        card.conserve = card.conserve or start.card.conserve
        card.calibrate = card.calibrate or start.card.calibrate
        card.fill_trend = card.fill_trend or start.card.fill_trend
        if not resume:  # a resumed run continues its checkpoint's weights, not these
            log(f"starting from the weights of {init}")
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            network.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    recipe = _recipe(config, rasters, val_rasters, weights, init)
    step, epoch, elapsed_before = 0, 0, 0.0
    processor_before = 0.0  # CPU time of this process, all its threads (checkpoints before it was kept: 0)
    if resume:
        assert state is not None
        # first, so that a changed --depth, --width or --optimizer is named with its values
        _check_recipe(resume, state.get("recipe"), recipe, str(state.get("command") or ""))
        mismatch = InputError(
            f"checkpoint '{resume}' is of another network or optimiser; resume with the same --depth, --width, "
            "--bands, --cell-input and --optimizer as the run that wrote it"
        )
        # Adam's groups have betas, SGD's momentum: torch would load either into the other and fail later
        group = (state["optimizer"].get("param_groups") or [{}])[0] if isinstance(state["optimizer"], dict) else {}
        if ("momentum" if config.optimizer == "sgd" else "betas") not in group:
            raise mismatch
        try:
            network.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError):
            raise mismatch from None  # a checkpoint written before they kept their recipe
        step, epoch, elapsed_before = int(state["step"]), int(state["epoch"]), float(state["seconds"])
        processor_before = float(state.get("processor_seconds", 0.0))
        if state.get("command") and card.training.get("command"):
            # the card keeps the command that started the run and its folder (re-running it trains the same model)
            card.training["resumed_with"] = card.training["command"]
            card.training["command"] = state["command"]
            if state.get("folder"):
                card.training["resumed_in"] = card.training.get("folder", "")
                card.training["folder"] = state["folder"]
        if config.epochs is not None and epoch >= config.epochs:
            done = f"{epoch} epoch{'s' if epoch != 1 else ''}"
            raise InputError(
                f"checkpoint '{resume}' has already run {done}, and --epochs asks for {config.epochs}; "
                "ask for more epochs to continue it"
                if budget == "given"
                else f"checkpoint '{resume}' has already run {done}, {_spent(budget, config)}; ask for more epochs "
                f"with --epochs (more than {epoch}) to continue it"
            )
        if config.minutes is not None and elapsed_before >= config.minutes * 60:  # else one more epoch each time
            done = f"{elapsed_before / 60:.3g} minutes"
            raise InputError(
                f"checkpoint '{resume}' has already run {done}, and --minutes asks for {config.minutes:g}; "
                "ask for more minutes to continue it"
                if budget == "given"
                else f"checkpoint '{resume}' has already run {done}, {_spent(budget, config)}; ask for more minutes "
                "with --minutes to continue it"
            )
        continues = {
            "given": "",
            "kept": f"; continuing its run's budget ({_budget_options(config.epochs, config.minutes)})",
            "default": f"; it keeps no budget (an older checkpoint): the default of {DEFAULT_EPOCHS} epochs applies",
        }[budget]
        log(f"resumed from {resume} at epoch {epoch}, step {step}{continues}")
    # the training pairs' missing cells filled as inference will fill them for this card
    trend = card.fill_trend if config.fill_missing else 0.0
    # conserved by default when the card says so (the model it started from did), else when its conserved
    # output is the better one on the validation patches (decided again each epoch)
    conserve_given = card.conserve
    batches = Batches(rasters, config, config.seed + 1000 * epoch + 1, weights, fill_trend=trend)
    lacking = batches.scales_without_patches()
    if lacking:  # the card would list scales never trained
        raise InputError(
            f"no {config.patch}-pixel training patch with at least half of its pixels valid can be cut at scale"
            f"{'s' if len(lacking) > 1 else ''} {', '.join(map(str, lacking))} (their cells with a missing pixel are "
            f"missing, so nodata leaves too few whole cells); leave {'them' if len(lacking) > 1 else 'it'} out of "
            "--scales, use a smaller --patch-size, or rasters with more valid data"
        )
    if resume and "sampler" in state:
        # the patch sampler continues where it stopped, so a resumed run ends as an uninterrupted one would
        # (checkpoints written before it was kept continue with a fresh seed)
        batches.rng.bit_generator.state = state["sampler"]
    val = Batches(val_rasters, config, config.seed + 7, what="validation", fill_trend=trend)
    val = val.batch(config.val_samples)
    unvalidated = sorted(set(config.scales) - {int(s) for s in val.scales.tolist()})
    if unvalidated:  # a scale whose patches the validation part's nodata always rejects: say so, not silently
        warnings.warn(
            f"no validation patch at scale {', '.join(map(str, unvalidated))} (a patch needs half of its pixels in "
            "whole cells without nodata), so the validation RMSE covers the other scales only; validation parts "
            "with more data (15% at one end of each raster) would cover it",
            GeosrWarning,
            stacklevel=2,
        )
    started, processor_started = time.perf_counter(), time.process_time()
    history = []
    rmse, conserved, base = evaluate_batches(network, val, device, config.precision, config.loss_margin)
    initial = rmse
    bicubic = bicubic_rmse(val_rasters, config, val, trend)
    bicubic_or_base = base if bicubic is None else bicubic  # the network's input is bicubic, or bicubic apart

    def against(rmse: float) -> str:  # the network's own input kernel, and bicubic where that is another
        line = f"vs {config.interpolation} {base:.5f} ({_gain(rmse, base)})"
        return line if bicubic is None else f"{line}, bicubic {bicubic:.5f} ({_gain(rmse, bicubic)})"

    log(f"epoch {epoch}: val RMSE {rmse:.5f} {against(rmse)}")
    saved = False  # this run has written the model
    spent = elapsed_before
    ended_by = "epochs"
    total_steps = None  # a budget of minutes may end the run before its epochs: no total to count down to then
    if config.minutes is None and config.epochs is not None:
        total_steps = config.epochs * config.steps_per_epoch
    while config.epochs is None or epoch < config.epochs:
        # the time the budget is checked by (at the last epoch's end, or the run's start): an epoch starts only
        # while it is below the budget, so the cosine never reaches 0 (SGD's clipping divides by the rate)
        lr = learning_rate(config, epoch, spent)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = []
        for _ in range(config.steps_per_epoch):
            batch = batches.batch(config.batch_size).to(device)
            with _autocast(device, config.precision):
                residual = network.residual(network.inputs(batch.ilr, batch.coarse_up))
            loss = batch.loss(residual, config.loss, config.loss_margin)
            if not torch.isfinite(loss):
                raise _diverged(f"the loss is {loss.item()} at step {step + 1}", lr, saved, output)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optimizer == "sgd":
                torch.nn.utils.clip_grad_value_(network.parameters(), config.clip_theta / lr)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if progress is not None:
                progress(step, total_steps)
        seconds = spent = elapsed_before + time.perf_counter() - started
        processor = processor_before + time.process_time() - processor_started
        rmse, conserved, base = evaluate_batches(network, val, device, config.precision, config.loss_margin)
        if not math.isfinite(rmse):
            raise _diverged(f"the validation RMSE is {rmse} after epoch {epoch + 1}", lr, saved, output)
        epoch += 1
        history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "val_rmse": rmse,
                "val_rmse_conserved": conserved,
                "val_interpolation": base,
                "val_bicubic": bicubic_or_base,
            }
        )
        log(
            f"epoch {epoch} step {step} {seconds / 60:.1f} min: loss {np.mean(losses):.5f}, val RMSE {rmse:.5f} "
            f"(conserved {conserved:.5f}) {against(rmse)}"
        )
        state = {
            "model": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "epoch": epoch,
            "seconds": seconds,
            "processor_seconds": processor,
            "sampler": batches.rng.bit_generator.state,
            "command": card.training.get("command", ""),
            "folder": card.training.get("folder", ""),
            "recipe": json.dumps(recipe, sort_keys=True),
            # what a resume given neither --epochs nor --minutes continues
            "budget": {"epochs": config.epochs, "minutes": config.minutes},
        }
        if init:  # what the card takes from the --init model, kept for a resume
            state["started_from"] = {
                "training": card.training["started_from"],
                "conserve": conserve_given,
                "calibrate": card.calibrate,
                "fill_trend": card.fill_trend,
            }
        # a run stopped while writing (Ctrl-C, a killed job) keeps the previous epoch's checkpoint whole
        with replaced_atomically(checkpoint) as tmp:
            torch.save(state, tmp)
        card.training.update(
            {
                "steps": step,
                "epochs": epoch,
                # wall-clock time (the name is kept for the cards written before processor_seconds)
                "cpu_seconds" if device.type == "cpu" else "seconds": round(seconds),
                "processor_seconds": round(processor),
                "config": {k: v for k, v in asdict(config).items() if k != "extra"},
            }
        )
        card.conserve = conserve_given or conserved < rmse
        card.metrics.update(
            {
                "val_rmse_normalised": round(rmse, 6),
                "val_rmse_conserved_normalised": round(conserved, 6),
                "val_interpolation_rmse_normalised": round(base, 6),
                "val_bicubic_rmse_normalised": round(bicubic_or_base, 6),
            }
        )
        save_model(network.cpu(), card, output)
        saved = True
        network.to(device)
        if config.minutes is not None and seconds >= config.minutes * 60:
            log(f"budget of {config.minutes:g} minutes reached")
            ended_by = "minutes"
            break
    return {
        "steps": step,
        "epochs": epoch,
        "seconds": spent,
        "ended_by": ended_by,
        "initial_val_rmse": initial,
        "history": history,
    }


#: What a resumed run may change: the budget, the learning rate from there on (lowered after a
#: divergence), and where and how precisely it runs. Everything else in the config, the rasters (their
#: bands and values), ``weights`` and ``init`` make the recipe.
RESUMABLE = frozenset(
    {"epochs", "minutes", "lr", "cosine", "lr_decay_epochs", "device", "precision", "threads", "extra"}
)

#: The command-line option of each recipe entry, for the refusal of a resume that changes it.
_OPTIONS = {
    "scales": "--scales",
    "patch": "--patch-size",
    "batch_size": "--batch-size",
    "steps_per_epoch": "--steps-per-epoch",
    "optimizer": "--optimizer",
    "loss": "--loss",
    "interpolation": "--interpolation",
    "cell_input": "--cell-input",
    "depth": "--depth",
    "width": "--width",
    "seed": "--seed",
    "init": "--init",
    "fill_missing": "--fill-missing",
}


def _recipe(
    config: TrainConfig,
    rasters: Sequence[np.ndarray],
    val_rasters: Sequence[np.ndarray],
    weights: Sequence[float] | None,
    init: str | Path | None,
) -> dict[str, Any]:
    """What a run trains on and how, less what a resume may change (:data:`RESUMABLE`), as plain JSON values."""
    digest = hashlib.sha256()
    for raster in (*rasters, None, *val_rasters):
        if raster is None:
            digest.update(b"|validation|")
            continue
        array = np.ascontiguousarray(raster)
        digest.update(repr((array.shape, array.dtype.str)).encode())
        digest.update(array.data)
    recipe = {k: v for k, v in asdict(config).items() if k not in RESUMABLE}
    if not recipe.get("loss_margin"):  # the default, as in checkpoints written before the option
        recipe.pop("loss_margin", None)
    if not recipe.get("fill_missing"):  # the band mean, as in checkpoints written before the option
        recipe.pop("fill_missing", None)
    recipe.update(
        data=digest.hexdigest(),
        weights=None if weights is None else [float(w) for w in weights],
        init=None if init is None else str(init),
    )
    return json.loads(json.dumps(recipe, default=str))


def _check_recipe(resume: str | Path, stored: str | None, recipe: dict[str, Any], command: str) -> None:
    """Refuse to resume a checkpoint with another recipe: the weights would mix two trainings, and the card
    would record the command, data and scales of only one of them."""
    if not stored:  # written before checkpoints kept their recipe
        return
    before = json.loads(stored)
    changed = [k for k in sorted(set(before) | set(recipe)) if before.get(k) != recipe.get(k)]
    if not changed:
        return
    said = []
    for key in changed:
        name = _OPTIONS.get(key, key)
        if key == "data" and {"patch", "scales"} & set(changed):
            continue  # the validation part's length follows the patch size and the scales: named below
        if key == "data":
            # or the same rasters split at their other end: geosr.cli.train.split_validation has chosen the end
            # by the band with the least data since 2026-12-07, so an older multiband checkpoint may differ
            said.append("other rasters or --bands, or another validation part of them")
        else:
            was, now = before.get(key), recipe.get(key)
            if key == "scales":
                was, now = ",".join(map(str, was or [])), ",".join(map(str, now or []))
            if key == "fill_missing":
                was, now = ("neighbours" if v else "mean" for v in (was, now))
            if isinstance(was, bool) and isinstance(now, bool):  # a switch: --cell-input
                said.append(f"{'with' if was else 'without'} {name} then, {'with' if now else 'without'} it now")
                continue
            was, now = ("none" if v is None else v for v in (was, now))  # --init
            said.append(f"{name} {was} then, {now} now")
    start = f" ({command})" if command else ""
    raise InputError(
        f"checkpoint '{resume}' was written with another recipe ({'; '.join(said)}); resume it with the command "
        f"that started it{start} and --resume (only --epochs, --minutes, --lr, --schedule, --device and --precision "
        "may change), or start a new run (--init with its model fine-tunes it)"
    )


def _load_checkpoint(path: str | Path, device: torch.device) -> dict[str, Any]:
    """A training checkpoint written by :func:`train`, or one clear error."""
    keys = {"model", "optimizer", "step", "epoch", "seconds"}
    try:
        with warnings.catch_warnings():  # torch warns of a file of another pickle protocol: refused below anyway
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint '{path}' does not exist; pass the OUTPUT.ckpt file a run left") from None
    except Exception as exc:
        # torch's own message about an unsafe file suggests loading it with weights_only=False: not for a file
        # that is no checkpoint of ours
        why = "not a file of plain tensors" if "weights_only" in str(exc) else first_line(exc)
        raise InputError(
            f"'{path}' is not a geosr training checkpoint ({why}); pass the OUTPUT.ckpt file a run left"
        ) from None
    if not isinstance(state, dict) or not keys <= set(state):
        raise InputError(
            f"'{path}' is not a geosr training checkpoint (no {', '.join(sorted(keys))}); "
            "pass the OUTPUT.ckpt file a run left, not the model"
        )
    return state


def average_weights(start: str | Path, tuned: str | Path, alpha: float, output: str | Path | None = None) -> Path:
    """Replace a fine-tuned model's weights by ``(1 - alpha) * start + alpha * tuned`` (WiSE-FT).

    Averaging the weights of a model and of its fine-tuned version (Wortsman et al., "Robust
    fine-tuning of zero-shot models", CVPR 2022) keeps most of what fine-tuning gained on its data and
    much of what the starting model did well elsewhere. ``start`` must be the model ``tuned`` was
    fine-tuned from (same shape, or without the input cells that ``tuned`` takes: their weights count
    as zero, as they were when fine-tuning began). Writes ``output`` (default: ``tuned`` itself) with ``tuned``'s card,
    which records the average in ``training.weight_average`` (its validation figures, which describe
    the weights before the average, move to ``metrics.fine_tuned_before_weight_average``).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ModelError(f"the weight-average share of the fine-tuned model must be in [0, 1], got {alpha}")
    first, second = load_model(start, "cpu"), load_model(tuned, "cpu")
    if second.card.cell_input and not first.card.cell_input:
        # fine-tuned with --cell-input from a model without: the start's cell weights were zero
        first.network = first.network.with_cell_input()
    a, b = first.network.state_dict(), second.network.state_dict()
    if {k: v.shape for k, v in a.items()} != {k: v.shape for k, v in b.items()}:
        raise ModelError(f"{start} and {tuned} have different networks; average a model with its own fine-tuning")
    second.network.load_state_dict({k: (1.0 - alpha) * a[k] + alpha * b[k] for k in a})
    second.card.training["weight_average"] = {
        "alpha": alpha,
        "start": str(start),
        "how": f"(1 - {alpha:g}) x the weights of the model it started from + {alpha:g} x the fine-tuned weights "
        "(WiSE-FT, Wortsman et al. 2022)",
    }
    # the validation figures of training describe the weights before the average
    before = {k: second.card.metrics.pop(k) for k in list(second.card.metrics) if k.startswith("val_")}
    if before:
        second.card.metrics["fine_tuned_before_weight_average"] = before
    output = Path(output if output is not None else tuned)
    save_model(second.network, second.card, output)
    return output
