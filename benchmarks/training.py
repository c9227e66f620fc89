"""Training speed: real ``train`` epochs against the bare step, FLOPs and the machine's matmul peak.

- **bare step**: forward, loss, backward and AdamW step of the same model, batch, size and
  precision on tensors already in memory (channels-last on CPU): the most the machine can do.
- **real epochs**: ``gliomaseg.training.trainer.train`` on the cached real data, everything
  counted (loading, augmentation, logging, validation, model files), the first epoch excluded.
- **training efficiency** = real slices/s / bare slices/s.
- **compute**: FLOPs per slice (forward + backward, ``torch.utils.flop_counter``) x slices/s, over
  the machine's peak measured in the same run on a large GEMM.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import best_time, run_child
from gliomaseg.training.losses import create_loss
from gliomaseg.training.models import create_model

__all__ = ["RECIPES", "bare_step", "flops_per_slice", "matmul_peak", "real_epochs"]

#: name -> (preset, flags): the shipped CPU preset, the same with the robust augmentations of issue 25
#: and with 2.5D input on the shipped augmentation (the quick run measures these four), and the seed's
#: classic U-Net at 256x256.
RECIPES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "cpu preset (unet16 @128, batch 16)": ("cpu", {}),
    "cpu preset + robust augmentation": ("cpu", {"augment": "robust"}),
    "cpu preset + robust_mild augmentation": ("cpu", {"augment": "robust_mild"}),
    "cpu preset + robust_mild, 2.5D (1 neighbour each side)": ("cpu", {"augment": "robust_mild", "context_slices": 1}),
    "classic unet32 @256, batch 8 (seed)": (None, {}),
}


def _shape(preset: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    from gliomaseg.training.config import resolve_config

    cfg = resolve_config(flags, preset=preset)
    return {
        "model": cfg.arch,
        "features": cfg.features,
        "size": cfg.size,
        "batch": cfg.batch_size,
        "loss": cfg.loss,
        "in_channels": cfg.preprocess_config().channels,  # 3, or 3 (2K + 1) for a 2.5D recipe
    }


def _device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_step(
    model_name: str,
    features: int,
    size: int,
    batch: int,
    bf16: bool,
    *,
    device: str = "cpu",
    steps: int = 6,
    in_channels: int = 3,
) -> float:
    """Slices/s of forward + loss + backward + AdamW on in-memory tensors (best of 3 windows)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(model_name, in_channels=in_channels, features=features)
    model = model.to(dev).to(memory_format=torch.channels_last)
    loss_fn = create_loss("bce_dice")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, in_channels, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.9).float()
    dtype = torch.bfloat16 if bf16 else torch.float16

    def window() -> None:
        for _ in range(steps):
            autocast = (
                torch.autocast(dev.type, dtype=dtype) if (bf16 or dev.type == "cuda") else contextlib.nullcontext()
            )
            with autocast:
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    seconds = best_time(window, repeats=3, warmup=1, sync=lambda: _device_sync(dev))
    return round(batch * steps / seconds, 2)


def flops_per_slice(model_name: str, features: int, size: int, in_channels: int = 3) -> float:
    """Forward + backward FLOPs of one slice (a multiply-add counts 2), counted by PyTorch."""
    model = create_model(model_name, in_channels=in_channels, features=features)
    x = torch.randn(2, in_channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def matmul_peak(dtype: torch.dtype, *, n: int = 2048, device: str = "cpu") -> float:
    """GFLOP/s of an ``n x n`` GEMM in ``dtype`` (best of 5): the machine's practical peak."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    seconds = best_time(lambda: a @ b, repeats=5, warmup=2, sync=lambda: _device_sync(dev))
    return round(2 * n**3 / seconds / 1e9, 1)


def bench_run_name(preset: str | None, precision: str) -> str:
    """The run folder name of a benchmark training (the pipeline section evaluates the bf16 preset's)."""
    return f"bench_{preset or 'seed'}_{precision}"


def real_epochs(
    data: Path,
    workdir: Path,
    splits: Path | None,
    preset: str | None,
    flags: dict[str, Any],
    *,
    epochs: int,
    limit: float,
) -> dict[str, Any]:
    """``train`` in a fresh process; slices/s of the epochs after the first, and the peak RSS.

    Args:
        data: the kaggle_3m folder; workdir: index, splits and cache (reused across calls).
        splits: a splits file to use (None: made in ``workdir``).
        preset, flags: the recipe.
        epochs: epochs to run (the first is excluded from the figure).
        limit: share of the training and of the validation batches per epoch (both, so the
            validation's share of an epoch stays as in a full run).
    """
    run_flags = {
        **flags,
        "data": str(data),
        "workdir": str(workdir),
        "runs_dir": str(workdir / "runs"),
        # a recipe's own augmentation or input gets its own run folder (the pipeline section evaluates the preset's)
        "run_name": bench_run_name(preset, flags.get("precision", "auto"))
        + (f"_{flags['augment']}" if "augment" in flags else "")
        + (f"_ctx{flags['context_slices']}" if flags.get("context_slices") else ""),
        "epochs": epochs,
        "limit_train_batches": limit,
        "limit_val_batches": limit,
        **({"splits": str(splits)} if splits else {}),
    }
    report = run_child("train", {"preset": preset, "flags": run_flags})
    measured = report["epochs"][1:] or report["epochs"]
    seconds = sum(e["seconds"] for e in measured)
    slices = sum(e["slices"] for e in measured)
    return {
        "slices_per_s": round(slices / seconds, 2),
        "epochs": report["epochs"],
        "peak_rss_mb": report["peak_rss_mb"],
        "limit_batches": limit,
    }


def training_section(
    data: Path, workdir: Path, splits: Path | None, *, quick: bool, device: str = "cpu"
) -> dict[str, Any]:
    """Bare step, real epochs and efficiency for each recipe and precision; FLOPs and peaks."""
    peaks = {"fp32": matmul_peak(torch.float32, device=device), "bf16": matmul_peak(torch.bfloat16, device=device)}
    rows = []
    recipes = [r for r in RECIPES.items() if r[1][0] == "cpu"] if quick else list(RECIPES.items())
    for name, (preset, flags) in recipes:
        shape = _shape(preset, flags)
        flops = flops_per_slice(shape["model"], shape["features"], shape["size"], shape["in_channels"])
        for precision in ("bf16-mixed",) if quick else ("32-true", "bf16-mixed"):
            bf16 = precision == "bf16-mixed"
            bare = bare_step(
                shape["model"],
                shape["features"],
                shape["size"],
                shape["batch"],
                bf16,
                device=device,
                in_channels=shape["in_channels"],
            )
            # the classic U-Net at 256 is ~30x the work of the cpu preset: shorter epochs keep the run bounded
            limit = (0.3 if preset else 0.06) if quick else (1.0 if preset else 0.08)
            run_flags = {**flags, "precision": precision, "accelerator": "gpu" if device == "cuda" else "cpu"}
            real = real_epochs(data, workdir, splits, preset, run_flags, epochs=2 if quick else 3, limit=limit)
            peak = peaks["bf16" if bf16 else "fp32"]
            rows.append(
                {
                    "recipe": name,
                    "precision": precision,
                    "bare_slices_per_s": bare,
                    "real_slices_per_s": real["slices_per_s"],
                    "efficiency": round(real["slices_per_s"] / bare, 3),
                    "gflops_per_slice": round(flops / 1e9, 2),
                    "achieved_gflops": round(flops * real["slices_per_s"] / 1e9, 1),
                    "share_of_peak": round(flops * real["slices_per_s"] / 1e9 / peak, 3),
                    "peak_rss_mb": real["peak_rss_mb"],
                    "epochs": real["epochs"],
                    "limit_batches": real["limit_batches"],
                }
            )
            print(f"  {name} {precision}: bare {bare} real {real['slices_per_s']} slices/s", flush=True)
    batch_scaling = {}
    if not quick:
        shape = _shape("cpu", {})
        for batch in (4, 8, 16, 32):
            batch_scaling[batch] = bare_step(
                shape["model"], shape["features"], shape["size"], batch, True, device=device
            )
    return {"matmul_peak_gflops": peaks, "recipes": rows, "bare_step_bf16_by_batch": batch_scaling}
