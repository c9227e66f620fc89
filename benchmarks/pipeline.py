"""Preparation, memory and scaling: what the pipeline costs around the network.

- **preparation**: cold ``index`` + cache build of a dataset (fresh work folder), and a warm start
  (index and cache present) from process launch to the first training step;
- **memory**: peak RSS of ``train`` (from the training section) and of ``evaluate`` on all patients;
- **scaling**: index, cache and evaluate time at 10, 30 and all patients.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import real_data, run_child

__all__ = ["cold_prepare", "evaluate_run", "pipeline_section", "warm_start"]


def cold_prepare(data: Path, workdir: Path, size: int = 128) -> dict[str, Any]:
    """Index + cache of ``data`` into a fresh ``workdir`` (in a fresh process)."""
    shutil.rmtree(workdir, ignore_errors=True)  # cold: nothing of an earlier run may be reused
    report = run_child("prepare", {"data": str(data), "workdir": str(workdir), "size": size})
    report["total_seconds"] = round(report["index_seconds"] + report["cache_seconds"], 3)
    return report


def warm_start(data: Path, workdir: Path, splits: Path | None) -> float:
    """Seconds from launching a ``train`` process (index and cache present) to its first training step."""
    flags = {
        "data": str(data),
        "workdir": str(workdir),
        "runs_dir": str(workdir / "runs"),
        "run_name": "warm",
        "epochs": 1,
        "limit_train_batches": 2,
        "limit_val_batches": 1,
        **({"splits": str(splits)} if splits else {}),
    }
    launched = time.time()
    report = run_child("train", {"preset": "cpu", "flags": flags})
    return round(report["first_step_wall"] - launched, 2)


def evaluate_run(checkpoint: Path, data: Path, out: Path) -> dict[str, Any]:
    """``evaluate`` every patient of ``data`` (split ``all``, no figures) in a fresh process."""
    spec = {
        "checkpoint": str(checkpoint),
        "kwargs": {"data": str(data), "split": "all", "out": str(out), "figures": False},
    }
    return run_child("evaluate", spec)


def pipeline_section(
    data_arg: str | None, data: Path, workdir: Path, splits: Path | None, checkpoint: Path, *, quick: bool
) -> dict[str, Any]:
    """Cold and warm preparation, evaluate's peak RSS, and time against the number of patients."""
    out: dict[str, Any] = {}
    full = cold_prepare(data, workdir / "cold-all")
    out["cold_index_cache_all"] = full
    out["warm_start_to_first_step_s"] = warm_start(data, workdir, splits)
    if quick:
        return out
    scaling: dict[str, Any] = {}
    for n in (10, 30):
        subset = data if data_arg else real_data(None, workdir / "subsets", n_patients=n)
        if data_arg:  # a user's own folder cannot be cut here: scaling needs ../shared's unpacker
            break
        prep = cold_prepare(subset, workdir / f"cold-{n}")
        ev = evaluate_run(checkpoint, subset, workdir / f"eval-{n}")
        scaling[str(n)] = {**prep, "evaluate_seconds": ev["seconds"], "evaluate_slices": ev["n_slices"]}
    ev_all = evaluate_run(checkpoint, data, workdir / "eval-all")
    scaling["all"] = {**full, "evaluate_seconds": ev_all["seconds"], "evaluate_slices": ev_all["n_slices"]}
    out["scaling"] = scaling
    out["evaluate_all_peak_rss_mb"] = ev_all["peak_rss_mb"]
    return out
