"""Inference sub-commands: ``predict`` and ``export``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gliomaseg.cli._common import add_postprocess_flags, postprocess_changes
from gliomaseg.errors import GliomasegError

__all__ = ["register"]


def _models_and_inputs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """``--model M [M ...] INPUT...``, or the first positional as the model: ``MODEL INPUT...``."""
    from gliomaseg.inference.pretrained import resolve_model

    if args.model:
        return [str(resolve_model(m)) for m in args.model], list(args.paths)
    if len(args.paths) < 2:
        raise GliomasegError("give a model and at least one input: MODEL INPUT... (or --model NAME|FILE INPUT...)")
    return [str(resolve_model(args.paths[0]))], list(args.paths[1:])


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
    from gliomaseg.inference.cohort import absolute, run_shard
    from gliomaseg.inference.inputs import discover_inputs
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
        f"task to finish merges areas.csv in {out}; failed cases go to failed.csv"
    )


def _cmd_predict(args: argparse.Namespace) -> None:
    from gliomaseg.inference.cohort import shard_table
    from gliomaseg.inference.predict import predict_inputs
    from gliomaseg.study.launchers import parse_shard

    models, inputs = _models_and_inputs(args)
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
        "overlays": not args.no_overlays,
        "graph_fusion": args.graph_fusion,
        "resume": args.resume,
    }
    if args.launcher == "submitit":
        _submit_shards(args, options)
        return
    if args.jobs is not None or args.slurm:
        raise GliomasegError("--jobs and --slurm set up SLURM array tasks: use them with --launcher submitit")
    t0 = time.perf_counter()
    shard = parse_shard(args.shard) if args.shard else None
    table = predict_inputs(**options, shard=shard)
    n_slices = int(table["slices"].sum())
    print(table.drop(columns=["input", "mask"]).to_string(index=False))
    where = f"shard {args.shard}: " if shard else ""
    merged = " (areas.csv: merged by the last shard to finish)" if shard else ""
    print(
        f"{where}{len(table)} case(s), {n_slices} slice(s) in {time.perf_counter() - t0:.1f} s; "
        f"masks, overlays and areas.csv in {args.out}{merged}"
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

    models = [resolve_model(m) for m in args.checkpoint]
    if args.format == "fp16":
        from gliomaseg.checkpoint import save_half_precision

        if len(models) != 1 or not args.out:
            raise GliomasegError("--format fp16 takes one model file and --out FILE.pt")
        out = save_half_precision(models[0], args.out, overwrite=args.overwrite)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, float16 weights)")
        return
    result = export_onnx(models if len(models) > 1 else models[0], args.out, opset=args.opset, overwrite=args.overwrite)
    print(f"wrote {result.path} (opset {result.opset}); onnxruntime vs PyTorch max abs diff {result.max_abs_diff:.2e}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``export`` to ``sub``."""
    p = sub.add_parser("predict", help="segment slices, folders or NIfTI -> masks, overlays, areas.csv")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="[MODEL] INPUT",
        help="the model file (best.pt or .onnx; leave it out when --model is given), then the inputs: slice "
        "images (.tif/.png/.jpg, grey = FLAIR), folders of <name>_<n> slices, kaggle_3m patient folders, "
        "NIfTI volumes (.nii/.nii.gz)",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME|FILE",
        help="a bundled model (`gliomaseg models` lists them, e.g. lgg-unet) or a model file; repeat it for an "
        "ensemble averaging the models' probabilities (--model a.pt --model b.pt)",
    )
    p.add_argument("--out", required=True, help="output folder (names mirror the inputs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped predict into the same --out: skip the cases whose outputs are all written",
    )
    p.add_argument("--batch-size", type=int, default=None, help="slices per forward pass")
    add_postprocess_flags(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (model files only)")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 network on the CPU (model files only; default: on where the CPU computes bf16 natively)",
    )
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (.onnx only; default: all)")
    p.add_argument(
        "--graph-fusion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CPU: run the network as a TorchScript graph fused by oneDNN Graph (model files only; default on; "
        "--no-graph-fusion skips its ~0.45 s set-up, faster below ~800 slices)",
    )
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="predict only the K-th of N slices of the cases (1 <= K <= N; shards may run at once on several "
        "machines into one --out; the last to finish merges areas.csv)",
    )
    p.add_argument("--launcher", choices=("local", "submitit"), default="local", help="where the cases are predicted")
    p.add_argument("--jobs", type=int, metavar="N", help="submitit: SLURM array tasks, one shard each (default 4)")
    p.add_argument(
        "--slurm",
        action="append",
        metavar="KEY=VALUE",
        help="submitit: a SLURM setting as in a study file's slurm: section (partition=gpu, timeout_min=30, "
        "gpus_per_node=1...); repeatable",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export a model file to ONNX (checked against PyTorch)")
    p.add_argument(
        "checkpoint",
        nargs="+",
        metavar="MODEL",
        help="model file (best.pt / last.pt); several with the same preprocessing = one ensemble graph",
    )
    p.add_argument(
        "--format",
        choices=["onnx", "fp16"],
        default="onnx",
        help="onnx (an ONNX graph), or fp16 (the model file with float16 weights: half the size, for shipping)",
    )
    p.add_argument("--out", help="target .onnx file (default: CHECKPOINT with suffix .onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing .onnx file")
    p.set_defaults(func=_cmd_export)
