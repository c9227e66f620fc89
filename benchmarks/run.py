"""The one benchmark command: training, compute, inference, preparation, memory and scaling.

Usage (from the repository root, after ``make setup``)::

    python -m benchmarks.run [--quick] [--out FILE.json] [--data KAGGLE_3M] [--device cpu|cuda]
                             [--sections training,inference,predict,pipeline]

Without ``--data`` the real ``../shared/data/lgg-dev`` patients are unpacked (once) into the work folder.
``--quick`` (4-5 minutes on the project machine) runs the ``cpu`` preset in bf16 (with its own and with the
``robust`` and ``robust_mild`` augmentations, and 2.5D on ``robust_mild``), the main inference paths,
``predict`` end to end on a 155-slice volume and the cold/warm preparation; the full run (under 15 minutes)
adds float32, the seed's classic U-Net at 256 x 256, more inference paths, ``predict`` with per-slice
overlays, evaluate's memory and the scaling with the number of patients and the batch size. ``--sections``
runs a subset. A table is printed and everything is written as JSON (default
``benchmarks/results/latest.json``). Method and latest figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, machine_info, real_data

__all__ = ["main"]

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest.json"
SPLITS = ROOT / "docs" / "splits_lgg-dev.json"


def _splits_for(data: Path) -> Path | None:
    """The committed split when ``data`` holds its patients (lgg-dev), else None (one is made)."""
    import json as _json

    listed = set(_json.loads(SPLITS.read_text())["test"])
    present = {p.name for p in data.iterdir() if p.is_dir()}
    return SPLITS if listed <= present else None


SECTIONS = ("training", "inference", "predict", "pipeline")


def _predict_lines(pred: dict[str, Any]) -> list[str]:
    lines = [
        f"predict end to end ({pred['volume']}): {pred['predict_slices_per_s']} slices/s = "
        f"{pred['ratio_vs_network_path']:.2f} x the network path ({pred['network_path_slices_per_s']} slices/s; "
        f"target >= {pred['target_ratio']}); network alone on this volume {pred['network_same_volume_slices_per_s']} "
        f"slices/s (ratio {pred['ratio_vs_network_same_volume']:.2f})"
    ]
    if pred.get("predict_with_overlays_slices_per_s"):
        lines.append(f"  with per-slice overlays: {pred['predict_with_overlays_slices_per_s']} slices/s")
    stages = ", ".join(f"{k} {v:.3f} s" for k, v in pred["stage_seconds"].items())
    lines.append(f"  stages: {stages}; model load {pred['model_load_seconds']} s (once per command)")
    return lines


def _table(report: dict[str, Any]) -> str:
    lines = [""]
    if "training" in report:
        lines += _training_lines(report["training"])
    if "inference" in report:
        lines.append("inference (end to end, slices/s)")
        for r in report["inference"]["paths"]:
            lines.append(
                f"  {r['path']:44s} {r['slices_per_s']:7.1f}  x{r['vs_naive']:.2f}  mask Dice vs naive "
                f"{r['mask_dice_vs_naive']:.4f}"
            )
    if "predict" in report:
        lines += _predict_lines(report["predict"])
    if "pipeline" in report:
        lines += _pipeline_lines(report["pipeline"])
    return "\n".join(lines)


def _training_lines(training: dict[str, Any]) -> list[str]:
    lines = ["training (slices/s; efficiency = real / bare)"]
    for r in training["recipes"]:
        lines.append(
            f"  {r['recipe']:40s} {r['precision']:11s} bare {r['bare_slices_per_s']:7.1f}  real "
            f"{r['real_slices_per_s']:7.1f}  eff {r['efficiency']:.2f}  {r['achieved_gflops']:7.1f} GFLOP/s "
            f"({100 * r['share_of_peak']:.0f}% of peak)  RSS {r['peak_rss_mb']:.0f} MB"
        )
    peaks = training["matmul_peak_gflops"]
    lines.append(f"  matmul peak: fp32 {peaks['fp32']} GFLOP/s, bf16 {peaks['bf16']} GFLOP/s")
    return lines


def _pipeline_lines(pipe: dict[str, Any]) -> list[str]:
    lines = []
    cold = pipe["cold_index_cache_all"]
    lines.append(
        f"preparation: cold index {cold['index_seconds']} s + cache {cold['cache_seconds']} s "
        f"({cold['slices']} slices); warm start to first step {pipe['warm_start_to_first_step_s']} s"
    )
    for n, row in pipe.get("scaling", {}).items():
        lines.append(
            f"  {n:>4s} patients: index {row['index_seconds']} s, cache {row['cache_seconds']} s, "
            f"evaluate {row['evaluate_seconds']} s ({row['evaluate_slices']} slices)"
        )
    if "evaluate_all_peak_rss_mb" in pipe:
        lines.append(f"  evaluate peak RSS (all patients): {pipe['evaluate_all_peak_rss_mb']} MB")
    return lines


def main(argv: list[str] | None = None) -> int:
    from benchmarks.inference import inference_section
    from benchmarks.pipeline import pipeline_section
    from benchmarks.predict import predict_section
    from benchmarks.training import bench_run_name, training_section

    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short form (3-4 min)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON report (default: %(default)s)")
    parser.add_argument("--data", help="a kaggle_3m folder (default: ../shared lgg-dev, unpacked once)")
    parser.add_argument("--workdir", default=str(ROOT / ".bench"), help="index, caches and runs (reused)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (default cpu)")
    parser.add_argument("--checkpoint", help="trained model file for the inference section (default: untrained)")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated subset of %(default)s (predict needs inference; pipeline needs training or --checkpoint)",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if "predict" in sections and "inference" not in sections:
        parser.error("the predict section is compared with the inference section: add inference")
    if "pipeline" in sections and "training" not in sections and not args.checkpoint:
        parser.error("the pipeline section evaluates the model trained by the training section, or --checkpoint")

    t0 = time.perf_counter()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # inference and predict run on phantoms: the real data are unpacked only for training and pipeline
    needs_data = bool({"training", "pipeline"} & set(sections))
    data = real_data(args.data, workdir) if needs_data else Path(args.data or "-")
    splits = _splits_for(data) if needs_data else None
    report: dict[str, Any] = {"machine": machine_info(args.device), "quick": args.quick, "data": str(data)}
    report["sections"] = sections
    print(f"benchmark on {report['machine']['cpu']} ({report['machine']['cpu_count']} cores), data {data}", flush=True)
    if "training" in sections:
        report["training"] = training_section(data, workdir, splits, quick=args.quick, device=args.device)
    if "inference" in sections:
        report["inference"] = inference_section(args.checkpoint, quick=args.quick)
    if "predict" in sections:
        report["predict"] = predict_section(report["inference"], quick=args.quick)
    if "pipeline" in sections:
        # what a user evaluates: a model of the cpu preset (the one just trained, or --checkpoint)
        trained = workdir / "runs" / bench_run_name("cpu", "bf16-mixed") / "best.pt"
        bench_model = Path(args.checkpoint) if args.checkpoint else trained
        report["pipeline"] = pipeline_section(args.data, data, workdir, splits, bench_model, quick=args.quick)
    report["machine"]["load_average_end"] = machine_info(args.device)["load_average"]
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(_table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['seconds']} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
