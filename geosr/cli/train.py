"""``geosr train``: fit a VDSR model to your own high-resolution rasters."""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geosr.cli.options import (
    device_option,
    echo_warning,
    int_list,
    overwrite_option,
    precision_option,
    reports_errors,
    state,
    stderr_is_terminal,
    verbose_option,
    warnings_as_lines,
)
from geosr.georef import square_on_ground, unit_key

if TYPE_CHECKING:
    import numpy as np


def _check_init_bands(init: str, names: list[str], first: str) -> None:
    """Refuse fine-tuning a multiband model on the bands it was trained on in another order: each channel
    would be taught a second quantity (the bands named on its card, named alike by the rasters)."""
    from geosr.errors import InputError
    from geosr.models.files import load_model

    card = load_model(init, "cpu").card
    if card.in_channels > 1 and sorted(card.bands) == sorted(names) and list(card.bands) != names:
        raise InputError(
            f"model {card.name!r} (--init) takes the bands {', '.join(card.bands)} in that order, but '{first}' "
            f"gives them as {', '.join(names)}; pick them in the model's order with --bands"
        )


def split_validation(data: np.ndarray, held: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """A (band, y, x) raster as (training part, validation part): the validation part is its last ``held``
    rows or columns along ``axis``, or its first where the last is mostly nodata in some band (a coastal
    DEM whose sea is there; a band missing there) and the band with the least data in the first holds
    more than the one with the least in the last, since a validation patch needs half of its pixels valid
    and an all-nodata band would never be validated."""
    import numpy as np

    length = data.shape[axis]
    first, last = np.take(data, range(held), axis=axis), np.take(data, range(length - held, length), axis=axis)

    def share(part: np.ndarray) -> float:  # the valid share of the band with the least data in the part
        return float(np.isfinite(part).reshape(part.shape[0], -1).mean(axis=1).min())

    if share(last) < 0.5 and share(first) > share(last):
        return np.take(data, range(held, length), axis=axis), first
    return np.take(data, range(length - held), axis=axis), last


#: The smallest --patch-size, and the fewest cells of a scale a patch must hold a side (fewer: the network's input
#: is one or two flat cells, nothing to learn detail from).
SMALLEST_PATCH = 12
CELLS_A_SIDE = 2
#: The smallest training: the smallest patch at the smallest scale.
SMALLEST = f"--patch-size {SMALLEST_PATCH} --scales 2"


def _held(length: int, patch: int, scales: list[int]) -> tuple[int, int]:
    """(whole, held): the pixels of one patch of whole cells of every scale, and the pixels held out for
    validation along a raster's longer side of ``length`` pixels (15%, at least ``whole``)."""
    # at least one patch of whole cells of every scale (16 pixels hold no whole 3-pixel cells: 18 do)
    whole = max(-(-patch // s) * s for s in scales)
    return whole, max(int(round(0.15 * length)), whole)


def _fits(width: int, height: int, patch: int, scales: list[int]) -> bool:
    """Whether a ``width`` x ``height`` raster gives a training patch and a validation patch of whole cells."""
    length = max(width, height)
    return length - _held(length, patch, scales)[1] >= patch and min(width, height) >= patch


def _size_advice(width: int, height: int, patch: int, scales: list[int]) -> str:
    """What makes a raster that is too small for ``patch`` and ``scales`` large enough: a smaller --patch-size
    where one is, else fewer or smaller --scales, else a larger raster (the smallest patch is 12 pixels, and a patch
    holds at least two cells of each scale a side)."""

    def works(p: int, ss: list[int]) -> bool:
        return CELLS_A_SIDE * max(ss) <= p and _fits(width, height, p, ss)

    top = min(patch, width, height)  # no larger patch fits across

    def largest_patch(ss: list[int]) -> int | None:
        return next((p for p in range(top, SMALLEST_PATCH - 1, -1) if works(p, ss)), None)

    smaller = next((p for p in range(min(top, patch - 1), SMALLEST_PATCH - 1, -1) if works(p, scales)), None)
    if smaller is not None:
        return f"use a --patch-size of {smaller} or less"
    keep = [s for s in scales if largest_patch([s]) is not None]
    if keep:
        bad = ",".join(str(s) for s in scales if s not in keep)
        best = largest_patch(keep)
        return f"drop {bad} from --scales" + ("" if best == patch else f" and use a --patch-size of {best} or less")
    start = min(min(scales) - 1, top // CELLS_A_SIDE)  # a patch holds two cells of a scale a side
    below = next((s for s in range(start, 1, -1) if largest_patch([s]) is not None), None)
    if below is not None:
        best = largest_patch([below])
        return f"use a smaller scale (--scales {below} at most)" + (
            "" if best == patch else f" and a --patch-size of {best} or less"
        )
    length = next(n for n in range(2 * SMALLEST_PATCH, 10**6) if _fits(SMALLEST_PATCH, n, SMALLEST_PATCH, [2]))
    return (
        f"no patch size or scale makes it large enough (the smallest training, {SMALLEST}, needs "
        f"{SMALLEST_PATCH} pixels across and {length} along); use a larger raster"
    )


class _Progress:
    """The bar of training steps on stderr where that is a terminal (elsewhere, in a log file, the epoch lines are
    the progress: a bar would be redrawn there with carriage returns), and the lines printed above it, each
    starting a line of its own."""

    def __init__(self, show: bool) -> None:
        self.show = show and stderr_is_terminal()
        self.bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm

            # a resumed run starts at its checkpoint's step; a budget of minutes has no total to count down to
            self.bar = tqdm(total=total, initial=done - 1, unit="step", file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def echo(self, line: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        click.echo(line, err=True)
        if self.bar is not None:
            self.bar.refresh()

    @contextlib.contextmanager
    def above(self) -> Iterator[None]:
        """Warnings printed inside go above the bar too, and the bar is gone when the block ends, whether by an
        error (whose line then starts a line) or not."""
        shows = warnings.showwarning

        def show(*args: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.clear()
            shows(*args, **kwargs)
            if self.bar is not None:
                self.bar.refresh()

        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = shows
            if self.bar is not None:
                self.bar.close()  # leave=False: the bar's line is cleared, the cursor at its start
                self.bar = None


def _finite(value: float | None, what: str, most: float | None = None) -> None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}", param_hint=f"'{what}'")
    if value is not None and most is not None and value > most:
        raise click.BadParameter(f"must be at most {most:g}, got {value:g}", param_hint=f"'{what}'")


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="HR.tif [HR2.tif ...]", type=click.Path())
@click.option(
    "-o", "--output", "output_name", type=click.Path(), required=True, help="Model file to write (.safetensors)."
)
@click.option(
    "--scales",
    default="2,3,4",
    show_default=True,
    help="Scales mixed in every batch: whole numbers of at least 2, each at most half of --patch-size.",
)
@click.option(
    "--bands", default=None, help="Bands to train on, e.g. 1,2 (default: all; a model gets one channel per band)."
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many epochs (of --steps-per-epoch steps each, counted from the start of a resumed run). "
    "Default: 50 without --minutes, no limit with it; with both, whichever ends first. A --resume given neither "
    "continues the budget of the run it resumes.",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many minutes of training (checked after each epoch; counted from the start of a resumed "
    "run). Without --epochs the minutes alone are the budget; with it, whichever ends first.",
)
@click.option(
    "--steps-per-epoch",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Training steps (batches) between validations and checkpoints.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Patches per training step."
)
@click.option(
    "--patch-size",
    type=click.IntRange(min=SMALLEST_PATCH),
    default=48,
    show_default=True,
    help="Fine pixels per patch side.",
)
@click.option(
    "--optimizer",
    type=click.Choice(["adam", "sgd"]),
    default="adam",
    show_default=True,
    help="adam, or sgd (momentum 0.9 with gradient clipping, as in the VDSR paper).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Learning rate (default: 1e-4 for adam, 0.1 for sgd).",
)
@click.option(
    "--schedule",
    type=click.Choice(["constant", "cosine"]),
    default="constant",
    show_default=True,
    help="Learning rate over the run: constant, or cosine decay to 0 at the end of the budget (--epochs, or "
    "--minutes: whichever the run has used more of).",
)
@click.option(
    "--loss",
    type=click.Choice(["mse", "relative"]),
    default="relative",
    show_default=True,
    help="mse: plain squared error; relative: each patch's error relative to its interpolated input's error "
    "(scales and reliefs count alike).",
)
@click.option(
    "--interpolation",
    type=click.Choice(["consistent", "bicubic"]),
    default="consistent",
    show_default=True,
    help="Network input: consistent (the limit of back-projection: the input's cell averages are kept) or bicubic.",
)
@click.option(
    "--cell-input",
    is_flag=True,
    help="The network also takes the input cells (the coarse values repeated onto the fine grid), so it knows "
    "where each cell's edges fall; with --init from a model without them, their weights start at zero.",
)
@click.option(
    "--fill-missing",
    type=click.Choice(["neighbours", "mean"]),
    default="neighbours",
    show_default=True,
    help="Nodata cells next to data enter the network filled from their neighbours, as geosr downscale fills "
    "them, or as the band mean (as the shipped models were trained).",
)
@click.option(
    "--depth", type=click.IntRange(min=2), default=20, show_default=True, help="Convolution layers of the network."
)
@click.option(
    "--width", type=click.IntRange(min=1), default=64, show_default=True, help="Features per layer of the network."
)
@device_option
@precision_option
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    default=0,
    show_default=True,
    help="Seed of the network's initial weights and of the patches drawn for training and validation.",
)
@click.option("--name", default=None, help="Model name for its card (default: the output file's stem).")
@click.option(
    "--resume",
    type=click.Path(path_type=Path),  # a missing file is refused below: exit code 1, as a missing raster
    default=None,
    help="Checkpoint (OUTPUT.ckpt) to continue from.",
)
@click.option(
    "--init",
    "init_model",
    default=None,
    help="Start from the weights of this model (a shipped name such as dem, or a file) to fine-tune it.",
)
@overwrite_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar, epoch lines or summary: only warnings and errors are printed.",
)
@verbose_option
@reports_errors
def train(
    inputs: tuple[str, ...],  # str: a Path folds /vsizip//abs/...
    output_name: str,  # str: click's Path("") would be the working folder
    scales: str,
    bands: str | None,
    epochs: int | None,
    minutes: float | None,
    steps_per_epoch: int,
    batch_size: int,
    patch_size: int,
    optimizer: str,
    lr: float | None,
    schedule: str,
    loss: str,
    interpolation: str,
    cell_input: bool,
    fill_missing: str,
    depth: int,
    width: int,
    device: str,
    precision: str,
    seed: int,
    name: str | None,
    resume: Path | None,
    init_model: str | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train a model on HR rasters: pairs are made by area-averaging them (self-supervised).

    Each raster is normalised with its own per-band statistics (as at inference). The last 15% (at
    least one patch) of every raster along its longer axis is held out for validation (the first 15%
    where the last is mostly nodata in some band and the first holds more data); each epoch prints the
    validation RMSE of the model against its interpolated input and bicubic. Nodata pixels are left out
    of the loss.
    A checkpoint OUTPUT.ckpt is written every epoch for --resume, with the same command (only --epochs,
    --minutes, --lr, --schedule, --device and --precision may change; given neither --epochs nor --minutes, a
    resumed run continues the budget of the run it resumes).
    """
    import numpy as np

    from geosr.errors import InputError, Interrupted, OutputExistsError
    from geosr.io import band_signs, iter_blocks, open_raster, raster_info
    from geosr.models.card import ModelCard, printable
    from geosr.predict import check_magnitudes, select_device
    from geosr.stats import BandStats
    from geosr.training.data import normalise
    from geosr.training.train import DEFAULT_EPOCHS, TrainConfig
    from geosr.training.train import train as run_training

    if output_name == "":  # Path("") is the working folder, which was refused as "output '.' is a folder"
        raise click.BadParameter(
            "the output name is empty; give the model file to write, such as model.safetensors", param_hint="'-o'"
        )
    output = Path(output_name)
    if epochs is None and minutes is None and resume is None:
        # the default budget; with --minutes alone, the minutes are the budget; a resumed run given neither continues
        # the budget of the run it resumes (kept in its checkpoint)
        epochs = DEFAULT_EPOCHS
    if name is not None and (not name.strip() or any(not c.isprintable() for c in name)):
        raise click.BadParameter(f"must be a name of printable characters, got {name!r}", param_hint="'--name'")
    scale_list = int_list(scales, "--scales")
    if min(scale_list) < 2:
        raise click.BadParameter(f"--scales must all be at least 2, got {scales!r}")
    _finite(lr, "--lr", 1e30)  # torch keeps it in float32 (3.4e38 at most): far beyond any useful rate
    _finite(minutes, "--minutes")
    if resume is not None and not resume.exists():  # the wording of geosr.training.train's check
        raise InputError(f"checkpoint '{resume}' does not exist; pass the OUTPUT.ckpt file a run left")
    if output.is_dir():
        raise OutputExistsError(f"output '{output}' is a folder; give a file name with -o")
    if not output.parent.is_dir():
        raise InputError(f"output folder '{output.parent}' does not exist; create it or choose another -o")
    checkpoint = Path(str(output) + ".ckpt")
    if checkpoint.is_dir():  # --overwrite replaced it, deleting the folder and its files
        raise OutputExistsError(
            f"'{checkpoint}' is a folder, where this run keeps its checkpoint; move it or choose another -o"
        )
    seen: dict[str, str] = {}
    for path in inputs:  # sampled twice as often, and listed twice on the card
        key = str(Path(path).resolve()) if Path(path).exists() else path
        if key in seen:
            same = f"'{path}'" if seen[key] == path else f"'{path}' (as '{seen[key]}')"
            raise InputError(f"{same} is given twice; give each raster once")
        seen[key] = path
    for path in inputs:
        resolved = Path(path).resolve() if Path(path).exists() else None
        if resolved == output.resolve():
            raise OutputExistsError(f"output '{output}' is one of the input rasters; choose another name with -o")
        if resolved == checkpoint.resolve():
            raise OutputExistsError(
                f"input raster '{path}' is where this run writes its checkpoint ({checkpoint.name}); rename the "
                "raster or choose another name with -o"
            )
    if output.suffix.lower() != ".safetensors":  # a name wrong as typed: a usage error, exit code 2
        raise click.UsageError(
            f"the model file must be named *.safetensors (geosr reads models by that suffix), got '{output}'"
        )
    if resume is not None and Path(resume).resolve() == output.resolve():  # before "already exists: --overwrite"
        raise InputError(
            f"--resume names the model file '{resume}', which a run writes; resume from its checkpoint: "
            f"--resume {checkpoint}"
        )
    continuing = resume is not None and checkpoint.exists() and Path(resume).resolve() == checkpoint.resolve()
    if output.exists() and not overwrite and not continuing:
        raise OutputExistsError(f"output '{output}' already exists; pass --overwrite to replace it")
    if checkpoint.exists() and not overwrite and not continuing:
        raise OutputExistsError(
            f"'{checkpoint}' already exists (the checkpoint of an earlier run); pass --resume {checkpoint} to "
            "continue that run, or --overwrite to replace it"
        )
    run_on = str(select_device(device))  # an unavailable --device is refused before the rasters are read
    wanted = int_list(bands, "--bands", bands=True) if bands is not None else None  # "" is refused, as elsewhere
    train_sets, val_sets, square, units, names = [], [], True, None, None
    counts: list[int] = []
    for path in inputs:
        # seen through the chosen bands only, as downscale and evaluate read them: an alpha band left out with
        # --bands masks the others instead of refusing the raster, and the other bands are never read
        with open_raster(path, wanted) as dataset:
            info = raster_info(dataset)  # count, descriptions and units of the chosen bands, in their order
            if counts and info.count != counts[0]:  # from the metadata, before its data is read
                raise InputError(
                    f"'{inputs[0]}' has {counts[0]} band{'s' if counts[0] != 1 else ''}, '{path}' has {info.count}; "
                    "a model takes one number of bands: choose the same bands with --bands"
                )
            counts.append(info.count)
            # the values' own orientation, as downscale and evaluate run a band stored with a negative scale (depths
            # stored as -1 x elevation): normalised, the scale's size and the offset do not matter, its sign does
            data = np.concatenate(list(iter_blocks(dataset)), axis=1) * band_signs(dataset)[:, None, None]
        chosen = wanted or list(range(1, info.count + 1))  # the raster's numbers of the bands read
        raw = BandStats.of_block(data)
        check_magnitudes(raw, str(path), chosen)  # an undeclared nodata marker would flatten the rest of the band
        if raw.empty_bands:
            raise InputError(
                f"band {chosen[raw.empty_bands[0]]} of '{path}' has no valid pixel (nodata={info.nodata}); "
                "leave the raster out, or check its nodata value"
            )
        data = normalise(data)
        axis = 1 if info.height >= info.width else 2
        length = data.shape[axis]
        whole, held = _held(length, patch_size, scale_list)
        if not _fits(info.width, info.height, patch_size, scale_list):
            raise InputError(
                f"'{path}' ({info.width} x {info.height}) is too small for {patch_size}-pixel patches at scales "
                f"{','.join(map(str, scale_list))}: it needs {patch_size} pixels across and {patch_size + whole} "
                "along (a patch to train on and one of whole cells to validate on); "
                + _size_advice(info.width, info.height, patch_size, scale_list)
            )
        train_part, val_part = split_validation(data, held, axis)
        train_sets.append(train_part)
        val_sets.append(val_part)
        square &= square_on_ground(info)  # rotations only where pixels are square on the ground
        described = [d or "" for d in info.descriptions]
        if names is not None:  # the same bands in another order would teach each channel two quantities
            for channel, (first, now) in enumerate(zip(names, described, strict=False)):
                if now and now != first and now in names:
                    raise InputError(
                        f"channel {channel + 1} is band {first!r} in '{inputs[0]}' but band {now!r} in '{path}' (its "
                        f"band {chosen[channel]}); a model learns one quantity per channel: give the rasters their "
                        "bands in one order (gdal_translate -b N ...), or train them apart"
                    )
        these = [u or "" for u in info.units]
        if units is not None:
            for channel, (first, now) in enumerate(zip(units, these, strict=False)):
                if first and now and unit_key(first) != unit_key(now):
                    raise InputError(
                        f"channel {channel + 1} is in {first} in '{inputs[0]}' but in {now} in '{path}'; a model "
                        "learns one quantity per channel: convert the rasters to one unit, or train them apart"
                    )
        units = [u or t for u, t in zip(units, these, strict=False)] if units is not None else these
        names = names or [d or f"band{b}" for d, b in zip(info.descriptions, chosen, strict=True)]
    if init_model is not None and names is not None:
        _check_init_bands(init_model, names, inputs[0])
    for part, sets in (("", train_sets), ("the validation part (15% at one end) of ", val_sets)):
        if not any(np.isfinite(s).any() for s in sets):
            raise InputError(
                f"{part}every raster is nodata ({', '.join(Path(p).name for p in inputs)}); a model learns from "
                "data: train on rasters with more of it, or check their nodata value"
            )
        if not any(np.nanmax(s) > np.nanmin(s) for s in sets if np.isfinite(s).any()):
            raise InputError(
                f"{part}every raster is constant ({', '.join(Path(p).name for p in inputs)}); a model learns "
                "detail from rasters whose values vary: train on rasters with relief or structure"
            )
    for scale in scale_list:  # a scale no raster part can cut a patch from would be on the card but never trained
        few = CELLS_A_SIDE * scale > patch_size  # a patch of fewer cells a side than it needs, refused below
        for part, sets in (("training", train_sets), ("validation", val_sets)):
            if not any(min(r.shape[1] // scale, r.shape[2] // scale) * scale >= patch_size for r in sets):
                raise InputError(
                    f"scale {scale} gives no {patch_size}-pixel patch of whole {scale}-pixel cells in the {part} part "
                    "of any raster (15% at one end of each is the validation part); drop it from --scales, "
                    + (
                        f"or use a --patch-size of {CELLS_A_SIDE * scale} or more (a patch holds {CELLS_A_SIDE} of its "
                        "cells a side) and larger rasters"
                        if few
                        else "use a smaller --patch-size, or larger rasters"
                    )
                )
        if few:  # every patch a cell or two: the network's input is flat, nothing to learn detail from (options
            # that contradict each other, whatever the rasters: a usage error, exit code 2)
            raise click.UsageError(
                f"scale {scale} (--scales) is more than half of --patch-size {patch_size}: a patch would hold less "
                f"than {CELLS_A_SIDE} of its {scale}-pixel cells a side, too few to learn from; use scales of at most "
                f"{patch_size // CELLS_A_SIDE}, or a --patch-size of {CELLS_A_SIDE * scale} or more"
            )
    for band, number in enumerate(chosen):  # a band with other nodata than the rest: trained and validated?
        if not any(np.isfinite(s[band]).any() for s in train_sets):
            raise InputError(
                f"band {number} has no valid pixel in the training part of any raster (15% at one end of each is "
                "the validation part): it would be on the model but never trained; leave it out with --bands, or "
                "add rasters with more of its data"
            )
        if not any(np.isfinite(s[band]).any() for s in val_sets):
            echo_warning(
                f"band {number} has no valid pixel in the validation part (15% at one end) of any raster, so the "
                "validation RMSE covers the other bands only; rasters with its data at one end would cover it"
            )
    empty = [Path(p).name for p, s in zip(inputs, val_sets, strict=True) if not np.isfinite(s).any()]
    if empty:  # while another raster's has data (or every raster would have been refused above)
        echo_warning(
            f"the validation part (15% at one end) of {', '.join(map(repr, empty))} has no valid pixel, so the "
            "validation RMSE covers the other rasters only"
        )
    config = TrainConfig(
        scales=tuple(scale_list),
        patch=patch_size,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        minutes=minutes,
        optimizer=optimizer,
        lr=lr if lr is not None else (0.1 if optimizer == "sgd" else 1e-4),
        cosine=schedule == "cosine",
        loss=loss,
        depth=depth,
        width=width,
        precision=precision,
        device=run_on,
        seed=seed,
        square_pixels=square,
        interpolation=interpolation,
        cell_input=cell_input,
        fill_missing=fill_missing == "neighbours",
    )
    card = ModelCard(
        name=name or printable(output.stem),  # --name is checked; a file name or a band's description may hold more
        in_channels=train_sets[0].shape[0],
        depth=depth,
        width=width,
        bands=[printable(n) for n in names],
        units=[u if u is None else printable(u) for u in units],
        scales=[float(s) for s in scale_list],
        description=f"Trained with `geosr train` on {', '.join(Path(p).name for p in inputs)}.",
        training={
            "data": [str(p) for p in inputs],
            "command": "geosr " + shlex.join(state.get("argv") or []),
            "folder": os.getcwd(),  # where the command ran: its relative paths start there
        },
    )
    progress = _Progress(not quiet)
    log = (lambda line: None) if quiet else progress.echo

    def stamp(path: Path) -> int | None:
        return path.stat().st_mtime_ns if path.exists() else None

    before, model_before = stamp(checkpoint), stamp(output)
    try:
        # an emulated --precision: one 'Warning:' line before the first step; any warning above the bar
        with warnings_as_lines(), progress.above():
            summary = run_training(
                train_sets,
                val_sets,
                config,
                output,
                card,
                resume=resume,
                init=init_model,
                log=log,
                progress=progress,
            )
    except KeyboardInterrupt:
        again = f"continue with the same command and --resume {checkpoint}"
        if stamp(checkpoint) in (None, before):
            if continuing:  # the checkpoint resumed from is still there, whole
                raise Interrupted(
                    f"no epoch finished in this run; {checkpoint} still holds the last one, {again}"
                ) from None
            raise Interrupted("no epoch finished, so nothing was written") from None
        if stamp(output) in (None, model_before):  # stopped between writing the checkpoint and the model
            raise Interrupted(
                f"{checkpoint} holds the last finished epoch, but it was stopped before writing {output}; {again}"
            ) from None
        raise Interrupted(f"{output} holds the model of the last finished epoch; {again}") from None
    if not quiet:
        done, steps = summary["epochs"], summary["steps"]
        epochs_done = f"{done} epoch{'s' if done != 1 else ''}"
        steps_done, minutes_done = f"{steps} step{'s' if steps != 1 else ''}", f"{summary['seconds'] / 60:.1f} minutes"
        if summary["ended_by"] == "minutes":  # which budget ended the run
            ended = f"{minutes_done} (--minutes; {epochs_done}, {steps_done})"
        else:
            ended = f"{epochs_done} (--epochs; {steps_done}, {minutes_done})"
        click.echo(f"wrote {output} after {ended}", err=True)
