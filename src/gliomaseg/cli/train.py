"""Training sub-commands: ``train`` (every :class:`TrainConfig` setting is a flag) and ``demo``."""

from __future__ import annotations

import argparse
import dataclasses
import time
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gliomaseg.cli._common import parse_bool, quiet_training_libraries

__all__ = ["register"]


def _flag_type(hint: object) -> Callable[[str], object]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return parse_bool
    return hint if hint in (int, float, str) else str  # type: ignore[return-value]


class _LazyChoices:
    """argparse ``choices`` listed on first use: listing the models and losses imports torch and MONAI,
    which every other sub-command would otherwise pay for just to build the parser."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self._items: list[str] | None = None

    def _get(self) -> list[str]:
        if self._items is None:
            self._items = list(self._load())
        return self._items

    def __contains__(self, item: object) -> bool:
        return item in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from gliomaseg.training.config import PRESETS, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (see README): %(choices)s")
    p.add_argument("--config", help="YAML or TOML file of settings (flags win over it)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset", "extra"):
            continue
        flag = "--" + f.name.replace("_", "-")
        load = f.metadata.get("choices")
        extra: dict[str, Any] = {"choices": _LazyChoices(load), "metavar": f.name.upper()} if load else {}
        kind = _flag_type(hints[f.name])
        if kind is parse_bool:
            extra["metavar"] = "{true,false}"
        listed = ": %(choices)s" if load else ""
        default = f" (default: {f.default})" if f.default is not None else ""
        help_text = f"{f.metadata['help']}{listed}{default}"
        p.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text, **extra)


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
    if args.resume is not None:
        run_dir, ckpt = find_run(args.resume, cfg.run_dir)
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
        metavar="RUN_DIR_OR_CKPT",
        help="continue a run with its own config.yaml settings: the given run folder (alone: the folder the "
        "other flags name) from its last saved epoch, or a Lightning checkpoint; flags may repeat the "
        "run's settings but not change them (except hardware: accelerator, devices, num_workers...)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="synthesise phantoms, index, split, train briefly, report")
    p.add_argument("--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--patients", type=int, default=20, help="phantom patients (default 20)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
