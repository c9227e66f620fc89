"""Inference sub-commands: ``predict`` and ``export``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gliomaseg.cli._common import (
    add_command,
    add_device_flags,
    add_launcher_flag,
    add_limit_flags,
    add_model_flag,
    add_out_flag,
    add_overwrite_flag,
    add_postprocess_flags,
    add_quality_flag,
    add_resume_flag,
    add_shard_flag,
    limits_from,
    postprocess_changes,
)
from gliomaseg.errors import GliomasegError

__all__ = ["register"]


def _slurm_settings(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` -> ``{KEY: VALUE}``, numbers as numbers (``--slurm timeout_min=30 --slurm partition=gpu``)."""
    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise GliomasegError(f"--slurm {pair!r}: write KEY=VALUE, e.g. --slurm partition=gpu")
        value: object = text
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                continue
        settings[key] = value
    return settings


def _submit_shards(args: argparse.Namespace, options: dict[str, object]) -> None:
    """``--launcher submitit``: one SLURM array task per shard, each a ``predict --shard K/N``."""
    from gliomaseg.inference.cohort import absolute
    from gliomaseg.inference.inputs import discover_inputs
    from gliomaseg.inference.predict import run_shard
    from gliomaseg.study.launchers import submit_array

    if args.shard:
        raise GliomasegError("--shard picks the shard to run here; with --launcher submitit give --jobs N instead")
    n = 4 if args.jobs is None else args.jobs
    if n < 1:
        raise GliomasegError(f"--jobs {n}: give the number of SLURM array tasks, at least 1")
    out = Path(args.out).resolve()
    discover_inputs(options["inputs"], out)  # missing or unsupported inputs fail here, not in the SLURM tasks
    models = absolute(options["model_path"] if isinstance(options["model_path"], list) else [options["model_path"]])
    kwargs = {**options, "model_path": models if len(models) > 1 else models[0], "out": str(out)}
    kwargs["inputs"] = absolute(options["inputs"])
    jobs = submit_array(
        out / "slurm",
        "gliomaseg-predict",
        run_shard,
        [[kwargs] * n, list(range(1, n + 1)), [n] * n],
        _slurm_settings(args.slurm or []),
    )
    print(
        f"submitted {n} shard(s) as SLURM array {jobs[0].job_id.split('_')[0]} (logs in {out / 'slurm'}); the last "
        f"task to finish merges cases.csv and components.csv in {out}; failed cases go to failed.csv"
    )


def _cmd_predict(args: argparse.Namespace) -> None:
    from gliomaseg.inference.cohort import shard_table
    from gliomaseg.inference.predict import predict_inputs
    from gliomaseg.inference.pretrained import resolve_model
    from gliomaseg.study.launchers import parse_shard

    models, inputs = [str(resolve_model(m)) for m in args.model], list(args.inputs)
    options = {
        "model_path": models if len(models) > 1 else models[0],
        "inputs": inputs,
        "out": args.out,
        "overwrite": args.overwrite,
        "postprocess": postprocess_changes(args),
        "batch_size": args.batch_size,
        "device": args.device,
        "bf16": args.bf16,
        "threads": args.threads,
        "overlays": args.overlays,
        "overview": args.overview,
        "save_probabilities": args.save_probabilities,
        "graph_fusion": args.graph_fusion,
        "resume": args.resume,
        "quality": args.quality_calibration if args.quality and args.quality_calibration else args.quality,
        "limits": limits_from(args, "predict"),
    }
    if args.launcher == "submitit":
        _submit_shards(args, options)
        return
    if args.jobs is not None or args.slurm:
        raise GliomasegError("--jobs and --slurm set up SLURM array tasks: use them with --launcher submitit")
    t0 = time.perf_counter()
    shard = parse_shard(args.shard) if args.shard else None
    table = predict_inputs(**options, shard=shard, series=args.series, field_of_view=args.field_of_view)
    n_slices = int(table["slices"].sum())
    shown = ["case", "kind", "slices", "slices_with_tumour", "tumour_voxels", "tumour_ml", "volume_unit", "components"]
    shown += ["quality_score", "quality_flag"] if args.quality else []
    print(table[shown].to_string(index=False))
    where = f"shard {args.shard}: " if shard else ""
    merged = " (cases.csv, components.csv: merged by the last shard to finish)" if shard else ""
    written = ["masks", *(["overlays"] if args.overlays else []), *(["overviews"] if args.overview else [])]
    print(
        f"{where}{len(table)} case(s), {n_slices} slice(s) in {time.perf_counter() - t0:.1f} s; "
        f"{', '.join(written)}, cases.csv and components.csv in {args.out}{merged}"
    )
    failed = table.attrs["failed"]
    if len(failed):
        print(failed.to_string(index=False))
        first = failed.iloc[0]
        listed = Path(args.out) / "failed.csv"
        print(
            f"gliomaseg predict: {len(failed)} of {len(failed) + len(table)} case(s) failed (listed in "
            f"{shard_table(listed, shard) if shard else listed}; first: {first['case']}: {first['error']})",
            file=sys.stderr,
        )
        raise SystemExit(1)


def _cmd_export(args: argparse.Namespace) -> None:
    from gliomaseg.inference.export import export_onnx
    from gliomaseg.inference.pretrained import resolve_model

    models = [resolve_model(m) for m in args.model]
    if args.format == "fp16":
        from gliomaseg.checkpoint import save_half_precision

        if len(models) != 1:
            raise GliomasegError("--format fp16 takes one --model")
        out = args.out or f"{models[0].stem}_fp16.pt"  # in the current folder, never beside the model
        out = save_half_precision(models[0], out, overwrite=args.overwrite)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, float16 weights)")
        return
    result = export_onnx(models if len(models) > 1 else models[0], args.out, opset=args.opset, overwrite=args.overwrite)
    print(f"wrote {result.path} (opset {result.opset}); onnxruntime vs PyTorch max abs diff {result.max_abs_diff:.2e}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``export`` to ``sub``."""
    _register_predict(sub)
    _register_export(sub)


def _register_predict(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "predict",
        help="segment slices, folders, NIfTI or DICOM -> masks (NIfTI, DICOM SEG), overviews, cases.csv",
        example="gliomaseg predict --model lgg-unet scan.nii.gz kaggle_3m/TCGA_CS_4942_19970222 --out pred",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="slice images (.tif/.png/.jpg, grey = FLAIR), folders of <name>_<n> slices, kaggle_3m patient folders, "
        "NIfTI volumes (.nii/.nii.gz, any orientation; <case>_flair/_t1/_t1ce files = one case), DICOM series or "
        "study folders",
    )
    add_model_flag(p)
    add_out_flag(p, "the output folder (names mirror the inputs)", required=True)
    add_overwrite_flag(p, "existing outputs")
    add_resume_flag(p, "a stopped predict into the same --out: skip the cases whose outputs are all written")
    p.add_argument(
        "--series",
        metavar="NUMBER|UID|DESCRIPTION",
        default=None,
        help="DICOM inputs: the series to segment, by its number in the listing predict logs, its SeriesInstanceUID "
        "or its description (default: the FLAIR series, picked by its description or protocol)",
    )
    p.add_argument(
        "--field-of-view",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NIfTI/DICOM: the network sees the slices cropped or padded to a square window around the head, "
        "framed as in the training data (keeps the accuracy on scans with a wider or off-centre view; outputs "
        "keep the whole slices; default on)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="slices per batch (forward pass)")
    add_postprocess_flags(p)
    add_device_flags(p, what="model files only")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (.onnx only; default: all)")
    p.add_argument(
        "--graph-fusion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CPU: run the network as a TorchScript graph fused by oneDNN Graph (model files only; default on; "
        "--no-graph-fusion skips its ~0.45 s set-up, faster below ~800 slices)",
    )
    _add_predict_outputs(p)
    add_quality_flag(p, "columns quality_score and quality_flag of cases.csv")
    _add_predict_sharding(p)
    add_limit_flags(p)
    p.set_defaults(func=_cmd_predict)


def _add_predict_outputs(p: argparse.ArgumentParser) -> None:
    """predict's optional outputs besides the masks and cases.csv."""
    p.add_argument(
        "--overlays",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="an overlay PNG per slice (default: only for single-slice inputs; volumes get one overview figure)",
    )
    p.add_argument(
        "--overview",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one overview PNG per volume: the slices with the most tumour, outlined (default on)",
    )
    p.add_argument(
        "--save-probabilities",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also write each case's tumour probabilities, <name>_proba.nii.gz (float32 0..1, the input's geometry)",
    )


def _add_predict_sharding(p: argparse.ArgumentParser) -> None:
    """predict's shards, here or as a SLURM job array."""
    add_shard_flag(
        p,
        "the cases (1 <= K <= N; shards may run at once on several machines into one --out; the last to finish "
        "merges cases.csv and components.csv)",
    )
    add_launcher_flag(p)
    p.add_argument("--jobs", type=int, metavar="N", help="submitit: SLURM array tasks, one shard each (default 4)")
    p.add_argument(
        "--slurm",
        action="append",
        metavar="KEY=VALUE",
        help="submitit: a SLURM setting as in a study file's slurm: section (partition=gpu, timeout_min=30, "
        "gpus_per_node=1...); repeatable",
    )


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "export",
        help="export a model to ONNX (checked against PyTorch) or to float16 weights",
        example="gliomaseg export --model lgg-unet --out lgg-unet.onnx\n"
        "gliomaseg export --model runs/unet__bce_dice__fold0/last.pt --format fp16 --out unet_fp16.pt",
    )
    add_model_flag(p, extra=" (ONNX only: members with the same preprocessing become one graph)")
    p.add_argument(
        "--format",
        choices=["onnx", "fp16"],
        default="onnx",
        help="onnx (an ONNX graph), or fp16 (the model file with float16 weights: half the size, for shipping)",
    )
    add_out_flag(
        p,
        "the target file (default: ./MODEL_STEM.onnx, an ensemble's ./ensemble.onnx; fp16: ./MODEL_STEM_fp16.pt)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    add_overwrite_flag(p, "an existing target file")
    p.set_defaults(func=_cmd_export)
