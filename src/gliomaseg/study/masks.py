"""Where a patient's mask volume comes from: the ground truth, a model (or an ensemble), or a study's folds.

Predicted masks go through the same code path as ``predict`` and ``evaluate``: the patient's
slices are read as ``evaluate`` reads them, and
:meth:`gliomaseg.inference.segmenter.Segmenter.predict_proba` plus the model's post-processing
turn them into a mask at the data's own resolution.

Several models are an ensemble (:meth:`gliomaseg.inference.segmenter.Segmenter.ensemble`): their
probabilities are averaged before the post-processing of the first model.
Out-of-fold prediction (:func:`out_of_fold_models`): in a study folder laid out as
``STUDY/splits.json`` and ``STUDY/runs/<config>__fold<k>/`` (the model file the study evaluated:
``last.pt`` or ``best.pt``), each patient of fold ``k``'s ``val`` list is predicted by fold ``k``'s
model, so no patient is segmented by a model that saw it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gliomaseg.data.splits import load_splits
from gliomaseg.errors import GliomasegError
from gliomaseg.study.folder import open_study

__all__ = ["OutOfFold", "ensemble_predictor", "out_of_fold_models"]

log = logging.getLogger(__name__)

#: ``S x H x W x 3`` uint8 images of one patient -> ``S x H x W`` bool mask.
Predictor = Callable[[np.ndarray], np.ndarray]


def ensemble_predictor(models: Sequence[str | Path], *, device: str = "auto") -> tuple[Predictor, dict]:
    """A predictor from one model file or the average of several (``.pt`` or ``.onnx``).

    Args:
        models: model files; with more than one, their probabilities are averaged and the first
            model's post-processing (threshold, components, ...) is applied to the average.
        device: ``auto``, ``cpu``, ``cuda``... for ``.pt`` files.

    Returns:
        ``(predict, info)``: the predictor and a description (model paths, post-processing) for
        the reports.

    Raises:
        GliomasegError: no model, or a model file that cannot be loaded.

    Example:
        >>> predict, info = ensemble_predictor(["fold0/best.pt", "fold1/best.pt"])  # doctest: +SKIP
        >>> mask = predict(volume)  # S x H x W x 3 uint8 -> S x H x W bool  # doctest: +SKIP
    """
    from gliomaseg.inference.segmenter import load_segmenter

    if not models:
        raise GliomasegError("no model given: pass at least one model file")
    paths = [Path(m).expanduser().resolve() for m in models]
    segmenter = load_segmenter(paths, device=device)
    members = segmenter.members or (segmenter,)
    differing = [str(p) for p, m in zip(paths[1:], members[1:]) if m.postprocess != segmenter.postprocess]
    if differing:
        log.warning("models %s store other post-processing than %s; the first model's is used", differing, paths[0])
    info = {"models": [str(p) for p in paths], "ensemble": len(paths) > 1}
    return segmenter.predict_volume, {**info, "postprocess": segmenter.postprocess.to_dict()}


@dataclass(frozen=True)
class OutOfFold:
    """The out-of-fold models of a study.

    Attributes:
        splits_file: the study's ``splits.json``.
        models: fold ``k`` -> the model file the study evaluated (``last.pt`` or ``best.pt``).
        fold_of: patient id -> the fold whose model predicts it (the fold where it is held out).
        without_prediction: patients of the splits that are in no fold's ``val`` list (the test
            part), sorted.
    """

    splits_file: Path
    models: dict[int, Path]
    fold_of: dict[str, int]
    without_prediction: list[str]


def _study_model_file(root: Path) -> str:
    """The model file a study evaluated on the held-out folds: ``last.pt`` for ``checkpoint: last``
    (the default of ``gliomaseg study``: no epoch chosen on the held-out patients), else ``best.pt``."""
    return f"{open_study(root).config.checkpoint}.pt" if (root / "study.json").is_file() else "best.pt"


def out_of_fold_models(study: str | Path, config: str) -> OutOfFold:
    """Find the fold models of ``config`` in a study folder and which patients each predicts.

    Args:
        study: folder with ``splits.json`` (k folds) and ``runs/<config>__fold<k>/``; the model file
            is the one the study evaluated (``last.pt`` for ``checkpoint: last`` in its
            ``study.json``), else ``best.pt``.
        config: the configuration name (the run folders' prefix).

    Returns:
        :class:`OutOfFold`.

    Raises:
        GliomasegError: no ``splits.json``, a fold's model file missing, or a patient held out by
            two folds.

    Example:
        >>> oof = out_of_fold_models("study", "unet_cpu")  # doctest: +SKIP
        >>> oof.models[0]  # doctest: +SKIP
        PosixPath('study/runs/unet_cpu__fold0/best.pt')
    """
    root = Path(study).expanduser().resolve()
    splits_file = root / "splits.json"
    if not splits_file.is_file():
        raise GliomasegError(f"{splits_file} not found: --study must be a study folder with splits.json and runs/")
    splits = load_splits(splits_file)
    model_file = _study_model_file(root)
    models: dict[int, Path] = {}
    fold_of: dict[str, int] = {}
    missing: list[str] = []
    for k, fold in enumerate(splits["folds"]):
        path = root / "runs" / f"{config}__fold{k}" / model_file
        if not path.is_file():
            missing.append(str(path))
        models[k] = path
        for pid in fold["val"]:
            if pid in fold_of:
                raise GliomasegError(f"{splits_file}: patient {pid} is held out in folds {fold_of[pid]} and {k}")
            fold_of[pid] = k
    if missing:
        raise GliomasegError(
            f"out-of-fold prediction needs a model for every fold of {splits_file}; missing: {', '.join(missing)}"
        )
    everyone = set(splits["test"]) | {p for f in splits["folds"] for part in ("train", "val") for p in f[part]}
    return OutOfFold(splits_file, models, fold_of, sorted(everyone - set(fold_of)))
