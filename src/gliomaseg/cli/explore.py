"""Exploration sub-command: ``explore DATA_DIR --out DIR``."""

from __future__ import annotations

import argparse
import time

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
    p = sub.add_parser("explore", help="dataset exploration: figures, explore.md and a self-contained explore.html")
    p.add_argument("data_dir", help="a kaggle_3m folder (or the folder that holds it)")
    p.add_argument("--out", default="explore", help="output folder (default: explore)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs in a non-empty --out")
    p.set_defaults(func=_cmd_explore)
