#!/usr/bin/env python
"""Calibrate the quality flag of a model from its evaluation folders (issue 25; docs/accuracy.md).

    python scripts/calibrate_quality.py EVAL_DIR... --out src/gliomaseg/inference/weights/lgg-unet.quality.json \
        [--check TEST_EVAL_DIR...] [--signals input_distance,log_volume,uncertain_fraction]

Each EVAL_DIR is a `gliomaseg evaluate ... --shift all` output (per_patient.csv + shifts.csv). Prints the
out-of-fold AUROC (95% CI by patient bootstrap) of the score for Dice < 0.5, the flag threshold and, with
--check, the AUROC of the fitted score on other evaluation folders (patients not used to fit it).
--signals fits on a subset of the signals (default all): prediction computes only those the calibration
lists, and a calibration without `disagreement` costs no second forward pass.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.quality_calibration import FAIL_DICE, auroc_with_ci, fit_quality, load_cases, score_cases
from gliomaseg.inference.quality import SIGNALS, check_signals
from gliomaseg.utils import atomic_write_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="evaluation folders to fit on")
    parser.add_argument("--out", required=True, help="calibration JSON to write")
    parser.add_argument("--check", nargs="*", default=[], help="evaluation folders to check the fitted score on")
    parser.add_argument("--report", help="also write the figures as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace --out")
    parser.add_argument(
        "--signals",
        default=",".join(SIGNALS),
        metavar="A,B,...",
        help=f"comma-separated signals to fit on (default all: {','.join(SIGNALS)})",
    )
    args = parser.parse_args()
    try:
        signals = check_signals([s.strip() for s in args.signals.split(",") if s.strip()], "--signals")
    except GliomasegError as err:
        parser.error(str(err))
    if not signals:
        parser.error(f"--signals: give at least one of {', '.join(SIGNALS)}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        parser.error(f"{out} exists: pass --overwrite to replace it")
    cases = load_cases(args.folders)
    fitted = fit_quality(cases, signals=signals)
    report = {"fit_on": [str(f) for f in args.folders], "signals": list(signals), **fitted["evaluation"]}
    if args.check:
        held = load_cases(args.check)
        score = score_cases(held, fitted["calibration"])
        y = (held["dice"].to_numpy() < FAIL_DICE).astype(int)
        groups = held["patient_id"].to_numpy()
        report["check"] = {"folders": [str(f) for f in args.check]}
        if 0 < y.sum() < len(y):
            report["check"].update(auroc_with_ci(y, score, groups))
        flagged = score < fitted["calibration"]["threshold"]
        report["check"].update(
            n=int(len(y)),
            n_fail=int(y.sum()),
            sensitivity=float(flagged[y == 1].mean()) if y.sum() else None,
            flagged_share_of_good=float(flagged[y == 0].mean()),
        )
    atomic_write_text(out, json.dumps({**fitted["calibration"], "fit": report}, indent=1) + "\n")
    if args.report:
        atomic_write_text(Path(args.report), json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1, default=lambda v: float(v) if isinstance(v, np.floating) else str(v)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
