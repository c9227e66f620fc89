"""Models bundled with the package: predict on one's own scans with no training and no download.

A bundled model is an ordinary gliomaseg model file (float16 weights, loaded with
``weights_only=True``) shipped as package data in ``gliomaseg/inference/weights/``, with its model
card beside it. Anywhere a model file is taken (``predict``, ``evaluate``, ``serve``), its name works
too: ``gliomaseg predict --model lgg-unet scan.nii.gz --out pred/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gliomaseg.errors import GliomasegError
from gliomaseg.utils import non_regular_kind

__all__ = [
    "BUNDLED",
    "MODEL_SUFFIXES",
    "BundledModel",
    "bundled_path",
    "bundled_training_patients",
    "model_card",
    "resolve_model",
]


#: Suffixes of model files (PyTorch model files, ONNX exports).
MODEL_SUFFIXES = (".pt", ".onnx")


@dataclass(frozen=True)
class BundledModel:
    """A model shipped with the package.

    Attributes:
        weights: file name of the model file in ``gliomaseg/inference/weights/``.
        card: file name of its model card (Markdown) beside it.
        summary: one line for ``gliomaseg models``.
        trained_on: file name of the JSON list of the patient ids it was trained on, beside the weights
            (for a model file that predates the ``train_patients`` record; ``evaluate`` flags them).
    """

    weights: str
    card: str
    summary: str
    trained_on: str | None = None


BUNDLED: dict[str, BundledModel] = {
    "lgg-unet": BundledModel(
        weights="lgg-unet.pt",
        card="lgg-unet.md",
        summary="U-Net (cpu preset) trained on the 90 lgg-dev patients of kaggle_3m; research and teaching use only",
        trained_on="lgg-unet.patients.json",
    ),
}


def _weights_dir() -> Path:
    return Path(str(resources.files("gliomaseg.inference").joinpath("weights")))


def bundled_path(name: str) -> Path:
    """The model file of a bundled model.

    Raises:
        GliomasegError: an unknown name (the message lists the bundled ones), or weights missing
            from this installation.
    """
    if name not in BUNDLED:
        raise GliomasegError(f"no bundled model {name!r}; bundled: {', '.join(sorted(BUNDLED))}")
    path = _weights_dir() / BUNDLED[name].weights
    if not path.is_file():
        raise GliomasegError(f"the weights of bundled model {name!r} are missing from this installation ({path})")
    return path


def resolve_model(name_or_path: str | Path) -> Path:
    """A model file path from a bundled model's name or a path (a path that exists wins).

    Raises:
        GliomasegError: neither an existing file nor a bundled model's name; a folder (naming the
            model files it holds, or saying it holds none); a FIFO, socket or device.

    Example:
        >>> resolve_model("lgg-unet").name  # doctest: +SKIP
        'lgg-unet.pt'
    """
    path = Path(name_or_path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file())
        if not found:
            raise GliomasegError(
                f"{path} is a folder and holds no model file (.pt or .onnx); pass a model file, e.g. the best.pt "
                "of a run folder, or a bundled model's name"
            )
        raise GliomasegError(f"{path} is a folder; pass one of its model files: {', '.join(found)}")
    kind = non_regular_kind(path)
    if kind:
        raise GliomasegError(f"{path} is {kind}, not a model file; pass a .pt or .onnx file")
    if path.exists():
        return path
    if str(name_or_path) in BUNDLED:
        return bundled_path(str(name_or_path))
    raise GliomasegError(
        f"{name_or_path} does not exist and is not a bundled model (bundled: {', '.join(sorted(BUNDLED))}); "
        "pass a best.pt/last.pt, an .onnx export, or one of those names"
    )


def bundled_training_patients(path: str | Path) -> list[str] | None:
    """The patient ids a bundled model was trained on, when ``path`` is a bundled model's file; else None.

    Raises:
        GliomasegError: the shipped list is damaged.
    """
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for model in BUNDLED.values():
        listed = _weights_dir() / model.trained_on if model.trained_on else None
        if listed is not None and (_weights_dir() / model.weights).resolve() == resolved and listed.is_file():
            try:
                ids = json.loads(listed.read_text(encoding="utf-8"))
            except ValueError as err:
                raise GliomasegError(f"{listed}: not a JSON list of patient ids ({err})") from None
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise GliomasegError(f"{listed}: not a JSON list of patient ids")
            return ids
    return None


def model_card(name: str) -> str:
    """The Markdown model card of a bundled model.

    Raises:
        GliomasegError: an unknown name.
    """
    if name not in BUNDLED:
        raise GliomasegError(f"no bundled model {name!r}; bundled: {', '.join(sorted(BUNDLED))}")
    card = _weights_dir() / BUNDLED[name].card
    return card.read_text(encoding="utf-8") if card.is_file() else f"(no model card shipped for {name})"
