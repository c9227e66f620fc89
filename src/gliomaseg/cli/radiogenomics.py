"""Radiogenomics sub-command: ``radiogenomics`` (shape features vs genomic clusters)."""

from __future__ import annotations

import argparse

from gliomaseg.cli._common import (
    add_command,
    add_device_flags,
    add_figures_flag,
    add_model_flag,
    add_n_boot_flag,
    add_out_flag,
    add_overwrite_flag,
    add_resume_flag,
)

__all__ = ["register"]


def _spacing(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give three positive numbers SLICE,ROW,COLUMN, e.g. 3,0.5,0.5")
    return values  # type: ignore[return-value]


def _cmd_radiogenomics(args: argparse.Namespace) -> None:
    from gliomaseg.radiogenomics.analysis import run_radiogenomics

    result = run_radiogenomics(
        args.data,
        args.out,
        index=args.index,
        models=args.model or (),
        study=args.study,
        config=args.study_config,
        masks=args.masks,
        clusters=[c.strip() for c in args.clusters.split(",")] if args.clusters else None,
        spacing=args.spacing,
        n_boot=args.n_boot,
        figures=args.figures,
        overwrite=args.overwrite,
        resume=args.resume,
        device=args.device,
    )
    s, assoc = result.summary, result.associations
    print(f"{s['data']['n_patients']} patients, masks: {s['masks']}, {s['seconds']} s")
    if s["prediction"]:
        print(f"patients without a prediction: {len(s['patients_without_prediction'])}")
    for c, m in s["missing_clusters"]["per_cluster"].items():
        if m["n_missing"]:
            print(f"{c}: {m['n_missing']} patient(s) without a value (left out of its tests)")
    paper = assoc[assoc["family"] == "paper"]
    for r in paper.sort_values("fisher_p").head(5).itertuples():
        print(
            f"{r.masks}: {r.feature} vs {r.cluster}: Fisher p={r.fisher_p:.2g} "
            f"(Bonferroni x{r.n_tests}: {r.fisher_p_bonferroni:.2g}), Kruskal-Wallis p={r.kruskal_p:.2g}"
        )
    print(f"tables and report: {result.out / 'radiogenomics.md'}, {result.out / 'report.html'}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``radiogenomics`` to ``sub``."""
    p = add_command(
        sub,
        "radiogenomics",
        help="tumour shape features (truth and/or predicted masks) vs the genomic clusters of data.csv",
        example="gliomaseg radiogenomics kaggle_3m --model lgg-unet --out radiogenomics\n"
        "gliomaseg radiogenomics kaggle_3m --study studies/cpu-small --study-config unet__dice --out rg_oof",
    )
    p.add_argument("data", nargs="?", help="kaggle_3m folder with data.csv (or give --index)")
    add_out_flag(p, "the results folder (default: ./radiogenomics)", default="radiogenomics")
    p.add_argument("--index", help="index file to use instead of indexing DATA")
    add_model_flag(p, required=False, extra=" (its masks are the predicted ones)")
    p.add_argument("--study", help="study folder (splits.json, runs/<config>__fold<k>/ models): out-of-fold masks")
    p.add_argument("--study-config", metavar="NAME", help="configuration name of the study's runs (with --study)")
    p.add_argument(
        "--masks",
        choices=["auto", "truth", "predicted", "both"],
        default="auto",
        help="masks to measure (default auto: both with --model/--study, else truth)",
    )
    p.add_argument("--clusters", help="comma list of cluster columns (default: the Kaggle ones present)")
    p.add_argument(
        "--spacing",
        type=_spacing,
        default=(1.0, 1.0, 1.0),
        help="voxel size SLICE,ROW,COLUMN for volume/surface/sphericity (default 1,1,1: voxel units)",
    )
    add_n_boot_flag(p, "the AUC CIs")
    add_figures_flag(p, "the box plots")
    add_device_flags(p, bf16=False, what="model files")
    add_resume_flag(p, "an interrupted run in --out (same settings)")
    add_overwrite_flag(p, "the results in a non-empty --out")
    p.set_defaults(func=_cmd_radiogenomics)
