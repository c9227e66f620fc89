"""Shared pieces of the benchmarks: the machine's description, timing, child processes, the data.

Every figure a benchmark reports is taken in the same run as its baseline, on the machine
described by :func:`machine_info` (load average included: other processes slow everything down).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "model_on_patients_args",
    "non_test_patients",
    "patient_volume_and_truth",
    "volume_dice",
    "SHARED_DATA",
    "best_time",
    "machine_info",
    "real_data",
    "run_child",
]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "lgg-dev"
_UNPACK = ROOT.parent / "shared" / "tools" / "lgg-unpack"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, native bf16, GPU, versions, load average."""
    from gliomaseg import __version__
    from gliomaseg.devices import cpu_has_native_bf16

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_amx": bool(torch.cpu._is_amx_tile_supported()),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "gliomaseg": __version__,
        "device": device,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def best_time(fn: Callable[[], Any], *, repeats: int, warmup: int = 1, sync: Callable[[], None] | None = None) -> float:
    """Best wall time in seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    The minimum is the figure least disturbed by other processes on a shared machine.
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def run_child(task: str, spec: dict[str, Any], *, timeout: float = 900) -> dict[str, Any]:
    """Run ``benchmarks._child TASK`` in a fresh Python process; returns its JSON report.

    A fresh process gives a clean peak RSS (``ru_maxrss`` of that process alone) and a cold start.

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "benchmarks._child", task, json.dumps(spec), str(report)]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not report.is_file():
            raise RuntimeError(f"benchmark child {task!r} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(report.read_text())


def real_data(path: str | None, workdir: Path, n_patients: int | None = None) -> Path:
    """A kaggle_3m folder: ``path`` if given, else ``../shared/data/lgg-dev`` unpacked into ``workdir``.

    Raises:
        SystemExit: no path and no ``../shared`` beside the checkout.
    """
    if path:
        return Path(path)
    if not SHARED_DATA.is_dir():
        raise SystemExit(
            f"no data: pass --data /path/to/kaggle_3m (or run beside ../shared, whose {SHARED_DATA} is unpacked)"
        )
    dest = workdir / (f"lgg{n_patients}" if n_patients else "lgg-all")
    if not (dest / "data.csv").is_file():
        cmd = [sys.executable, str(_UNPACK), str(dest)] + (["--patients", str(n_patients)] if n_patients else [])
        subprocess.run(cmd, check=True, capture_output=True)
    return dest


def non_test_patients(data: Path, splits: Path) -> list[Path]:
    """The patient folders of ``data`` outside the test part of ``splits`` (all of them without that file)."""
    test = set(json.loads(splits.read_text())["test"]) if splits.is_file() else set()
    return [p for p in sorted(data.iterdir()) if p.is_dir() and p.name not in test]


def patient_volume_and_truth(patient: Path) -> tuple[Any, Any]:
    """A kaggle_3m patient folder's ``S x H x W x 3`` volume and ``S x H x W`` bool mask."""
    import numpy as np

    from gliomaseg.data.io import read_mask
    from gliomaseg.inference import read_volume

    image = read_volume(patient)
    masks = [read_mask(patient / f"{patient.name}_{i}_mask.tif") for i in range(1, len(image) + 1)]
    return image, np.stack(masks) > 0


def volume_dice(pred: Any, truth: Any) -> float:
    """Volume Dice of two boolean masks, by the metrics code evaluate uses (NaN when the truth is empty)."""
    from gliomaseg.evaluation.metrics import dice_from_counts

    return float(dice_from_counts((pred & truth).sum(), pred.sum(), truth.sum()))


def model_on_patients_args(description: str, argv: list[str] | None) -> tuple[Any, Any]:
    """The command line of the checks that run a model over real patients (``DATA [--model] [--splits]
    [--out]``), and the model loaded on the CPU."""
    import argparse

    from gliomaseg.inference import load_segmenter
    from gliomaseg.inference.pretrained import resolve_model

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("data", type=Path, help="a kaggle_3m folder (its test patients are left out)")
    ap.add_argument("--model", default="lgg-unet", help="bundled model name or model file (default lgg-unet)")
    ap.add_argument(
        "--splits", type=Path, default=Path("docs/splits_lgg-dev.json"), help="the split whose test part is left out"
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    args = ap.parse_args(argv)
    return args, load_segmenter(resolve_model(args.model), device="cpu")


def report_patients(summary: dict[str, Any], per_patient: dict[str, Any], out: Path | None) -> None:
    """Print a per-patient benchmark's summary and, with ``out``, write it with the per-patient figures (JSON)."""
    print(json.dumps(summary, indent=1))
    if out:
        out.write_text(json.dumps({"summary": summary, "per_patient": per_patient}, indent=1))
