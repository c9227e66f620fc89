"""Training sub-commands: ``train`` (every :class:`TrainConfig` setting is a flag) and ``demo``."""

from __future__ import annotations

import argparse
import dataclasses
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gliomaseg.cli._common import LazyChoices, add_command, add_out_flag, add_overwrite_flag, quiet_training_libraries

__all__ = ["register"]


def _flag_type(hint: object) -> Callable[[str], object] | None:
    """The argparse ``type`` of a TrainConfig field (None for a boolean: ``--x/--no-x``)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return None
    return hint if hint in (int, float, str) else str  # type: ignore[return-value]


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from gliomaseg.training.config import TrainConfig
    from gliomaseg.training.presets import PRESETS

    hints = typing.get_type_hints(TrainConfig)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (see README): %(choices)s")
    p.add_argument("--config", metavar="FILE", help="YAML or TOML file of training settings (flags win over it)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset", "extra"):
            continue
        flag = "--" + f.name.replace("_", "-")
        load = f.metadata.get("choices")
        extra: dict[str, Any] = {"choices": LazyChoices(load), "metavar": f.name.upper()} if load else {}
        kind = _flag_type(hints[f.name])
        if kind is None:
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["type"] = kind
        listed = ": %(choices)s" if load else ""
        default = f" (default: {f.default})" if f.default is not None else ""
        help_text = f"{f.metadata['help']}{listed}{default}"
        p.add_argument(flag, dest=f.name, default=None, help=help_text, **extra)


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line sets: a config file's, then the flags given (unset flags left out)."""
    from gliomaseg.training.config import TrainConfig, load_config_file

    given = load_config_file(args.config) if args.config else {}
    flags = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig) if f.name != "extra"}
    given.update({k: v for k, v in flags.items() if v is not None})
    return given


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig imported lazily
    from gliomaseg.training.config import TrainConfig, resolve_config

    flags = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig) if f.name != "extra"}
    flags["preset"] = args.preset
    return resolve_config(flags, config_file=args.config)


def _cmd_train(args: argparse.Namespace) -> None:
    from gliomaseg.training.run_folder import find_run, resume_settings, saved_config
    from gliomaseg.training.trainer import train

    quiet_training_libraries(args.verbose)
    cfg = _train_config(args)
    resume: Path | bool | None = None
    if args.resume or args.resume_from:
        run_dir, ckpt = find_run(args.resume_from, cfg.run_dir)
        saved = saved_config(run_dir)
        if saved is not None:  # the run's own settings; flags may only repeat them
            cfg = resume_settings(saved, _given_settings(args), run_dir)
        resume = ckpt if ckpt is not None else True
    t0 = time.perf_counter()
    run_dir = train(cfg, resume=resume, overwrite=args.overwrite)
    print(f"run folder: {run_dir} (best.pt, last.pt, config.yaml, logs/) in {time.perf_counter() - t0:.0f} s")


def _cmd_demo(args: argparse.Namespace) -> None:
    from gliomaseg.cli.evaluate import print_eval_summary
    from gliomaseg.data.phantoms import synthesise_dataset
    from gliomaseg.evaluation.evaluator import evaluate
    from gliomaseg.training.config import resolve_config
    from gliomaseg.training.trainer import train

    quiet_training_libraries(args.verbose)
    out = Path(args.out)
    data = out / "kaggle_3m"
    t0 = time.perf_counter()
    if not (data / "data.csv").is_file():
        synthesise_dataset(data, args.patients, seed=args.seed)
        print(f"[demo] synthesised {args.patients} phantom patients in {data}")
    flags = {"data": str(data), "workdir": str(out)}
    cfg = resolve_config({**flags, "epochs": args.epochs, "seed": args.seed}, preset="demo")
    run_dir = train(cfg, overwrite=True)
    print(f"[demo] trained in {time.perf_counter() - t0:.0f} s; run folder {run_dir}")
    result = evaluate(run_dir / "best.pt", split="test", out=run_dir / "eval_test", overwrite=True)
    print_eval_summary(result.out)
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``demo`` to ``sub``."""
    p = add_command(
        sub,
        "train",
        help="train a model (Lightning)",
        example="gliomaseg train --preset cpu --data kaggle_3m --arch unet --loss bce_dice --no-tta",
    )
    _add_train_flags(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run folder the other flags name from its last saved epoch, with its own config.yaml "
        "settings; flags may repeat the run's settings but not change them (except hardware: accelerator, "
        "devices, num_workers...)",
    )
    p.add_argument(
        "--resume-from",
        metavar="RUN_DIR|CKPT",
        help="continue the given run folder (or a Lightning checkpoint) as --resume does",
    )
    add_overwrite_flag(p, "an existing run folder")
    p.set_defaults(func=_cmd_train)

    p = add_command(
        sub,
        "demo",
        help="synthesise phantoms, index, split, train briefly, report",
        example="gliomaseg demo --out demo",
    )
    add_out_flag(p, "the demo's folder (default: demo)", default="demo")
    p.add_argument("--patients", type=int, default=20, help="number of patients: phantoms to synthesise (default 20)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
