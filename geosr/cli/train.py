"""``geosr train``: fit a VDSR model to your own high-resolution rasters."""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geosr.cli.options import (
    echo_warning,
    int_list,
    overwrite_option,
    progress_bar,
    reports_errors,
    state,
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


def _finite(value: float | None, what: str, most: float | None = None) -> None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}", param_hint=f"'{what}'")
    if value is not None and most is not None and value > most:
        raise click.BadParameter(f"must be at most {most:g}, got {value:g}", param_hint=f"'{what}'")


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="HR.tif [HR2.tif ...]", type=click.Path())
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Model file to write (.safetensors)."
)
@click.option("--scales", default="2,3,4", show_default=True, help="Whole scales mixed in every batch.")
@click.option(
    "--bands", default=None, help="Bands to train on, e.g. 1,2 (default: all; a model gets one channel per band)."
)
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many minutes (checked each epoch).",
)
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--patch-size", type=click.IntRange(min=12), default=48, show_default=True, help="Fine pixels per patch side."
)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
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
    help="Learning rate over the run: constant, or cosine decay to 0 at --epochs or at --minutes, whichever "
    "the run has used more of.",
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
@click.option("--depth", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--width", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16", "fp16"]))
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True)
@click.option("--name", default=None, help="Model name for its card (default: the output file's stem).")
@click.option(
    "--resume",
    type=click.Path(exists=True, path_type=Path),
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
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@verbose_option
@reports_errors
def train(
    inputs: tuple[str, ...],  # str: a Path folds /vsizip//abs/...
    output: Path,
    scales: str,
    bands: str | None,
    epochs: int,
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
    --minutes, --lr, --schedule, --device and --precision may change).
    """
    import numpy as np

    from geosr.errors import InputError, Interrupted, OutputExistsError
    from geosr.io import band_signs, iter_blocks, open_raster, raster_info
    from geosr.models.card import ModelCard
    from geosr.predict import check_magnitudes, select_device
    from geosr.stats import BandStats
    from geosr.training.data import normalise
    from geosr.training.train import TrainConfig
    from geosr.training.train import train as run_training

    if name is not None and (not name.strip() or any(not c.isprintable() for c in name)):
        raise click.BadParameter(f"must be a name of printable characters, got {name!r}", param_hint="'--name'")
    scale_list = int_list(scales, "--scales")
    if min(scale_list) < 2:
        raise click.BadParameter(f"--scales must all be at least 2, got {scales!r}")
    _finite(lr, "--lr", 1e30)  # torch keeps it in float32 (3.4e38 at most): far beyond any useful rate
    _finite(minutes, "--minutes")
    if output.is_dir():
        raise OutputExistsError(f"output '{output}' is a folder; give a file name with -o")
    if not output.parent.is_dir():
        raise InputError(f"output folder '{output.parent}' does not exist; create it or choose another -o")
    checkpoint = Path(str(output) + ".ckpt")
    for path in inputs:
        resolved = Path(path).resolve() if Path(path).exists() else None
        if resolved == output.resolve():
            raise OutputExistsError(f"output '{output}' is one of the input rasters; choose another name with -o")
        if resolved == checkpoint.resolve():
            raise OutputExistsError(
                f"input raster '{path}' is where this run writes its checkpoint ({checkpoint.name}); rename the "
                "raster or choose another name with -o"
            )
    if output.suffix.lower() != ".safetensors":
        raise InputError(
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
    wanted = int_list(bands, "--bands") if bands is not None else None  # "" is refused, as elsewhere
    train_sets, val_sets, square, units, names = [], [], True, None, None
    for path in inputs:
        # seen through the chosen bands only, as downscale and evaluate read them: an alpha band left out with
        # --bands masks the others instead of refusing the raster, and the other bands are never read
        with open_raster(path, wanted) as dataset:
            info = raster_info(dataset)  # count, descriptions and units of the chosen bands, in their order
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
        # at least one patch of whole cells of every scale (16 pixels hold no whole 3-pixel cells: 18 do)
        whole = max(-(-patch_size // s) * s for s in scale_list)
        held = max(int(round(0.15 * length)), whole)
        if length - held < patch_size or min(info.height, info.width) < patch_size:
            raise InputError(
                f"'{path}' ({info.width} x {info.height}) is too small for {patch_size}-pixel patches at scales "
                f"{','.join(map(str, scale_list))}: it needs {patch_size} pixels across and {patch_size + whole} "
                "along (a patch to train on and one of whole cells to validate on); use a smaller --patch-size"
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
        for part, sets in (("training", train_sets), ("validation", val_sets)):
            if not any(min(r.shape[1] // scale, r.shape[2] // scale) * scale >= patch_size for r in sets):
                raise InputError(
                    f"scale {scale} gives no {patch_size}-pixel patch of whole {scale}-pixel cells in the {part} part "
                    "of any raster (15% at one end of each is the validation part); drop it from --scales, use a "
                    "smaller --patch-size, or larger rasters"
                )
    if len({s.shape[0] for s in train_sets}) != 1:
        raise InputError("the rasters have different numbers of bands; choose the same bands with --bands")
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
        name=name or output.stem,
        in_channels=train_sets[0].shape[0],
        depth=depth,
        width=width,
        bands=names,
        units=units,
        scales=[float(s) for s in scale_list],
        description=f"Trained with `geosr train` on {', '.join(Path(p).name for p in inputs)}.",
        training={
            "data": [str(p) for p in inputs],
            "command": "geosr " + shlex.join(state.get("argv") or []),
            "folder": os.getcwd(),  # where the command ran: its relative paths start there
        },
    )
    log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))

    def stamp(path: Path) -> int | None:
        return path.stat().st_mtime_ns if path.exists() else None

    before, model_before = stamp(checkpoint), stamp(output)
    try:
        with warnings_as_lines():  # an emulated --precision: one 'Warning:' line before the first step
            summary = run_training(
                train_sets,
                val_sets,
                config,
                output,
                card,
                resume=resume,
                init=init_model,
                log=log,
                progress=progress_bar(quiet, "step"),
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
        click.echo(f"wrote {output} after {summary['epochs']} epochs ({summary['steps']} steps)", err=True)
