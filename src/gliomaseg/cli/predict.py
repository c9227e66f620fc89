"""Inference sub-commands: ``predict`` and ``export``."""

from __future__ import annotations

import argparse
import time

from gliomaseg.cli._common import add_postprocess_flags, postprocess_changes

__all__ = ["register"]


def _cmd_predict(args: argparse.Namespace) -> None:
    from gliomaseg.inference.predict import predict_inputs

    t0 = time.perf_counter()
    table = predict_inputs(
        args.checkpoint,
        args.inputs,
        args.out,
        overwrite=args.overwrite,
        postprocess=postprocess_changes(args),
        batch_size=args.batch_size,
        device=args.device,
        bf16=args.bf16,
        threads=args.threads,
        overlays=not args.no_overlays,
        graph_fusion=args.graph_fusion,
    )
    n_slices = int(table["slices"].sum())
    print(table.drop(columns=["input", "mask"]).to_string(index=False))
    print(
        f"{len(table)} case(s), {n_slices} slice(s) in {time.perf_counter() - t0:.1f} s; "
        f"masks, overlays and areas.csv in {args.out}"
    )


def _cmd_export(args: argparse.Namespace) -> None:
    from gliomaseg.inference.export import export_onnx

    result = export_onnx(args.checkpoint, args.out, opset=args.opset, overwrite=args.overwrite)
    print(f"wrote {result.path} (opset {result.opset}); onnxruntime vs PyTorch max abs diff {result.max_abs_diff:.2e}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``export`` to ``sub``."""
    p = sub.add_parser("predict", help="segment slices, folders or NIfTI -> masks, overlays, areas.csv")
    p.add_argument("checkpoint", help="model file (best.pt) or ONNX export (.onnx)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="slice image (.tif/.png/.jpg, grey = FLAIR), folder of <name>_<n> slices, "
        "kaggle_3m patient folder, or NIfTI (.nii/.nii.gz)",
    )
    p.add_argument("--out", required=True, help="output folder (names mirror the inputs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--batch-size", type=int, default=None, help="slices per forward pass")
    add_postprocess_flags(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (model files only)")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast on CPU (model files only; default off)",
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
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export a model file to ONNX (checked against PyTorch)")
    p.add_argument("checkpoint", help="model file (best.pt / last.pt)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    p.add_argument("--out", help="target .onnx file (default: CHECKPOINT with suffix .onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing .onnx file")
    p.set_defaults(func=_cmd_export)
