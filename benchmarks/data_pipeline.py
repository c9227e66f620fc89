"""Time indexing and the 256x256 cache build on a kaggle_3m folder, cold and warm.

Usage::

    python benchmarks/data_pipeline.py DATA_DIR [--size 256] [--out benchmarks/results/data_pipeline.json]

Builds into a fresh temporary work folder (the cache of 3279 slices at 256 is about 1.5 GB), so
the first pass is a cold build; the second pass reuses ``index.csv`` and the cache as training does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from gliomaseg import __version__
from gliomaseg.data.index import index_dataset
from gliomaseg.data.index_table import load_index, save_index
from gliomaseg.data.cache import build_cache
from gliomaseg.data.normalise import PreprocessConfig

RESULTS = Path(__file__).resolve().parent / "results" / "data_pipeline.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    cfg = PreprocessConfig(size=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        table = index_dataset(args.data_dir).table
        save_index(table, work / "index.csv")
        t1 = time.perf_counter()
        build_cache(table, work / "cache", cfg)
        t2 = time.perf_counter()
        build_cache(load_index(work / "index.csv"), work / "cache", cfg)
        t3 = time.perf_counter()
    result = {
        "package_version": __version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_before": load_before,
        "patients": int(table["patient_id"].nunique()),
        "slices": len(table),
        "size": args.size,
        "seconds": {
            "index": round(t1 - t0, 2),
            "cache_build": round(t2 - t1, 2),
            "index_plus_cache": round(t2 - t0, 2),
            "second_run_reuse": round(t3 - t2, 2),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
