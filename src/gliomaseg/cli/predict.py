"""Inference sub-commands: ``predict`` and ``export``."""

from __future__ import annotations

import argparse
import time

from gliomaseg.cli._common import (
    add_command,
    add_device_flags,
    add_model_flag,
    add_out_flag,
    add_overwrite_flag,
    add_postprocess_flags,
    add_resume_flag,
    postprocess_changes,
)
from gliomaseg.errors import GliomasegError

__all__ = ["register"]


def _cmd_predict(args: argparse.Namespace) -> None:
    from gliomaseg.inference.predict import predict_inputs
    from gliomaseg.inference.pretrained import resolve_model

    models = [str(resolve_model(m)) for m in args.model]
    t0 = time.perf_counter()
    table = predict_inputs(
        models if len(models) > 1 else models[0],
        args.inputs,
        args.out,
        overwrite=args.overwrite,
        postprocess=postprocess_changes(args),
        batch_size=args.batch_size,
        device=args.device,
        bf16=args.bf16,
        threads=args.threads,
        overlays=args.overlays,
        graph_fusion=args.graph_fusion,
        resume=args.resume,
    )
    n_slices = int(table["slices"].sum())
    print(table.drop(columns=["input", "mask"]).to_string(index=False))
    written = "masks, overlays and areas.csv" if args.overlays else "masks and areas.csv"
    print(f"{len(table)} case(s), {n_slices} slice(s) in {time.perf_counter() - t0:.1f} s; {written} in {args.out}")


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
    p = add_command(
        sub,
        "predict",
        help="segment slices, folders or NIfTI -> masks, overlays, areas.csv",
        example="gliomaseg predict --model lgg-unet scan.nii.gz kaggle_3m/TCGA_CS_4942_19970222 --out pred",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="slice images (.tif/.png/.jpg, grey = FLAIR), folders of <name>_<n> slices, kaggle_3m patient "
        "folders, NIfTI volumes (.nii/.nii.gz)",
    )
    add_model_flag(p)
    add_out_flag(p, "the output folder (names mirror the inputs)", required=True)
    add_overwrite_flag(p, "existing outputs")
    add_resume_flag(p, "a stopped predict into the same --out: skip the cases whose outputs are all written")
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
    p.add_argument(
        "--overlays",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write an overlay PNG per slice beside the masks (default on)",
    )
    p.set_defaults(func=_cmd_predict)

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
