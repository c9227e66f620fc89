"""Checks around a Lightning run that turn its failure modes into clear errors.

- :class:`FiniteGuard`: stops a diverging run (NaN or infinite loss or weights) with a message
  naming the epoch and the fix, before any model file of that state is written.
- :func:`read_resume_checkpoint` / :func:`check_resume_settings`: a ``--resume`` checkpoint loads
  safely and belongs to the same network, loss and optimiser (instead of Lightning's state-dict
  dump of every mismatched key).
- :func:`make_trainer`: an accelerator, device count, strategy or precision this machine cannot
  run is one error line, raised before the run folder is created.
- :func:`fit`: an interrupted fit (SIGTERM, Ctrl-C) ends in a :class:`KeyboardInterrupt` that
  says how to continue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback

from gliomaseg.checkpoint import safe_load
from gliomaseg.errors import GliomasegError

__all__ = ["FiniteGuard", "check_resume_settings", "fit", "make_trainer", "read_resume_checkpoint"]

#: Module settings a resumed checkpoint must share (the rest, e.g. the cache's row count, may change).
_RESUME_KEYS = ("model_name", "model_kwargs", "loss", "optimizer", "lr", "weight_decay", "scheduler")


def _diverged(what: str, trainer: L.Trainer, pl_module: L.LightningModule) -> GliomasegError:
    lr = getattr(pl_module.hparams, "lr", None)
    return GliomasegError(
        f"training diverged: {what} at epoch {trainer.current_epoch}, step {trainer.global_step}; stopped, and no "
        f"model file of this state was written. Lower --lr (now {lr}), use --precision 32-true, or check the data"
    )


class FiniteGuard(Callback):
    """Stops training when the loss or a weight becomes NaN or infinite (a GliomasegError).

    The loss is checked after every step (free: it is already computed); the weights before every
    validation and at the end, so a state whose loss was last finite is caught before
    :class:`~gliomaseg.training.trainer.ModelFileCallback` or Lightning's checkpoints save it.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            raise _diverged(f"the training loss is {float(loss.detach().float().mean())}", trainer, pl_module)

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, param in pl_module.named_parameters():
            if not bool(torch.isfinite(param.detach()).all()):
                raise _diverged(f"weight {name} holds NaN or infinite values", trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_weights(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_weights(trainer, pl_module)


def read_resume_checkpoint(path: str | Path) -> dict[str, Any]:
    """The settings stored in a resume checkpoint, after checking that it loads safely and is Lightning's.

    Args:
        path: the Lightning ``.ckpt`` file.

    Returns:
        Its ``hyper_parameters`` (the module's settings), for :func:`check_resume_settings`.

    Raises:
        GliomasegError: the file is missing, damaged, unsafe or not a Lightning checkpoint (named).
    """
    path = Path(path)
    what = "a Lightning checkpoint of a gliomaseg run (RUN/checkpoints/last.ckpt)"
    state = safe_load(path, what)
    if not isinstance(state, dict) or not {"state_dict", "loops", "hyper_parameters"} <= state.keys():
        raise GliomasegError(f"{path} is not {what}; model files (best.pt) cannot be resumed")
    return dict(state["hyper_parameters"])


def check_resume_settings(path: str | Path, saved: Mapping[str, Any], hparams: Mapping[str, Any]) -> None:
    """Refuse a resume checkpoint of another network, loss or optimiser, naming each difference.

    Lightning would otherwise fail deep inside ``load_state_dict`` with every mismatched key.

    Args:
        path: the checkpoint, for the message.
        saved: its settings (:func:`read_resume_checkpoint`).
        hparams: the settings of the module it is to be loaded into.

    Raises:
        GliomasegError: the settings differ.
    """
    differ = [f"{k}={saved.get(k)!r} (here {hparams.get(k)!r})" for k in _RESUME_KEYS if saved.get(k) != hparams.get(k)]
    if differ:
        raise GliomasegError(
            f"{path} was trained with other settings: {'; '.join(differ)}; resume a run with its own folder "
            "(--resume-from RUN_DIR) so that its settings are used"
        )


def make_trainer(build: Callable[[], L.Trainer], cfg: Any) -> L.Trainer:
    """``build()``, with Lightning's refusal of the hardware settings turned into one GliomasegError."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return build()
    except (MisconfigurationException, ValueError, ImportError, RuntimeError) as err:
        reason = " ".join(str(err).split())
        raise GliomasegError(
            f"cannot train with accelerator={cfg.accelerator!r}, devices={cfg.devices}, strategy={cfg.strategy!r}, "
            f"precision={cfg.precision!r} on this machine ({reason}); use --accelerator auto (a GPU when there "
            "is one) or cpu, or fewer --devices"
        ) from None


def _close_progress_bars(trainer: L.Trainer) -> None:
    callback = trainer.progress_bar_callback
    for name in ("_train_progress_bar", "_val_progress_bar"):
        bar = getattr(callback, name, None)
        if bar is not None and not getattr(bar, "disable", True):
            bar.close()


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: Any, ckpt: Path | None, run_dir: Path) -> None:
    """``trainer.fit`` that loads a resume checkpoint with ``weights_only=True``.

    Raises:
        GliomasegError: Lightning refused the settings (e.g. a ``limit_train_batches`` fraction that
            leaves no batch), in one line.
        KeyboardInterrupt: the run was interrupted (SIGTERM, Ctrl-C); the message says how to
            continue. Lightning turns an interruption into ``SystemExit``, which would otherwise end
            the program silently, with status 0 for SIGTERM.
    """
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True if ckpt else None)
    except MisconfigurationException as err:  # e.g. a --limit-train-batches fraction that leaves no batch
        _close_progress_bars(trainer)
        text = " ".join(str(err).split()).replace("`limit_train_batches` argument", "--limit-train-batches")
        text = text.replace("`limit_train_batches=", "`--limit-train-batches ")
        raise GliomasegError(f"cannot train: {text}") from None
    except BaseException as err:
        _close_progress_bars(trainer)  # so that the error starts on a line of its own
        if not isinstance(err, SystemExit) or not trainer.interrupted:
            raise
        epoch = trainer.current_epoch
        saved = f"epochs up to {epoch - 1} are saved" if epoch > 0 else "no epoch had finished"
        raise KeyboardInterrupt(
            f"training stopped during epoch {epoch} ({saved}); continue with `gliomaseg train --resume-from {run_dir}`"
        ) from None
