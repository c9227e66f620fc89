"""Data sub-commands: ``synth``, ``download``, ``index``, ``split``, ``cache``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gliomaseg.cli._common import LazyChoices, add_command, add_out_flag, add_overwrite_flag
from gliomaseg.errors import GliomasegError, OutputExistsError

__all__ = ["register"]


def _cmd_synth(args: argparse.Namespace) -> None:
    from gliomaseg.data.phantoms import synthesise_dataset

    t0 = time.perf_counter()
    out = synthesise_dataset(args.out, args.patients, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.patients} synthetic patients to {out} in {time.perf_counter() - t0:.1f} s")


def _cmd_download(args: argparse.Namespace) -> None:
    from gliomaseg.data.download import download_dataset

    print(f"dataset in {download_dataset(args.dest, overwrite=args.overwrite)}")


def _cmd_index(args: argparse.Namespace) -> None:
    from gliomaseg.data.index import index_dataset
    from gliomaseg.data.index_table import save_index, summarise_index

    out = Path(args.out or Path(args.workdir) / "index.csv")
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out} exists: pass --overwrite to rebuild it")
    t0 = time.perf_counter()
    result = index_dataset(args.data_dir, skip_bad=args.skip_bad, progress=True)
    save_index(result.table, out)
    print(summarise_index(result.table))
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}")
    print(f"index written to {out} ({time.perf_counter() - t0:.1f} s)")


def _cmd_split(args: argparse.Namespace) -> None:
    from gliomaseg.data.index_table import load_index
    from gliomaseg.data.splits import make_splits, save_splits

    index = Path(args.index or Path(args.workdir) / "index.csv")
    out = Path(args.out or Path(args.workdir) / "splits.json")
    if not index.is_file():
        raise GliomasegError(f"no index at {index}: run `gliomaseg index DATA_DIR` first")
    splits = make_splits(
        load_index(index),
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        n_folds=args.folds,
        seed=args.seed,
        stratify=tuple(s for s in args.stratify.split(",") if s),
    )
    save_splits(splits, out, overwrite=args.overwrite)
    n_train, n_val = len(splits["folds"][0]["train"]), len(splits["folds"][0]["val"])
    print(
        f"{out}: test {len(splits['test'])} patients, {len(splits['folds'])} fold(s); "
        f"fold 0 train {n_train}, val {n_val}; stratified by {splits['stratify']}"
    )


def _cmd_cache(args: argparse.Namespace) -> None:
    from gliomaseg.data.cache import build_cache
    from gliomaseg.data.normalise import PreprocessConfig
    from gliomaseg.data.workspace import ensure_index

    t0 = time.perf_counter()
    table = ensure_index(args.data, Path(args.workdir) / "index.csv")
    t1 = time.perf_counter()
    cfg = PreprocessConfig(size=args.size, normalisation=args.normalisation)
    path = build_cache(table, Path(args.workdir) / "cache", cfg, progress=True)
    t2 = time.perf_counter()
    print(f"cache {path}: {len(table)} slices; index {t1 - t0:.1f} s, cache {t2 - t1:.1f} s, total {t2 - t0:.1f} s")


def _normalisations() -> tuple[str, ...]:
    from gliomaseg.data.normalise import NORMALISATIONS

    return NORMALISATIONS


def _workdir_flag(p: argparse.ArgumentParser, holds: str) -> None:
    p.add_argument("--workdir", default=".", help=f"working folder of {holds} (default: .)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the data sub-commands to ``sub``."""
    p = add_command(
        sub,
        "synth",
        help="write synthetic phantoms in the kaggle_3m layout",
        example="gliomaseg synth phantoms --patients 12 --size 128",
    )
    p.add_argument("out", metavar="OUT", help="output folder (created)")
    p.add_argument("--patients", type=int, default=12, help="number of patients: phantoms to write (default 12)")
    p.add_argument("--size", type=int, default=256, help="slice size in pixels of the phantoms (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_overwrite_flag(p, "an existing phantom dataset in OUT")
    p.set_defaults(func=_cmd_synth)

    p = add_command(
        sub,
        "download",
        help="fetch the Kaggle LGG dataset with kagglehub",
        example="gliomaseg download data  # -> data/kaggle_3m",
    )
    p.add_argument("dest", help="folder to download into (DEST/kaggle_3m)")
    add_overwrite_flag(p, "the contents of a non-empty DEST")
    p.set_defaults(func=_cmd_download)

    p = add_command(
        sub,
        "index",
        help="scan a kaggle_3m folder (or own slices) into index.csv",
        example="gliomaseg index kaggle_3m --workdir work",
    )
    p.add_argument("data_dir", help="kaggle_3m folder, or a folder of patient folders / slices")
    _workdir_flag(p, "index.csv")
    add_out_flag(p, "the index file (default: WORKDIR/index.csv)")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip and list bad slices instead of failing (a plain switch)"
    )
    add_overwrite_flag(p, "an existing index file")
    p.set_defaults(func=_cmd_index)

    p = add_command(
        sub,
        "split",
        help="patient-level stratified splits -> splits.json (written once)",
        example="gliomaseg split --workdir work --test-fraction 0.15 --val-fraction 0.15",
    )
    _workdir_flag(p, "index.csv and splits.json")
    p.add_argument("--index", help="index file (default: WORKDIR/index.csv)")
    add_out_flag(p, "the splits file (default: WORKDIR/splits.json)")
    p.add_argument("--test-fraction", type=float, default=0.15, help="share of patients held out for test")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of patients for validation (1 fold)")
    p.add_argument("--folds", type=int, default=1, help="k folds over the non-test patients (1 = holdout)")
    p.add_argument("--stratify", default="site,burden", help="comma list of site, burden (or empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_overwrite_flag(p, "an existing splits.json")
    p.set_defaults(func=_cmd_split)

    p = add_command(
        sub,
        "cache",
        help="preprocess into the memory-mapped cache (timed)",
        example="gliomaseg cache --data kaggle_3m --workdir work --size 128",
    )
    p.add_argument("--data", help="kaggle_3m folder (indexed if WORKDIR/index.csv is missing)")
    _workdir_flag(p, "index.csv and cache/")
    p.add_argument("--size", type=int, default=256, help="slice size in pixels of the cache (default 256)")
    p.add_argument(
        "--normalisation",
        default="zscore",
        choices=LazyChoices(_normalisations),
        metavar="NORMALISATION",
        help="per-volume intensity normalisation: %(choices)s (default: zscore)",
    )
    p.set_defaults(func=_cmd_cache)
