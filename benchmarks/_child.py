"""One benchmark task in a fresh process: ``python -m benchmarks._child TASK SPEC_JSON REPORT_PATH``.

Tasks: ``train`` (``gliomaseg.training.trainer.train`` with a timing callback), ``evaluate``,
``prepare`` (cold index + cache). The report holds the task's timings, the process's peak RSS and
the wall-clock time of the first training step (to measure a warm start from process launch).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L


class EpochTimer(L.Callback):
    """Wall-clock time of each epoch (training batches, validation, logging, checkpoint writes)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.slices: list[int] = []
        self.first_step_wall: float | None = None
        self.end: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.starts.append(time.perf_counter())
        self.slices.append(0)

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, idx: int) -> None:
        if self.first_step_wall is None:
            self.first_step_wall = time.time()
        self.slices[-1] += len(batch["image"])

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.end = time.perf_counter()

    def epochs(self) -> list[dict[str, float]]:
        """Seconds and slices of each epoch, from its start to the next one's (or the end of fit)."""
        ends = [*self.starts[1:], self.end or time.perf_counter()]
        return [
            {"seconds": round(e - s, 3), "slices": n, "slices_per_s": round(n / (e - s), 2)}
            for s, e, n in zip(self.starts, ends, self.slices)
        ]


def _train(spec: dict[str, Any]) -> dict[str, Any]:
    from gliomaseg.training.config import resolve_config
    from gliomaseg.training.trainer import train

    timer = EpochTimer()
    cfg = resolve_config(spec["flags"], preset=spec.get("preset"))
    train(cfg, overwrite=True, callbacks=[timer])
    return {"epochs": timer.epochs(), "first_step_wall": timer.first_step_wall}


def _evaluate(spec: dict[str, Any]) -> dict[str, Any]:
    from gliomaseg.evaluation.evaluator import evaluate

    t0 = time.perf_counter()
    result = evaluate(spec["checkpoint"], progress=False, overwrite=True, **spec.get("kwargs", {}))
    return {"seconds": round(time.perf_counter() - t0, 3), "n_slices": result.summary["n_slices"]}


def _prepare(spec: dict[str, Any]) -> dict[str, Any]:
    from gliomaseg.data.cache import build_cache
    from gliomaseg.data.index import index_dataset
    from gliomaseg.data.normalise import PreprocessConfig

    t0 = time.perf_counter()
    table = index_dataset(spec["data"]).table
    t1 = time.perf_counter()
    build_cache(table, Path(spec["workdir"]) / "cache", PreprocessConfig(size=spec["size"]))
    t2 = time.perf_counter()
    return {"index_seconds": round(t1 - t0, 3), "cache_seconds": round(t2 - t1, 3), "slices": len(table)}


TASKS = {"train": _train, "evaluate": _evaluate, "prepare": _prepare}


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Not ``ru_maxrss``: Linux keeps that high-water mark
    across exec, so a child of a large parent would report the parent's size; VmHWM belongs to the
    process image alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux


def main() -> None:
    task, spec, report = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    result = TASKS[task](spec)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["peak_rss_children_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    report.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
