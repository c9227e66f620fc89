"""Inference sub-commands: ``predict`` and ``export``."""

from __future__ import annotations

import argparse
import time

from gliomaseg.cli._common import add_limit_flags, add_postprocess_flags, limits_from, postprocess_changes
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


def _cmd_predict(args: argparse.Namespace) -> None:
    from gliomaseg.inference.predict import predict_inputs

    models, inputs = _models_and_inputs(args)
    t0 = time.perf_counter()
    table = predict_inputs(
        models if len(models) > 1 else models[0],
        inputs,
        args.out,
        overwrite=args.overwrite,
        postprocess=postprocess_changes(args),
        batch_size=args.batch_size,
        device=args.device,
        bf16=args.bf16,
        threads=args.threads,
        overlays=not args.no_overlays,
        graph_fusion=args.graph_fusion,
        resume=args.resume,
        limits=limits_from(args, "predict"),
    )
    n_slices = int(table["slices"].sum())
    print(table.drop(columns=["input", "mask"]).to_string(index=False))
    print(
        f"{len(table)} case(s), {n_slices} slice(s) in {time.perf_counter() - t0:.1f} s; "
        f"masks, overlays and areas.csv in {args.out}"
    )


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
    add_limit_flags(p)
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
