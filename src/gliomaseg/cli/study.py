"""Study sub-command: ``study CONFIG.yaml`` (a cross-validated grid of experiments with statistics)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gliomaseg.cli._common import quiet_training_libraries

if TYPE_CHECKING:
    from gliomaseg.study.report import CollectResult

__all__ = ["register"]


def _cmd_study(args: argparse.Namespace) -> None:
    from gliomaseg.study.folder import default_folder, open_study, prepare_study
    from gliomaseg.study.grid import load_study_config
    from gliomaseg.study.launchers import parse_shard, run_local, shard_runs, submit_slurm, wait_for_runs
    from gliomaseg.study.report import collect_study
    from gliomaseg.study.runner import run_status

    t0 = time.perf_counter()
    config = load_study_config(args.config, data=args.data)
    folder = Path(args.out) if args.out else default_folder(config)
    if args.sweep_postprocess:
        from gliomaseg.study.postprocess_sweep import sweep_postprocess

        summary = sweep_postprocess(folder, args.sweep_postprocess)
        for r in summary.to_dict("records"):
            print(f"  {r['variant']}: Dice {r['mean']:.3f}, worst {r['min']:.3f}, 10th pct {r['p10']:.3f}, n={r['n']}")
        print(f"tables and tests: {folder / f'postprocess_{args.sweep_postprocess}.md'}")
        return
    if args.collect:
        open_study(folder)  # a folder without study.json is an error here, not a new study
        # prepare_study refuses a folder made with other settings; index and splits are reused as they are.
        _print_collected(collect_study(prepare_study(config, folder, build_cache=False)), folder)
        return
    study = prepare_study(config, folder, build_cache=not args.list)
    runs = config.runs()
    if args.shard:
        runs = shard_runs(runs, *parse_shard(args.shard))
    if args.list:
        for spec in runs:
            print(f"{spec.name}: {run_status(study, spec)}")
        return
    print(f"study {config.name}: {len(config.configs())} configurations x {config.folds} folds; {len(runs)} runs here")
    if args.launcher == "submitit":
        jobs = submit_slurm(study, runs)
        print(f"submitted {len(jobs)} runs to SLURM (logs in {study.folder / 'slurm'})")
        if args.no_wait:
            print(f"collect when they are done: gliomaseg study {args.config} --collect")
            return
        wait_for_runs(study, runs, jobs, timeout_s=args.timeout * 60)
    else:
        quiet_training_libraries(args.verbose)  # the runs train in this process
        outcome = run_local(study, runs)
        if outcome["skipped"]:
            print(f"{len(outcome['skipped'])} runs are being run by another process: {', '.join(outcome['skipped'])}")
    if args.shard:
        print(f"shard {args.shard} done in {time.perf_counter() - t0:.0f} s; when every shard is: --collect")
        return
    _print_collected(collect_study(study), study.folder)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def _print_collected(collected: CollectResult, folder: Path) -> None:
    results = collected.results
    done = len(results.runs)
    print(f"{done} of {done + len(results.missing)} runs collected")
    for problem in results.problems:
        print(f"left out: {problem}")
    for row in results.table.to_dict("records"):
        if not row["dice_n"]:
            print(f"  -. {row['config']}: no finished run")
            continue
        print(
            f"  {row['rank']}. {row['config']}: Dice {row['dice_mean']:.3f} "
            f"(95% CI {row['dice_ci_low']:.3f}-{row['dice_ci_high']:.3f}), min {row['dice_min']:.3f}, "
            f"n={row['dice_n']}"
        )
    print(f"tables and report: {folder / 'results.md'}, {folder / 'report.html'}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``study`` to ``sub``."""
    p = sub.add_parser(
        "study",
        help="cross-validated grid of experiments (configurations x folds), statistics, report",
        description="Train and evaluate every configuration of CONFIG.yaml on every fold of one patient-level "
        "k-fold split, then compare them (tables, Friedman and Wilcoxon-Holm tests, plots, report.html). "
        "Finished runs are skipped and interrupted ones resumed.",
    )
    p.add_argument("config", help="the study file (YAML; see studies/cpu-small.yaml)")
    p.add_argument("--data", help="kaggle_3m folder (overrides the file's data:)")
    p.add_argument("--out", help="study folder (default: <folder of CONFIG>/<name>)")
    p.add_argument("--shard", metavar="K/N", help="run only the K-th of N slices of the runs (1 <= K <= N)")
    p.add_argument("--collect", action="store_true", help="only gather the finished runs into tables and report")
    p.add_argument("--launcher", choices=("local", "submitit"), default="local", help="where runs execute")
    p.add_argument("--no-wait", action="store_true", help="submitit: return after submitting")
    p.add_argument("--timeout", type=float, default=24 * 60, help="submitit: minutes to wait for the runs")
    p.add_argument("--list", action="store_true", help="list the runs and their state, run nothing")
    p.add_argument(
        "--sweep-postprocess",
        metavar="CONFIG_NAME",
        help="compare post-processing variants out of fold with the finished fold models of one configuration",
    )
    p.set_defaults(func=_cmd_study)
