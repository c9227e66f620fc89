"""Evaluation sub-command: ``evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gliomaseg.cli._common import add_postprocess_flags, postprocess_changes

__all__ = ["print_eval_summary", "register"]


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from gliomaseg.checkpoint import load_checkpoint
    from gliomaseg.evaluation.evaluator import evaluate
    from gliomaseg.evaluation.postprocess import PostprocessConfig
    from gliomaseg.inference.pretrained import resolve_model

    models = [resolve_model(m) for m in args.checkpoint]
    # Flags change single settings of the checkpoint's stored post-processing; the rest is kept.
    stored = load_checkpoint(models[0]).get("postprocess") or {}
    post = PostprocessConfig.from_dict({**stored, **postprocess_changes(args)})
    patients = [p.strip() for p in (args.patients or "").split(",") if p.strip()]
    result = evaluate(
        models if len(models) > 1 else models[0],
        data=args.data,
        split=args.split,
        out=args.out,
        index=args.index,
        splits=args.splits,
        fold=args.fold,
        postprocess=post,
        patients=patients or None,
        figures=not args.no_figures,
        overwrite=args.overwrite,
        device=args.device,
        bf16=args.bf16,
        shifts=args.shift or (),
        shift_seed=args.shift_seed,
    )
    print_eval_summary(result.out)


def print_eval_summary(out: Path) -> None:
    """Print the headline figures of an evaluation folder's ``summary.json`` (its warnings were logged
    when the evaluation started, so they are not repeated)."""
    summary = json.loads((out / "summary.json").read_text())

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    dice = summary["volume"]["metrics"]["dice"]
    print(
        f"{summary['split']['name']} split: {summary['n_patients']} patients, {summary['n_slices']} slices, "
        f"post-processing {summary['postprocess']}, {summary['seconds']['total']:.0f} s"
    )
    print(
        f"per-patient Dice: mean {fmt(dice['mean'])} (95% CI {fmt(dice['ci_low'])}-{fmt(dice['ci_high'])}), "
        f"median {fmt(dice['median'])}, worst {fmt(dice.get('min'))}, 10th percentile {fmt(dice.get('p10'))}, "
        f"n={dice['n']}"
    )
    ensemble = summary.get("ensemble")
    if ensemble:
        print(
            f"ensemble of {len(ensemble['members'])}: mean Dice {fmt(ensemble['ensemble_dice_mean'])} vs members "
            f"{', '.join(fmt(m['dice_mean']) for m in ensemble['members'])} (gain over the mean member "
            f"{ensemble['gain_over_mean_member']:+.3f}, over the best {ensemble['gain_over_best_member']:+.3f})"
        )
    shifts = (summary.get("shifts") or {}).get("per_shift", {})
    for name, s in shifts.items():
        print(
            f"  shift {name:16s} Dice mean {fmt(s['mean'])} ({fmt(s['ci_low'])}-{fmt(s['ci_high'])}), "
            f"worst {fmt(s['min'])}, change vs in-domain {fmt(s['drop'])}"
        )
    print(f"report: {out / 'report.html'}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to ``sub``."""
    from gliomaseg.data.splits import PARTS

    p = sub.add_parser("evaluate", help="metrics at the data's resolution, figures, report.html for a split")
    p.add_argument(
        "checkpoint",
        nargs="+",
        metavar="MODEL",
        help="model file (best.pt or last.pt); several (e.g. the fold models of a study) = an ensemble "
        "averaging their probabilities, compared with each member in the report",
    )
    p.add_argument("--data", help="kaggle_3m folder (default: the data of the training run's index)")
    p.add_argument("--split", choices=PARTS, default="test", help="which patients (default: test)")
    p.add_argument("--out", help="output folder (default: CHECKPOINT_FOLDER/eval_SPLIT)")
    p.add_argument("--index", help="index.csv (default: the training run's)")
    p.add_argument("--splits", help="splits.json (default: the training run's)")
    p.add_argument("--fold", type=int, help="fold for --split train/val (default: the checkpoint's)")
    add_postprocess_flags(p)
    p.add_argument("--patients", help="comma list of patient ids to draw overlays for")
    p.add_argument("--no-figures", action="store_true", help="tables and report only (faster)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 network (default: on where the CPU computes bf16 natively, as predict does; "
        "--no-bf16 for float32)",
    )
    p.add_argument(
        "--shift",
        action="append",
        metavar="NAME",
        help="also score every patient under this distribution shift (repeatable; 'all' for every one: "
        "rotation, scale, resolution, bias_field, gamma, noise, skull_strip, flair_only, raw_intensities, "
        "combined); writes shifts.csv and a shift table in summary.json and the report",
    )
    p.add_argument("--shift-seed", type=int, default=0, help="seed of the shifts (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --out")
    p.set_defaults(func=_cmd_evaluate)
