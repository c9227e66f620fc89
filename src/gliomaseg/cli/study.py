"""Study sub-command: ``study STUDY_FILE`` (a cross-validated grid of experiments with statistics)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gliomaseg.cli._common import (
    add_command,
    add_launcher_flag,
    add_out_flag,
    add_shard_flag,
    quiet_training_libraries,
)

if TYPE_CHECKING:
    from gliomaseg.study.report import CollectResult

__all__ = ["register"]


def _cmd_study(args: argparse.Namespace) -> None:
    from gliomaseg.study.folder import default_folder, open_study, prepare_study
    from gliomaseg.study.grid import load_study_config
    from gliomaseg.study.launchers import (
        check_slurm,
        parse_shard,
        run_local,
        shard_runs,
        submit_slurm,
        wait_for_runs,
    )
    from gliomaseg.study.report import collect_study
    from gliomaseg.study.runner import run_status

    t0 = time.perf_counter()
    if args.launcher == "submitit" and not (args.list or args.collect or args.sweep_postprocess):
        check_slurm()  # before any slow preparation
    config = load_study_config(args.study_file, data=args.data)
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
        if not args.wait:
            print(f"collect when they are done: gliomaseg study {args.study_file} --collect")
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
    p = add_command(
        sub,
        "study",
        help="cross-validated grid of experiments (configurations x folds), statistics, report",
        description="Train and evaluate every configuration of STUDY_FILE on every fold of one patient-level "
        "k-fold split, then compare them (tables, Friedman and Wilcoxon-Holm tests, plots, report.html). "
        "Finished runs are skipped and interrupted ones resumed.",
        example="gliomaseg study studies/cpu-small.yaml --data kaggle_3m\n"
        "gliomaseg study studies/paper.yaml --data kaggle_3m --launcher submitit --no-wait",
    )
    p.add_argument("study_file", metavar="STUDY_FILE", help="the study file (YAML; see studies/cpu-small.yaml)")
    p.add_argument("--data", help="kaggle_3m folder (overrides the file's data:)")
    add_out_flag(p, "the study folder (default: <folder of STUDY_FILE>/<name>)")
    add_shard_flag(p)
    p.add_argument("--collect", action="store_true", help="only gather the finished runs into tables and report")
    add_launcher_flag(p)
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="submitit: wait for the runs and collect them (default on; --no-wait returns after submitting)",
    )
    p.add_argument("--timeout", type=float, default=24 * 60, help="submitit: minutes to wait for the runs")
    p.add_argument("--list", action="store_true", help="list the runs and their state, run nothing")
    p.add_argument(
        "--sweep-postprocess",
        metavar="CONFIG_NAME",
        help="compare post-processing variants out of fold with the finished fold models of one configuration",
    )
    p.set_defaults(func=_cmd_study)
