"""Per-slice cost of the training data path (cache read + augmentation) of augmentation recipes, next to the bare step.

    python -m benchmarks.augment_cost CACHE_DIR [--recipes flips_intensity_missing robust] [--rounds 7]

CACHE_DIR is a slice cache of the ``cpu`` preset (128 x 128), e.g. ``.bench/cache/<key>`` after
``python -m benchmarks.run``. Each round times the bare bf16 step of the ``cpu`` preset's network
(:func:`benchmarks.training.bare_step`) and 30 batches of 16 slices through
:class:`gliomaseg.data.datamodule.SliceDataset` per recipe, interleaved, so that a loaded machine slows
all of them alike; medians over rounds are printed. With ``num_workers: 0`` (the ``cpu`` preset) the
data path adds to the step, so a recipe scales the training efficiency by about
``(step + data_shipped) / (step + data_recipe)`` (docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.training import bare_step
from gliomaseg.data.augment import augment_config, split_augmentation
from gliomaseg.data.cache import open_cache
from gliomaseg.data.datamodule import SliceDataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.augment_cost", description=__doc__.splitlines()[0])
    parser.add_argument("cache", help="a 128 x 128 slice cache folder")
    parser.add_argument("--recipes", nargs="+", default=["flips_intensity_missing", "robust"])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    cache = open_cache(args.cache)
    pids = sorted(set(cache.slices["patient_id"]))
    datasets = {}
    for name in args.recipes:
        batch, per_slice = split_augmentation(augment_config(name), seed=0)
        datasets[name] = SliceDataset(
            cache, np.arange(len(cache)), {p: i for i, p in enumerate(pids)}, per_slice, batch
        )
    rng = np.random.default_rng(0)
    ms: dict[str, list[float]] = {"bare step": [], **{name: [] for name in datasets}}
    for r in range(args.rounds):
        ms["bare step"].append(1e3 / bare_step("unet", 16, 128, 16, True, steps=6))
        for name, dataset in datasets.items():
            batches = [rng.integers(0, len(dataset), 16) for _ in range(30)]
            t0 = time.perf_counter()
            for idx in batches:
                dataset.__getitems__(idx)
            ms[name].append((time.perf_counter() - t0) * 1e3 / (30 * 16))
        print(r, {k: round(v[-1], 3) for k, v in ms.items()}, flush=True)
    print(json.dumps({f"{k} (ms per slice, median)": round(float(np.median(v)), 3) for k, v in ms.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
