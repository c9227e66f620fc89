"""CPU inference speed of the ``predict`` path: naive eager PyTorch vs the default vs onnxruntime.

Usage::

    python benchmarks/inference_speed.py [--checkpoint best.pt] [--repeats 3] [--out FILE]

Every variant runs the whole :meth:`gliomaseg.inference.Segmenter.predict_proba` pipeline
(per-volume normalisation, resize, network, sigmoid, resize back) on the same 40-slice
256 x 256 phantom volume, so the figures are end-to-end slices per second; only the way the
network is called differs. Without ``--checkpoint`` an untrained network of the ``--preset cpu``
architecture (``unet``, 16 features, trained at 128 x 128) is built: speed does not depend on the
weights, but mask agreement (bf16 vs fp32 Dice) is only meaningful for a trained model.

The figures (best of ``--repeats`` timed passes after one warm-up) and the machine's load average
before and after are written to ``benchmarks/results/inference_speed.json``. Other processes on
the machine slow everything down: compare figures taken under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gliomaseg import __version__
from gliomaseg.checkpoint import load_model, save_checkpoint
from gliomaseg.data.normalise import PreprocessConfig
from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.inference import Segmenter
from gliomaseg.inference.export import export_onnx
from gliomaseg.training.models import create_model

NAIVE = "naive eager batch1 fp32 (no_grad)"
DEFAULT = "default: Segmenter.from_checkpoint(path)"
RESULTS = Path(__file__).resolve().parent / "results" / "inference_speed.json"


def _cpu_model_file(folder: Path) -> Path:
    """An untrained model file with the ``--preset cpu`` architecture and preprocessing."""
    torch.manual_seed(0)
    model = create_model("unet", features=16)
    meta = {
        "model": {"name": "unet", "kwargs": {"features": 16}},
        "preprocess": PreprocessConfig(size=128).to_dict(),
        "postprocess": PostprocessConfig().to_dict(),
        "split_id": "benchmark-untrained",
    }
    return save_checkpoint(folder / "cpu_untrained.pt", model, meta)


def _eager(model: torch.nn.Module, *, channels_last: bool, inference_mode: bool, bf16: bool, fold_bn: bool = False):
    from torch.fx.experimental.optimization import fuse

    net = copy.deepcopy(model)
    if fold_bn:
        net = fuse(net)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)

    def logits_fn(images: torch.Tensor) -> torch.Tensor:
        x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        ctx = torch.inference_mode() if inference_mode else torch.no_grad()
        with ctx, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x).float()

    return logits_fn


def _measure(
    variants: dict[str, Segmenter], volume: np.ndarray, repeats: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Best-of-``repeats`` slices/s per variant, timed round-robin so load changes hit all alike."""
    probas = {name: seg.predict_proba(volume) for name, seg in variants.items()}  # warm-up + outputs
    best = dict.fromkeys(variants, float("inf"))
    for r in range(repeats):
        for name, seg in variants.items():
            t0 = time.perf_counter()
            seg.predict_proba(volume)
            best[name] = min(best[name], time.perf_counter() - t0)
        print(f"round {r + 1}/{repeats} done (load {os.getloadavg()[0]:.2f})", flush=True)
    return {name: round(len(volume) / t, 2) for name, t in best.items()}, probas


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="model file (default: untrained --preset cpu architecture)")
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only naive, default and onnxruntime")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    volume, _ = synthesise_volume(np.random.default_rng(0), args.slices, args.size)
    results: dict[str, float] = {}
    probas: dict[str, np.ndarray] = {}

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else _cpu_model_file(Path(tmp))
        model, payload = load_model(ckpt)
        pre = PreprocessConfig.from_dict(payload["preprocess"])
        onnx_path = export_onnx(ckpt, Path(tmp) / "model.onnx").path

        def eager(batch: int, **kw: bool) -> Segmenter:
            return Segmenter(_eager(model, **kw), pre, batch_size=batch)

        variants = {
            NAIVE: eager(1, channels_last=False, inference_mode=False, bf16=False),
            DEFAULT: Segmenter.from_checkpoint(ckpt),
            "from_checkpoint(graph_fusion=False) (eager, folded BN, channels_last, batch8)": Segmenter.from_checkpoint(
                ckpt, graph_fusion=False
            ),
            "onnxruntime (from_onnx defaults)": Segmenter.from_onnx(onnx_path),
        }
        if not args.quick:
            for threads in (1, 2):
                for batch in (1, 8, 16):
                    variants[f"onnxruntime threads={threads} batch{batch}"] = Segmenter.from_onnx(
                        onnx_path, threads=threads, batch_size=batch
                    )
            for batch in (1, 8, 16, 40):
                variants[f"eager batch{batch} inference_mode"] = eager(
                    batch, channels_last=False, inference_mode=True, bf16=False
                )
                variants[f"eager batch{batch} inference_mode channels_last"] = eager(
                    batch, channels_last=True, inference_mode=True, bf16=False
                )
            for batch in (4, 8, 16, 40):
                variants[f"eager batch{batch} folded-BN channels_last"] = eager(
                    batch, channels_last=True, inference_mode=True, bf16=False, fold_bn=True
                )
            variants["eager batch8 folded-BN contiguous"] = eager(
                8, channels_last=False, inference_mode=True, bf16=False, fold_bn=True
            )
            for batch in (8, 16):
                variants[f"eager batch{batch} folded-BN channels_last bf16"] = eager(
                    batch, channels_last=True, inference_mode=True, bf16=True, fold_bn=True
                )
                variants[f"eager batch{batch} channels_last bf16"] = eager(
                    batch, channels_last=True, inference_mode=True, bf16=True
                )
        results, probas = _measure(variants, volume, args.repeats)
        for name, rate in sorted(results.items(), key=lambda kv: -kv[1]):
            print(f"{name:52s} {rate:8.1f} slices/s")

    reference = probas[NAIVE]
    agreement = {}
    for name, proba in probas.items():
        agreement[name] = {
            "max_abs_prob_diff": float(np.abs(proba - reference).max()),
            "mask_dice_vs_fp32": round(_dice(proba >= 0.5, reference >= 0.5), 5),
        }
    speedup = results[DEFAULT] / results[NAIVE]
    report = {
        "package_version": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "checkpoint": str(args.checkpoint or "untrained unet features=16 size=128 (--preset cpu)"),
        "volume": f"{args.slices} x {args.size} x {args.size} x 3 phantom",
        "repeats": args.repeats,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "slices_per_second": results,
        "default_speedup_vs_naive": round(speedup, 2),
        "agreement_vs_naive_fp32": agreement,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"default / naive = {speedup:.2f}x; load {report['load_average_before']} -> "
        f"{report['load_average_after']}; written to {out}"
    )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
