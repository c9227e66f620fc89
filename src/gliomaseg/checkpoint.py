"""Self-describing model checkpoints that load without unpickling arbitrary objects.

A model file (``best.pt``/``last.pt``) is a plain dictionary of strings, numbers, lists and
tensors, saved with :func:`torch.save` and read with ``torch.load(weights_only=True)``:

- ``format``: ``"gliomaseg-model/1"``; ``package_version``
- ``model``: ``{"name": ..., "kwargs": {...}}`` for :func:`gliomaseg.training.models.create_model`
- ``preprocess``: :class:`gliomaseg.data.normalise.PreprocessConfig` as a dict (size, normalisation)
- ``postprocess``: threshold and post-processing settings
- ``split_id``: hash of ``splits.json`` and the fold the model was selected on
- ``epoch``, ``metrics``: the validation metrics when it was saved
- ``config``: the resolved training configuration
- ``state_dict``: the weights

Lightning's own ``.ckpt`` files in the run folder hold the resume state (optimizer, scheduler,
epoch) and are not meant for ``evaluate``/``predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from gliomaseg import __version__
from gliomaseg.errors import GliomasegError
from gliomaseg.utils import atomic_write

__all__ = ["FORMAT", "load_checkpoint", "load_model", "save_checkpoint"]

FORMAT = "gliomaseg-model/1"
_REQUIRED = ("format", "model", "preprocess", "postprocess", "state_dict")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Atomically write ``model``'s weights with ``meta`` (see module docstring for the keys)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "package_version": __version__, **meta, "state_dict": state}
    return atomic_write(path, lambda p: torch.save(payload, p))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a model file with ``weights_only=True``.

    Raises:
        GliomasegError: the file is missing, is not a gliomaseg model file (e.g. a Lightning ``.ckpt``),
            or lacks required keys.
    """
    path = Path(path)
    if not path.is_file():
        raise GliomasegError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise GliomasegError(
            f"{path} is not a gliomaseg model file that loads safely ({type(err).__name__}: {err}). "
            "Use best.pt or last.pt from a run folder; Lightning .ckpt files are for --resume only."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise GliomasegError(f"{path} is not a gliomaseg model file (expected format {FORMAT!r})")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise GliomasegError(f"{path} lacks keys {missing}")
    return payload


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path`` in eval mode; returns ``(model, checkpoint_dict)``."""
    from gliomaseg.training.models import create_model

    payload = load_checkpoint(path)
    spec = payload["model"]
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
