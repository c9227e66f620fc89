"""Evaluation sub-command: ``evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gliomaseg.cli._common import (
    add_command,
    add_device_flags,
    add_figures_flag,
    add_model_flag,
    add_out_flag,
    add_overwrite_flag,
    add_postprocess_flags,
    postprocess_changes,
)

__all__ = ["print_eval_summary", "register"]


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from gliomaseg.evaluation.evaluator import evaluate
    from gliomaseg.inference.pretrained import resolve_model

    models = [resolve_model(m) for m in args.model]
    patients = [p.strip() for p in (args.overlay_patients or "").split(",") if p.strip()]
    result = evaluate(
        models if len(models) > 1 else models[0],
        data=args.data,
        split=args.split,
        out=args.out,  # default: ./eval_SPLIT (evaluate's own default, never beside the model)
        index=args.index,
        splits=args.splits,
        fold=args.fold,
        # flags change single settings of the model's stored post-processing (.pt or .onnx); the rest is kept
        postprocess=postprocess_changes(args),
        patients=patients or None,
        figures=args.figures,
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


#: ``gliomaseg.data.splits.PARTS``, spelt out: importing it pulls in scikit-learn, which ``--help`` must not
#: wait for (tests/test_cli_grammar.py checks that the two agree).
SPLIT_PARTS = ("test", "val", "train", "all")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to ``sub``."""
    p = add_command(
        sub,
        "evaluate",
        help="metrics at the data's resolution, figures, report.html for a split",
        description="Evaluate a trained model (or an ensemble) on the patients of a split: metrics at the data's "
        "own resolution, tables, figures and a self-contained report.html. A model file of a training run finds "
        "its run's index and splits; the bundled model, or a model on new data, takes --data DIR --split all.",
        example="gliomaseg evaluate --model lgg-unet --data kaggle_3m --split all --out eval_new\n"
        "gliomaseg evaluate --model runs/unet__bce_dice__fold0/best.pt --split test",
    )
    add_model_flag(p, extra=" (compared with each member in the report)")
    p.add_argument("--data", help="kaggle_3m folder (default: the data of the training run's index)")
    p.add_argument(
        "--split",
        choices=SPLIT_PARTS,
        default="test",
        help="which patients: a part of the model's splits file, or all patients of --data/--index (default: test)",
    )
    add_out_flag(p, "the results folder (default: ./eval_SPLIT; an ensemble's: ./ensemble_eval_SPLIT)")
    p.add_argument("--index", help="index file (default: the training run's)")
    p.add_argument("--splits", help="splits file (default: the training run's)")
    p.add_argument("--fold", type=int, help="fold of --split train/val (default: the model's)")
    add_postprocess_flags(p)
    p.add_argument(
        "--overlay-patients",
        metavar="ID,...",
        help="comma list of patient ids to draw overlays for, besides the best, median and worst",
    )
    add_figures_flag(p, "overlays, plots and GIFs besides the tables and report")
    add_device_flags(p)
    p.add_argument(
        "--shift",
        action="append",
        metavar="NAME",
        help="also score every patient under this distribution shift (repeatable; 'all' for every one: "
        "rotation, scale, resolution, bias_field, gamma, noise, skull_strip, flair_only, raw_intensities, "
        "combined); writes shifts.csv and a shift table in summary.json and the report",
    )
    p.add_argument("--shift-seed", type=int, default=0, help="seed of the shifts (default: 0)")
    add_overwrite_flag(p, "the results in a non-empty --out")
    p.set_defaults(func=_cmd_evaluate)
