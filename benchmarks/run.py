"""The one benchmark command: training, compute, inference, preparation, memory and scaling.

Usage (from the repository root, after ``make setup``)::

    python -m benchmarks.run [--quick] [--out FILE.json] [--data KAGGLE_3M] [--device cpu|cuda]

Without ``--data`` the real ``../shared/data/lgg-dev`` patients are unpacked (once) into the work
folder. ``--quick`` (3-4 minutes on the project machine) runs the ``cpu`` preset in bf16 (with its own and
with the ``robust`` augmentation), the
main inference paths and the cold/warm preparation; the full run (under 15 minutes) adds float32,
the seed's classic U-Net at 256 x 256, more inference paths, evaluate's memory and the scaling
with the number of patients and the batch size. A table is printed and everything is written as
JSON (default ``benchmarks/results/latest.json``). Method and latest figures: docs/performance.md.
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


def _table(report: dict[str, Any]) -> str:
    lines = ["", "training (slices/s; efficiency = real / bare)"]
    for r in report["training"]["recipes"]:
        lines.append(
            f"  {r['recipe']:40s} {r['precision']:11s} bare {r['bare_slices_per_s']:7.1f}  real "
            f"{r['real_slices_per_s']:7.1f}  eff {r['efficiency']:.2f}  {r['achieved_gflops']:7.1f} GFLOP/s "
            f"({100 * r['share_of_peak']:.0f}% of peak)  RSS {r['peak_rss_mb']:.0f} MB"
        )
    peaks = report["training"]["matmul_peak_gflops"]
    lines.append(f"  matmul peak: fp32 {peaks['fp32']} GFLOP/s, bf16 {peaks['bf16']} GFLOP/s")
    lines.append("inference (end to end, slices/s)")
    for r in report["inference"]["paths"]:
        lines.append(
            f"  {r['path']:44s} {r['slices_per_s']:7.1f}  x{r['vs_naive']:.2f}  mask Dice vs naive "
            f"{r['mask_dice_vs_naive']:.4f}"
        )
    pipe = report["pipeline"]
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.inference import inference_section
    from benchmarks.pipeline import pipeline_section
    from benchmarks.training import bench_run_name, training_section

    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short form (3-4 min)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON report (default: %(default)s)")
    parser.add_argument("--data", help="a kaggle_3m folder (default: ../shared lgg-dev, unpacked once)")
    parser.add_argument("--workdir", default=str(ROOT / ".bench"), help="index, caches and runs (reused)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (default cpu)")
    parser.add_argument("--checkpoint", help="trained model file for the inference section (default: untrained)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data = real_data(args.data, workdir)
    splits = _splits_for(data)
    report: dict[str, Any] = {"machine": machine_info(args.device), "quick": args.quick, "data": str(data)}
    print(f"benchmark on {report['machine']['cpu']} ({report['machine']['cpu_count']} cores), data {data}", flush=True)
    report["training"] = training_section(data, workdir, splits, quick=args.quick, device=args.device)
    report["inference"] = inference_section(args.checkpoint, quick=args.quick)
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
