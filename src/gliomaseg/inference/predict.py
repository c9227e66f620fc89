"""``predict``: segment the user's own images (see :mod:`gliomaseg.inference.inputs`) and write masks,
an overview per volume, and the per-case table.

Outputs under ``out`` mirror the input names (a folder input ``.../P1/`` writes into ``out/P1/``,
sub-folders likewise); what each case writes is listed in :mod:`gliomaseg.inference.outputs`
(masks in the input's geometry, DICOM SEG, overview, optional overlays and probabilities). Two
tables go to ``out``:

- ``cases.csv``: one row per case (:data:`~gliomaseg.inference.outputs.CASES_COLUMNS`): the input,
  slices, tumour voxels, volume in mL from the true voxel size (``volume_unit`` says ``voxels``
  when the input has none), 26-connected components and the largest one's volume, and the files
  written;
- ``components.csv``: one row per component of every case, largest first.

Existing outputs are never replaced without ``overwrite``; every target is checked, every input
read and the output folder's writability probed before the model runs. Every file is written
atomically, so a stopped run leaves complete files only, and ``resume`` continues it by skipping
the cases whose outputs are all there.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.evaluation.postprocess import PostprocessConfig, postprocess_volume
from gliomaseg.inference.inputs import discover_inputs, read_case
from gliomaseg.inference.outputs import (
    CASE_COMPONENT_COLUMNS,
    CASES_COLUMNS,
    OutputOptions,
    case_targets,
    finished_case,
    write_case,
)
from gliomaseg.inference.segmenter import Segmenter, load_segmenter
from gliomaseg.utils import atomic_write_text

__all__ = ["model_algorithm", "predict_inputs"]

log = logging.getLogger(__name__)


def model_algorithm(seg: Segmenter) -> tuple[str, str]:
    """``(name, version)`` of a segmenter's model, for DICOM SEG algorithm identification."""
    meta = seg.meta
    name = f"gliomaseg {(meta.get('model') or {}).get('name', 'model')}"
    version = " ".join(str(v) for v in (meta.get("package_version"), meta.get("split_id")) if v)
    return name, version or "unknown"


def _check_writable(out: Path) -> None:
    """Create ``out`` and write a probe file in it, so a read-only or full disk fails before inference."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise GliomasegError(
            f"cannot write to the output folder {out} ({(err.strerror or str(err)).lower()}); "
            "choose another --out, free some space or fix its permissions"
        ) from None


def _apply_postprocess(seg: Segmenter, postprocess: PostprocessConfig | Mapping[str, Any] | None) -> Segmenter:
    if postprocess is None:
        return seg
    changes = postprocess.to_dict() if isinstance(postprocess, PostprocessConfig) else dict(postprocess)
    changes = {k: v for k, v in changes.items() if v is not None}
    allowed = set(PostprocessConfig().to_dict())
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise GliomasegError(f"unknown postprocess option(s) {unknown}; allowed: {sorted(allowed)}")
    return seg.with_postprocess(**changes)


def predict_inputs(
    model_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Segmenter,
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    postprocess: PostprocessConfig | Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    bf16: bool | None = None,
    threads: int | None = None,
    overlays: bool | None = None,
    overview: bool = True,
    save_probabilities: bool = False,
    graph_fusion: bool | None = None,
    resume: bool = False,
) -> pd.DataFrame:
    """Segment slices, folders and volumes and write masks, overviews, ``cases.csv`` and ``components.csv``.

    Args:
        model_path: a model file (``best.pt``), an ``.onnx`` export, several of them (an ensemble
            averaging their probabilities), or a ready :class:`Segmenter`.
        inputs: one input or several (see :mod:`gliomaseg.inference.inputs` for the kinds).
        out: output folder (created); outputs mirror the input names.
        overwrite: replace existing outputs; without it nothing is written if any target exists.
        postprocess: a :class:`PostprocessConfig`, or a mapping of the settings to change from the
            model's stored defaults (e.g. ``{"threshold": 0.4, "tta": True}``; None values ignored).
        batch_size: slices per forward pass (None: the backend's default).
        device: PyTorch device for model files (``auto``, ``cpu``, ``cuda``...).
        bf16: bfloat16 autocast for model files (None: the default).
        threads: onnxruntime threads for ``.onnx`` models (None: all cores).
        overlays: an overlay PNG per slice; None (default): only for single-slice inputs.
        overview: one overview montage per volume (default on).
        save_probabilities: also write each case's probability map (float32 NIfTI, input geometry).
        graph_fusion: oneDNN Graph fusion for model files on the CPU (None: the default, on).
        resume: continue a stopped run into the same ``out``: cases whose outputs are all written
            are skipped (their rows are read back from their masks); the others are predicted,
            replacing what the stopped run wrote of them.

    Returns:
        The ``cases.csv`` table (columns :data:`~gliomaseg.inference.outputs.CASES_COLUMNS`), one row per case.

    Raises:
        GliomasegError: unsupported, missing or corrupt inputs (naming the file), existing outputs
            without ``overwrite`` or ``resume``, an output folder that cannot be written (found
            before inference), or an unusable model.

    Example:
        >>> table = predict_inputs("best.pt", ["kaggle_3m/TCGA_CS_4942_19970222"], "pred")  # doctest: +SKIP
        >>> table = predict_inputs("best.pt", ["scan.nii.gz"], "pred", save_probabilities=True)  # doctest: +SKIP
    """
    out = Path(out)
    options = OutputOptions(overlays=overlays, overview=overview, probabilities=save_probabilities)
    cases = discover_inputs(inputs if not isinstance(inputs, (str, os.PathLike)) else [inputs], out)
    done = {id(case): rows for case in cases if resume and (rows := finished_case(case, options)) is not None}
    if done:
        log.info("skipping %d of %d case(s) whose outputs are all written already", len(done), len(cases))
    todo = [case for case in cases if id(case) not in done]
    for case in todo:
        read_case(case)
    tables = [out / "cases.csv", out / "components.csv"]
    if not (overwrite or resume):
        targets = [p for case in cases for paths in case_targets(case, options).values() for p in paths] + tables
        existing = [t for t in targets if t.exists()]
        if existing:
            shown = ", ".join(str(p) for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
            raise OutputExistsError(
                f"{len(existing)} output file(s) exist already ({shown}); pass --resume to continue a stopped "
                "run, --overwrite (overwrite=True) to replace them, or choose another --out folder"
            )
    _check_writable(out)
    if todo:
        seg = (
            model_path
            if isinstance(model_path, Segmenter)
            else load_segmenter(
                model_path, device=device, batch_size=batch_size, bf16=bf16, threads=threads, graph_fusion=graph_fusion
            )
        )
        seg = _apply_postprocess(seg, postprocess)
        options = OutputOptions(overlays, overview, save_probabilities, model_algorithm(seg))
    rows, parts = [], []
    for case in cases:
        if id(case) in done:
            row, comps = done[id(case)]
        else:
            probs = seg.predict_proba(case.volume)  # type: ignore[arg-type]
            mask = postprocess_volume(probs, seg.postprocess)  # what Segmenter.predict_volume does
            # With resume, a case's own outputs from the stopped run are replaced.
            row, comps = write_case(
                case,
                mask,
                options=options,
                probabilities=probs if save_probabilities else None,
                overwrite=overwrite or resume,
            )
            log.info("%s (%s): %d slice(s), tumour %s", case.name, case.kind, row["slices"], _volume_text(row))
            case.volume = None  # free memory as we go
        rows.append(row)
        parts.extend(comps)
    table = pd.DataFrame(rows, columns=list(CASES_COLUMNS))
    atomic_write_text(tables[0], table.to_csv(index=False))
    atomic_write_text(tables[1], pd.DataFrame(parts, columns=list(CASE_COMPONENT_COLUMNS)).to_csv(index=False))
    return table


def _volume_text(row: Mapping[str, Any]) -> str:
    """``12.3 mL in 2 component(s)``, or voxels when the input has no voxel size."""
    size = f"{row['tumour_ml']:.2f} mL" if row["volume_unit"] == "mL" else f"{row['tumour_voxels']} voxels"
    return f"{size} in {row['components']} component(s)"
