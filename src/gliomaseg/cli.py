"""The ``gliomaseg`` command: thin sub-commands over the library functions.

Each pipeline stage has one sub-command (nnU-Net style): ``synth``, ``download``, ``index``,
``split``, ``cache``, ``train``, ``evaluate``, ``predict``, ``export``, and ``demo`` which chains
them on synthetic phantoms.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("gliomaseg")


# ----------------------------------------------------------------------------- data stages
def _cmd_synth(args: argparse.Namespace) -> None:
    from gliomaseg.data.phantoms import synthesise_dataset

    t0 = time.perf_counter()
    out = synthesise_dataset(args.out, args.patients, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.patients} synthetic patients to {out} in {time.perf_counter() - t0:.1f} s")


def _cmd_download(args: argparse.Namespace) -> None:
    from gliomaseg.data.download import download_dataset

    print(f"dataset in {download_dataset(args.dest, overwrite=args.overwrite)}")


def _cmd_index(args: argparse.Namespace) -> None:
    from gliomaseg.data.index import index_dataset, save_index, summarise_index

    out = Path(args.out or Path(args.workdir) / "index.csv")
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} exists: pass --overwrite to rebuild it")
    t0 = time.perf_counter()
    result = index_dataset(args.data_dir, skip_bad=args.skip_bad, progress=True)
    save_index(result.table, out)
    print(summarise_index(result.table))
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}")
    print(f"index written to {out} ({time.perf_counter() - t0:.1f} s)")


def _cmd_split(args: argparse.Namespace) -> None:
    from gliomaseg.data.index import load_index
    from gliomaseg.data.splits import make_splits, save_splits

    index = Path(args.index or Path(args.workdir) / "index.csv")
    out = Path(args.out or Path(args.workdir) / "splits.json")
    if not index.is_file():
        raise ValueError(f"no index at {index}: run `gliomaseg index DATA_DIR` first")
    splits = make_splits(
        load_index(index),
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        n_folds=args.folds,
        seed=args.seed,
        stratify=tuple(s for s in args.stratify.split(",") if s),
    )
    save_splits(splits, out, overwrite=args.overwrite)
    n_train, n_val = len(splits["folds"][0]["train"]), len(splits["folds"][0]["val"])
    print(
        f"{out}: test {len(splits['test'])} patients, {len(splits['folds'])} fold(s); "
        f"fold 0 train {n_train}, val {n_val}; stratified by {splits['stratify']}"
    )


def _cmd_cache(args: argparse.Namespace) -> None:
    from gliomaseg.data.cache import build_cache
    from gliomaseg.data.normalise import PreprocessConfig
    from gliomaseg.data.workspace import ensure_index

    t0 = time.perf_counter()
    table = ensure_index(args.data, Path(args.workdir) / "index.csv")
    t1 = time.perf_counter()
    cfg = PreprocessConfig(size=args.size, normalisation=args.normalisation)
    path = build_cache(table, Path(args.workdir) / "cache", cfg, progress=True)
    t2 = time.perf_counter()
    print(f"cache {path}: {len(table)} slices; index {t1 - t0:.1f} s, cache {t2 - t1:.1f} s, total {t2 - t0:.1f} s")


# ----------------------------------------------------------------------------- training
def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")


def _train_flag_type(hint: object) -> Callable[[str], object]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return _parse_bool
    return hint if hint in (int, float, str) else str  # type: ignore[return-value]


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from gliomaseg.training.config import PRESETS, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    p.add_argument("--preset", choices=sorted(PRESETS), help="cpu or gpu recipe (see README)")
    p.add_argument("--config", help="YAML or TOML file of settings (flags win over it)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("preset", "extra"):
            continue
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(
            flag, dest=f.name, type=_train_flag_type(hints[f.name]), default=None, help=f"default {f.default!r}"
        )


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig imported lazily
    import dataclasses as dc

    from gliomaseg.training.config import TrainConfig, resolve_config

    flags = {f.name: getattr(args, f.name, None) for f in dc.fields(TrainConfig) if f.name != "extra"}
    flags["preset"] = args.preset
    return resolve_config(flags, config_file=args.config)


def _cmd_train(args: argparse.Namespace) -> None:
    from gliomaseg.training import train

    cfg = _train_config(args)
    resume: str | bool | None = args.resume
    if resume == "":
        resume = True
    t0 = time.perf_counter()
    run_dir = train(cfg, resume=resume, overwrite=args.overwrite)
    print(f"run folder: {run_dir} (best.pt, last.pt, config.yaml, logs/) in {time.perf_counter() - t0:.0f} s")


# ----------------------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> None:
    from gliomaseg.data.phantoms import synthesise_dataset
    from gliomaseg.evaluation import evaluate
    from gliomaseg.training import train
    from gliomaseg.training.config import resolve_config

    out = Path(args.out)
    data = out / "kaggle_3m"
    t0 = time.perf_counter()
    if not (data / "data.csv").is_file():
        synthesise_dataset(data, args.patients, seed=args.seed)
        print(f"[demo] synthesised {args.patients} phantom patients in {data}")
    cfg = resolve_config(
        {
            "data": str(data),
            "workdir": str(out),
            "runs_dir": str(out / "runs"),
            "size": 64,
            "features": 8,
            "batch_size": 16,
            "loss": "bce_dice",
            "optimizer": "adamw",
            "lr": 3e-3,
            "scheduler": "onecycle",
            "epochs": args.epochs,
            "augment": "flips",
            "tumour_fraction": 0.5,
            "largest_component": True,
            "num_workers": 0,
            "seed": args.seed,
        }
    )
    run_dir = train(cfg, overwrite=True)
    print(f"[demo] trained in {time.perf_counter() - t0:.0f} s; run folder {run_dir}")
    out_eval = evaluate(run_dir / "best.pt", split="test", overwrite=True)
    _print_eval_summary(out_eval)
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s")


# ----------------------------------------------------------------------------- evaluation
_POSTPROCESS_FLAGS = ("threshold", "min_size", "largest_component", "tta", "fill_holes")


def _add_postprocess_flags(p: argparse.ArgumentParser) -> None:
    """Flags that change single post-processing settings; the model file's stored ones fill the rest."""
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--min-size", type=int, help="remove 3D components smaller than this many voxels")
    on_off = {"action": argparse.BooleanOptionalAction, "default": None}
    p.add_argument("--largest-component", **on_off, help="keep only the largest 3D component per volume")
    p.add_argument("--tta", **on_off, help="flip test-time augmentation")
    p.add_argument("--fill-holes", **on_off, help="fill holes enclosed by the mask in each slice")


def _postprocess_changes(args: argparse.Namespace) -> dict[str, object]:
    return {k: getattr(args, k) for k in _POSTPROCESS_FLAGS if getattr(args, k) is not None}


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from gliomaseg.checkpoint import load_checkpoint
    from gliomaseg.evaluation import evaluate
    from gliomaseg.evaluation.postprocess import PostprocessConfig

    # Flags change single settings of the checkpoint's stored post-processing; the rest is kept.
    stored = load_checkpoint(args.checkpoint).get("postprocess") or {}
    post = PostprocessConfig.from_dict({**stored, **_postprocess_changes(args)})
    patients = [p.strip() for p in (args.patients or "").split(",") if p.strip()]
    out = evaluate(
        args.checkpoint,
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
    )
    _print_eval_summary(out)


def _print_eval_summary(out: Path) -> None:
    import json

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
        f"median {fmt(dice['median'])}, n={dice['n']}"
    )
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
    print(f"report: {out / 'report.html'}")


# ----------------------------------------------------------------------------- predict / export
def _cmd_predict(args: argparse.Namespace) -> None:
    from gliomaseg.inference.predict import predict_inputs

    changes = _postprocess_changes(args)
    t0 = time.perf_counter()
    table = predict_inputs(
        args.checkpoint,
        args.inputs,
        args.out,
        overwrite=args.overwrite,
        postprocess=changes,
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


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gliomaseg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic phantoms in the kaggle_3m layout")
    p.add_argument("out")
    p.add_argument("--patients", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("download", help="fetch the Kaggle LGG dataset with kagglehub")
    p.add_argument("dest")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("index", help="scan a kaggle_3m folder (or own slices) into index.csv")
    p.add_argument("data_dir")
    p.add_argument("--workdir", default=".", help="where index.csv goes (default: .)")
    p.add_argument("--out", help="index file (default: WORKDIR/index.csv)")
    p.add_argument("--skip-bad", action="store_true", help="skip and list bad slices instead of failing")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("split", help="patient-level stratified splits -> splits.json (written once)")
    p.add_argument("--workdir", default=".")
    p.add_argument("--index", help="default: WORKDIR/index.csv")
    p.add_argument("--out", help="default: WORKDIR/splits.json")
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--folds", type=int, default=1, help="k folds over the non-test patients (1 = holdout)")
    p.add_argument("--stratify", default="site,burden", help="comma list of site, burden (or empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("cache", help="preprocess into the memory-mapped cache (timed)")
    p.add_argument("--data", help="kaggle_3m folder (indexed if WORKDIR/index.csv is missing)")
    p.add_argument("--workdir", default=".")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--normalisation", default="zscore")
    p.set_defaults(func=_cmd_cache)

    p = sub.add_parser("train", help="train a model (Lightning)")
    _add_train_flags(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        help="continue the run folder's last.ckpt, or the given Lightning checkpoint",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics at the data's resolution, figures, report.html for a split")
    p.add_argument("checkpoint", help="model file (best.pt or last.pt)")
    p.add_argument("--data", help="kaggle_3m folder (default: the data of the training run's index)")
    p.add_argument("--split", choices=["test", "val", "train", "all"], default="test")
    p.add_argument("--out", help="output folder (default: CHECKPOINT_FOLDER/eval_SPLIT)")
    p.add_argument("--index", help="index.csv (default: the training run's)")
    p.add_argument("--splits", help="splits.json (default: the training run's)")
    p.add_argument("--fold", type=int, help="fold for --split train/val (default: the checkpoint's)")
    _add_postprocess_flags(p)
    p.add_argument("--patients", help="comma list of patient ids to draw overlays for")
    p.add_argument("--no-figures", action="store_true", help="tables and report only (faster)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --out")
    p.set_defaults(func=_cmd_evaluate)

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
    _add_postprocess_flags(p)
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
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", help="target .onnx file (default: CHECKPOINT with suffix .onnx)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("demo", help="synthesise phantoms, index, split, train briefly, report")
    p.add_argument("--out", default="demo")
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except (ValueError, TypeError, RuntimeError, OSError) as err:
        if args.verbose:
            raise
        print(f"gliomaseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
