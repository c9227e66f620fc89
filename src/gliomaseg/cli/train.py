"""Training sub-commands: ``train`` (every :class:`TrainConfig` setting is a flag) and ``demo``."""

from __future__ import annotations

import argparse
import dataclasses
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path

from gliomaseg.cli._common import parse_bool

__all__ = ["register"]


def _flag_type(hint: object) -> Callable[[str], object]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return parse_bool
    return hint if hint in (int, float, str) else str  # type: ignore[return-value]


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from gliomaseg.training.config import PRESETS, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (see README): " + ", ".join(PRESETS))
    p.add_argument("--config", help="YAML or TOML file of settings (flags win over it)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset", "extra"):
            continue
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, dest=f.name, type=_flag_type(hints[f.name]), default=None, help=f"default {f.default!r}")


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig imported lazily
    from gliomaseg.training.config import TrainConfig, resolve_config

    flags = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig) if f.name != "extra"}
    flags["preset"] = args.preset
    return resolve_config(flags, config_file=args.config)


def _cmd_train(args: argparse.Namespace) -> None:
    from gliomaseg.training.trainer import train

    cfg = _train_config(args)
    resume: str | bool | None = args.resume
    if resume == "":
        resume = True
    t0 = time.perf_counter()
    run_dir = train(cfg, resume=resume, overwrite=args.overwrite)
    print(f"run folder: {run_dir} (best.pt, last.pt, config.yaml, logs/) in {time.perf_counter() - t0:.0f} s")


def _cmd_demo(args: argparse.Namespace) -> None:
    from gliomaseg.cli.evaluate import print_eval_summary
    from gliomaseg.data.phantoms import synthesise_dataset
    from gliomaseg.evaluation.evaluator import evaluate
    from gliomaseg.training.config import resolve_config
    from gliomaseg.training.trainer import train

    out = Path(args.out)
    data = out / "kaggle_3m"
    t0 = time.perf_counter()
    if not (data / "data.csv").is_file():
        synthesise_dataset(data, args.patients, seed=args.seed)
        print(f"[demo] synthesised {args.patients} phantom patients in {data}")
    flags = {"data": str(data), "workdir": str(out), "runs_dir": str(out / "runs")}
    cfg = resolve_config({**flags, "epochs": args.epochs, "seed": args.seed}, preset="demo")
    run_dir = train(cfg, overwrite=True)
    print(f"[demo] trained in {time.perf_counter() - t0:.0f} s; run folder {run_dir}")
    result = evaluate(run_dir / "best.pt", split="test", overwrite=True)
    print_eval_summary(result.out)
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``demo`` to ``sub``."""
    p = sub.add_parser("train", help="train a model (Lightning)")
    _add_train_flags(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        help="continue the run folder's last.ckpt, or the given Lightning checkpoint",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="synthesise phantoms, index, split, train briefly, report")
    p.add_argument("--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--patients", type=int, default=20, help="phantom patients (default 20)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
