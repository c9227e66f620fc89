"""Exploration sub-command: ``explore DATA_DIR --out DIR``."""

from __future__ import annotations

import argparse
import time

from gliomaseg.cli._common import add_command, add_out_flag, add_overwrite_flag

__all__ = ["register"]


def _cmd_explore(args: argparse.Namespace) -> None:
    from gliomaseg.exploration.explore import explore_dataset

    t0 = time.perf_counter()
    result = explore_dataset(args.data_dir, args.out, overwrite=args.overwrite)
    for line in result.headline:
        print(line)
    print(f"figures, {result.out / 'explore.md'} and {result.out / 'explore.html'} in {time.perf_counter() - t0:.0f} s")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``explore`` to ``sub``."""
    p = add_command(
        sub,
        "explore",
        help="dataset exploration: figures, explore.md and a self-contained explore.html",
        example="gliomaseg explore kaggle_3m --out explore",
    )
    p.add_argument("data_dir", help="a kaggle_3m folder (or the folder that holds it)")
    add_out_flag(p, "the output folder (default: ./explore)", default="explore")
    add_overwrite_flag(p, "the outputs in a non-empty --out")
    p.set_defaults(func=_cmd_explore)
