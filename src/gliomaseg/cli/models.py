"""``gliomaseg models``: the registered networks and the bundled pretrained models."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _cmd_models(args: argparse.Namespace) -> None:
    from gliomaseg.inference.pretrained import BUNDLED, bundled_path, model_card
    from gliomaseg.training.models import MODELS

    if args.info:
        print(model_card(args.info))
        return
    print("bundled pretrained models (use the name wherever a model file is taken):")
    for name, model in BUNDLED.items():
        try:
            where = str(bundled_path(name))
        except ValueError as err:
            where = f"not available: {err}"
        print(f"  {name}: {model.summary}\n    {where}")
    print("networks to train (gliomaseg train --model NAME):")
    for name, description in MODELS.describe().items():
        print(f"  {name}: {description}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` to ``sub``."""
    p = sub.add_parser("models", help="list the networks and the bundled pretrained models")
    p.add_argument("--info", metavar="NAME", help="print the model card of a bundled model (e.g. lgg-unet)")
    p.set_defaults(func=_cmd_models)
