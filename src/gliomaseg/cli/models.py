"""``gliomaseg models``: the registered networks and the bundled pretrained models."""

from __future__ import annotations

import argparse

from gliomaseg.cli._common import add_command

__all__ = ["register"]


def _cmd_models(args: argparse.Namespace) -> None:
    from gliomaseg.inference.pretrained import BUNDLED, bundled_path, model_card
    from gliomaseg.training.models import MODELS

    if args.info:
        print(model_card(args.info))
        return
    print("bundled pretrained models (use the name wherever --model takes a model file):")
    for name, model in BUNDLED.items():
        try:
            where = str(bundled_path(name))
        except ValueError as err:
            where = f"not available: {err}"
        print(f"  {name}: {model.summary}\n    {where}")
    print("networks to train (gliomaseg train --arch NAME):")
    for name, description in MODELS.describe().items():
        print(f"  {name}: {description}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` to ``sub``."""
    p = add_command(
        sub,
        "models",
        help="list the networks and the bundled pretrained models",
        example="gliomaseg models --info lgg-unet",
    )
    p.add_argument("--info", metavar="NAME", help="print the model card of a bundled model (e.g. lgg-unet)")
    p.set_defaults(func=_cmd_models)
