"""``geosr models``: the shipped models and their cards."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from geosr.cli.options import reports_errors, verbose_option
from geosr.models.card import flat_items, jsonable


def _format_card(name: str, card: object) -> str:
    data = asdict(card)  # type: ignore[call-overload]
    lines = [f"{name}: {data['description'] or '(no description)'}"]
    lines.append(
        f"  network: {data['architecture']} depth {data['depth']} width {data['width']}, "
        f"{data['in_channels']} channel(s): {', '.join(data['bands'])} [{', '.join(u or '-' for u in data['units'])}]"
    )
    lines.append(f"  scales: {', '.join(f'{s:g}' for s in data['scales'])}; degradation: {data['degradation']}")
    lines.append(f"  normalisation: {data['normalisation']}; interpolation: {data['interpolation']}")
    lines.append("  conserve: " + ("yes, by default at whole scales" if data["conserve"] else "only with --conserve"))
    if data.get("calibrate"):
        lines.append("  calibrate: yes, by default at whole scales (--no-calibrate to turn it off)")
    if data.get("fill_trend"):
        lines.append(
            f"  next to nodata: missing cells filled from their neighbours, {data['fill_trend']:g} of the slope "
            "continued into the first ring"
        )
    if data.get("cell_input"):
        lines.append("  input cells: yes (the network also sees the coarse values repeated onto the fine grid)")
    for section in ("training", "metrics"):
        for key, value in flat_items(data[section]):
            text = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"  {section}.{key}: " + text.replace("\n", "\n    "))
    return "\n".join(lines)


@click.command()
@click.argument("model", required=False, metavar="[NAME|PATH]")
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
@verbose_option
@reports_errors
def models(model: str | None, as_json: bool) -> None:
    """List the models shipped with geosr, or show the card of one model (by name or file)."""
    from geosr.errors import ModelError
    from geosr.models import list_models, read_card, resolve_model

    if model is None:
        cards = list_models()
    else:
        path = resolve_model(model)
        try:
            cards = {model: read_card(path)}
        except ModelError:
            from geosr.models.files import refuse_checkpoint  # imports torch: only for a file that is no model

            refuse_checkpoint(path)  # a training checkpoint (OUTPUT.ckpt): say so, and what to do with it
            raise
    if as_json:
        # strict JSON: a diverged training's NaN metrics are null
        cards_json = {name: jsonable(asdict(card)) for name, card in cards.items()}
        click.echo(json.dumps(cards_json, indent=2, allow_nan=False))
        return
    if not cards:
        click.echo(
            "No trained model ships with this version of geosr yet. Train one with your own rasters or "
            "pass a model file to `geosr downscale --model PATH`."
        )
        return
    click.echo(_shown("\n\n".join(_format_card(name, card) for name, card in cards.items())))


def _shown(text: str) -> str:
    """``text`` with every character a terminal would act on (escape sequences, carriage returns, bells) but the
    newline shown as ``?``: a card's free text comes from whoever wrote the file."""
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in text)
