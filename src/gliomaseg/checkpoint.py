"""Self-describing model checkpoints that load without unpickling arbitrary objects.

A model file (``best.pt``/``last.pt``) is a plain dictionary of strings, numbers, lists and
tensors, saved with :func:`torch.save` and read with ``torch.load(weights_only=True)``:

- ``format``: ``"gliomaseg-model/1"``; ``package_version``
- ``model``: ``{"name": ..., "kwargs": {...}}`` for :func:`gliomaseg.training.models.create_model`
- ``preprocess``: :class:`gliomaseg.data.normalise.PreprocessConfig` as a dict (size, normalisation,
  ``context_slices``: the neighbours stacked on each side; files without it are single-slice models)
- ``postprocess``: threshold and post-processing settings
- ``orientation``: nibabel axis codes of the training slices' (row, column, slice) indices, e.g.
  ``["P", "L", "S"]`` (kaggle_3m's); files without it are kaggle_3m models (see
  :func:`gliomaseg.inference.orientation.model_orientation`)
- ``split_id``: hash of ``splits.json`` and the fold the model was selected on
- ``epoch``, ``metrics``: the validation metrics when it was saved
- ``config``: the resolved training configuration
- ``quality`` (optional): the calibration of the quality flag (:mod:`gliomaseg.inference.quality`); files
  without it, such as the bundled v1 ``lgg-unet``, use the calibration shipped beside the bundled weights
- ``state_dict``: the weights

Lightning's own ``.ckpt`` files in the run folder hold the resume state (optimizer, scheduler,
epoch) and are not meant for ``evaluate``/``predict``.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gliomaseg import __version__
from gliomaseg.errors import GliomasegError
from gliomaseg.utils import atomic_write

__all__ = [
    "BEST_ON_VALIDATION",
    "FORMAT",
    "LAST_EPOCH",
    "LAST_EPOCH_NO_VALIDATION",
    "load_checkpoint",
    "load_model",
    "safe_load",
    "save_checkpoint",
    "save_half_precision",
]

#: How a model file's epoch was chosen (its ``selection`` entry); evaluate warns only for the first.
BEST_ON_VALIDATION = "best epoch on the validation patients"
LAST_EPOCH = "last epoch"
LAST_EPOCH_NO_VALIDATION = "last epoch (no validation)"

FORMAT = "gliomaseg-model/1"
_REQUIRED = ("format", "model", "preprocess", "postprocess", "state_dict")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Atomically write ``model``'s weights with ``meta`` (see module docstring for the keys).

    Raises:
        GliomasegError: a weight is NaN or infinite (a diverged training); nothing is written, so
            no later command meets a broken model file.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    broken = _non_finite(state)
    if broken:
        raise GliomasegError(
            f"{path} not written: the weights hold NaN or infinite values ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}); the training diverged: lower --lr, or use --precision 32-true"
        )
    payload = {"format": FORMAT, "package_version": __version__, **meta, "state_dict": state}
    return atomic_write(path, lambda p: torch.save(payload, p))


def safe_load(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with an error that names the file.

    Only tensors and plain data load; a file holding other Python objects (which could run code
    while loading) is refused, and the message says so without suggesting to load it anyway.

    Args:
        path: the file.
        what: what the file should be, for the message (e.g. ``"a gliomaseg model file"``).

    Raises:
        GliomasegError: the file is missing, damaged, not a PyTorch file, or holds other objects.
    """
    path = Path(path)
    if not path.is_file():
        raise GliomasegError(f"{path} does not exist; expected {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not ours"
        found = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if found:
            reason = (
                f"it holds a Python object ({found.group(1)}) besides tensors and plain data; loading it could run "
                "code, so gliomaseg refuses it"
            )
        else:
            # torch's own text for a refused file advises loading it unsafely: never pass that on.
            lines = [line for line in str(err).splitlines() if line.strip() and "weights_only" not in line]
            detail = f": {lines[0].strip()}" if lines and not isinstance(err, pickle.UnpicklingError) else ""
            reason = f"it is damaged or not a PyTorch file ({type(err).__name__}{detail})"
        raise GliomasegError(f"{path} is not {what}: {reason}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a model file with ``weights_only=True``.

    Raises:
        GliomasegError: the file is missing, is not a gliomaseg model file (e.g. a Lightning ``.ckpt``),
            lacks required keys, or holds NaN or infinite weights.
    """
    path = Path(path)
    if not path.is_file():
        raise GliomasegError(f"checkpoint {path} does not exist")
    payload = safe_load(path, "a gliomaseg model file (best.pt or last.pt of a run folder)")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise GliomasegError(
            f"{path} is not a gliomaseg model file (expected format {FORMAT!r}); use best.pt or last.pt of a run "
            "folder (Lightning .ckpt files are for train --resume-from only)"
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise GliomasegError(f"{path} lacks keys {missing}")
    broken = _non_finite(payload["state_dict"])
    if broken:
        raise GliomasegError(
            f"{path}: the weights hold NaN or infinite values ({', '.join(broken[:3])}); its training diverged, "
            "so every mask would be wrong: train again with a lower --lr"
        )
    return payload


def _non_finite(state: Any) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or infinite values."""
    if not isinstance(state, dict):
        return []
    return [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path`` in eval mode; returns ``(model, checkpoint_dict)``."""
    from gliomaseg.training.models import create_model

    payload = load_checkpoint(path)
    spec = payload["model"]
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload


def save_half_precision(path: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Copy a model file with its floating-point weights stored as float16 (half the size).

    For shipping a model (the bundled ``lgg-unet``): :func:`load_model` casts the weights back to
    the network's float32 parameters, so prediction is unchanged up to float16 rounding of the
    weights. Integer buffers (BatchNorm's ``num_batches_tracked``) are kept as they are.

    Args:
        path: a gliomaseg model file.
        out: the new model file (``.pt``).
        overwrite: replace an existing ``out``.

    Returns:
        ``out``.

    Raises:
        GliomasegError: ``path`` is not a model file, or a weight does not fit float16 (|w| > 65504).
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
    """
    from gliomaseg.errors import OutputExistsError

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    payload = load_checkpoint(path)
    state = {k: v.half() if v.is_floating_point() else v.clone() for k, v in payload["state_dict"].items()}
    broken = _non_finite(state)
    if broken:
        raise GliomasegError(f"{path}: weights {broken[:3]} do not fit float16; ship the float32 file instead")
    payload = {**payload, "state_dict": state, "weights_dtype": "float16"}
    return atomic_write(out, lambda p: torch.save(payload, p))
