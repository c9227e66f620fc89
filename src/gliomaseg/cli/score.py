"""Score sub-command: ``score PRED TRUTH`` (predicted masks against reference masks, nnU-Net's evaluate_folder)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from gliomaseg.cli._common import add_command, add_n_boot_flag, add_out_flag, add_overwrite_flag

__all__ = ["register"]


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _case_line(row: dict[str, Any]) -> str:
    unit, volume_unit = row["hd95_unit"], row["volume_unit"]
    digits = 2 if volume_unit == "mL" else 0
    volumes = (
        f"volume pred {_number(row['pred_volume'], digits)} / truth {_number(row['truth_volume'], digits)} "
        f"{volume_unit} (diff {row['volume_diff']:+.{digits}f})"
    )
    if row["case"] == "tumour":
        hd = "n/a (empty prediction)" if row["pred_pixels"] == 0 else f"{_number(row['hd95'], 2)} {unit}"
        return f"  {row['name']}: Dice {_number(row['dice'])}, IoU {_number(row['iou'])}, HD95 {hd}; {volumes}"
    label = "false positive" if row["case"] == "false_positive" else "true negative"
    return f"  {row['name']}: empty truth, {label}; {volumes}"


def _cmd_score(args: argparse.Namespace) -> None:
    from gliomaseg.evaluation.score import score_masks

    result = score_masks(args.pred, args.truth, args.out, overwrite=args.overwrite, n_boot=args.n_boot)
    for row in result.per_case.to_dict("records"):
        print(_case_line(row))
    summary = result.summary["summary"]
    cases = summary["cases"]
    units = result.summary["units"]
    dice, hd = summary["metrics"]["dice"], summary["metrics"]["hd95"]
    vol = summary["metrics"]["abs_volume_diff"]
    print(
        f"Dice: mean {_number(dice['mean'])} (95% CI {_number(dice['ci_low'])}-{_number(dice['ci_high'])}), "
        f"median {_number(dice['median'])}, worst {_number(dice['min'])}, 10th pct {_number(dice['p10'])}, "
        f"n={dice['n']}"
    )
    print(f"HD95 ({units['hd95']}): mean {_number(hd['mean'], 2)}, median {_number(hd['median'], 2)}, n={hd['n']}")
    print(
        f"absolute volume difference ({units['volume']}): mean {_number(vol['mean'], 2)}, "
        f"median {_number(vol['median'], 2)}"
    )
    print(
        f"{result.summary['n_cases']} case(s): {cases['tumour']} with tumour ({summary['n_tumour_empty_prediction']} "
        f"missed entirely), {cases['true_negative'] + cases['false_positive']} with an empty truth "
        f"({cases['false_positive']} with a prediction)"
    )
    for side, names in (("predictions", result.unmatched_pred), ("references", result.unmatched_truth)):
        if names:
            print(f"unmatched {side} ({len(names)}), not scored: {', '.join(names)}")
    if result.files:
        print(f"summary.json and per_case.csv in {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``score`` to ``sub``."""
    p = add_command(
        sub,
        "score",
        help="score predicted masks against reference masks (NIfTI, DICOM SEG, kaggle_3m) -> summary.json",
        example="gliomaseg score predictions/ labelsTs/ --out score",
        description="Per-case Dice, IoU, HD95, sensitivity, precision and volumes (mm and mL from the headers' "
        "voxel size; voxels when there is none) of PRED against TRUTH, with the metrics code of `evaluate`, and a "
        "summary with bootstrap 95% CIs. Cases are matched by name: the file name without its extension and one "
        "trailing _mask, _seg, _segmentation, _label(s), _pred(iction), _gt or _truth (nnU-Net's identical names "
        "work); kaggle_3m slice masks <name>_<n>_mask.tif are case <name> (the patient folder's name); a DICOM "
        "SEG is named by its file name, never by header fields. Cases on one side only are listed.",
    )
    p.add_argument("pred", metavar="PRED", help="predicted mask file or folder (searched recursively)")
    p.add_argument("truth", metavar="TRUTH", help="reference mask file or folder (any of the same kinds)")
    add_out_flag(p, "the folder for summary.json and per_case.csv (default: ./score)", default="score")
    add_overwrite_flag(p, "the outputs of an earlier score in --out")
    add_n_boot_flag(p, "the 95%% CIs of the summary")
    p.set_defaults(func=_cmd_score)
