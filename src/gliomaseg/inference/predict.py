"""``predict``: segment the user's own images (see :mod:`gliomaseg.inference.inputs`) and write
masks, overlays and tumour areas.

Outputs under ``out`` mirror the input names (a folder input ``.../P1/`` writes into ``out/P1/``,
sub-folders likewise):

- a mask per slice, ``<stem>_mask.<ext>``, same ``H x W`` as the input, uint8 0/255 like the
  dataset; TIFF -> TIFF, PNG -> PNG, JPEG -> PNG (a lossy mask would not stay binary);
- for NIfTI, ``<stem>_mask.nii[.gz]``: uint8 0/1, spatial shape ``X x Y x Z`` of the input, with
  its affine and header geometry (qform/sform, voxel sizes, units);
- an overlay per slice, ``<stem>_overlay.png`` (NIfTI: ``<stem>_overlay/<stem>_<z>.png``, ``z``
  0-based): FLAIR in grey with the predicted tumour outlined in red;
- ``areas.csv``: one row per case with columns ``input, case, kind, slices, slices_with_tumour,
  tumour_pixels, voxel_mm3, tumour_mm3, mask`` (``tumour_pixels`` counts voxels for volumes; the
  mm^3 columns need voxel sizes, so they are filled for NIfTI only);
- ``failed.csv`` when cases failed (``input, case, error``): a case that cannot be read or segmented
  does not stop the others. Cohorts, shards and SLURM arrays: :mod:`gliomaseg.inference.cohort`.

Existing outputs are never replaced without ``overwrite``; every target is checked and the output
folder's writability probed before the model runs. Inputs are read one case at a time as they are
predicted, so a cohort of any size holds one volume in memory; a single bad input (or only bad
ones) is an error, with nothing written. Every file is written
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

import numpy as np
import pandas as pd
from scipy import ndimage

from gliomaseg.data.io import KAGGLE_3M_ORIENTATION, read_mask, write_image, write_mask
from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.inference.cohort import FAILED_NAME, Failures, finish_tables, shard_cases, shard_table
from gliomaseg.inference.inputs import FIELD_OF_VIEW, Case, discover_inputs, read_case
from gliomaseg.inference.limits import DEFAULT_LIMITS, Limits, check_case
from gliomaseg.inference.nifti import nifti_spacing, nifti_spacing_known, nifti_stem
from gliomaseg.inference.orientation import from_model_frame, model_orientation
from gliomaseg.inference.segmenter import Segmenter, load_segmenter
from gliomaseg.inference.volume import Volume
from gliomaseg.utils import atomic_write

__all__ = ["AREAS_COLUMNS", "areas_row", "overlay", "predict_inputs", "run_shard", "write_case"]

log = logging.getLogger(__name__)

AREAS_COLUMNS: tuple[str, ...] = (
    "input",
    "case",
    "kind",
    "slices",
    "slices_with_tumour",
    "tumour_pixels",
    "voxel_mm3",
    "tumour_mm3",
    "mask",
)
_RED = np.array([255, 0, 0], np.uint8)


def overlay(flair: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """FLAIR in grey with the mask's outline in red.

    Args:
        flair: ``H x W`` uint8.
        mask: ``H x W`` bool.

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    rgb = np.repeat(flair[..., None], 3, axis=-1)
    edge = mask & ~ndimage.binary_erosion(mask)
    rgb[edge] = _RED
    return rgb


def _write_nifti(path: Path, mask: np.ndarray, source: Any, overwrite: bool) -> None:
    import nibabel as nib

    header = source.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_intent("none")
    header["cal_min"], header["cal_max"] = 0, 1
    image = type(source)(mask, source.affine, header)
    image.header.set_slope_inter(1, 0)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.name[len(nifti_stem(path) or "") :]
    # nibabel picks the format from the suffix, so the temporary file keeps it.
    atomic_write(path, lambda tmp: nib.save(image, tmp), suffix=suffix)


def areas_row(case: Case, mask: np.ndarray) -> dict[str, Any]:
    """The ``areas.csv`` numbers of one case (every column of :data:`AREAS_COLUMNS` but ``mask``).

    ``predict`` writes them and the web viewer shows them, so both report the same figures.

    Args:
        case: the case, read (``case.nifti`` is needed for the NIfTI voxel size).
        mask: its ``S x H x W`` bool mask: as the model saw the case (NIfTI and DICOM cases with their
            ``frame``: in the model's frame), or, for a NIfTI/DICOM case without ``frame``, already in
            the input's grid with its slices first.

    Returns:
        ``input, case, kind, slices, slices_with_tumour, tumour_pixels, voxel_mm3, tumour_mm3``;
        NIfTI and DICOM cases are counted in the input's own voxel grid (slices along its last axis);
        the mm^3 values are NaN unless the case is NIfTI or DICOM (slice images carry no spacing) with a
        real voxel size (not a pixdim of 0).
    """
    voxel = None
    if case.frame is not None:
        # Counted in the input's own grid, so the figures do not depend on reslicing or the field of view.
        mask = np.moveaxis(from_model_frame(mask, case.frame), 2, 0)
        if case.frame.spacing_known:
            voxel = float(np.prod(np.linalg.norm(case.frame.source_affine[:3, :3], axis=0)))
    if case.kind in ("nifti", "dicom") and case.nifti is not None:
        # the header's (2 sides for a one-slice file); none for a pixdim of 0: counted in voxels only
        voxel = float(np.prod(nifti_spacing(case.nifti))) if nifti_spacing_known(case.nifti) else None
    tumour = int(mask.sum())
    row: dict[str, Any] = {
        "input": str(case.source),
        "case": case.name,
        "kind": case.kind,
        "slices": int(mask.shape[0]),
        "slices_with_tumour": int(mask.reshape(mask.shape[0], -1).any(axis=1).sum()),
        "tumour_pixels": tumour,
        "voxel_mm3": np.nan,
        "tumour_mm3": np.nan,
    }
    if voxel is not None:
        row["voxel_mm3"], row["tumour_mm3"] = voxel, tumour * voxel
    return row


def _reference_image(volume: Volume) -> Any:
    """A NIfTI image with a volume's grid (shape, affine in scanner coordinates, mm), for its mask's header."""
    import nibabel as nib

    image = nib.Nifti1Image(np.zeros(volume.shape, np.uint8), volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    image.header.set_xyzt_units("mm")
    return image


def write_case(case: Case, mask: np.ndarray, *, overwrite: bool = False, overlays: bool = True) -> dict[str, Any]:
    """Write a case's mask(s) (and overlays) to ``case.masks`` / ``case.overlays`` in the input's format.

    Args:
        case: the case, from :func:`~gliomaseg.inference.inputs.discover_inputs` (targets set) and read.
        mask: its ``S x H x W`` bool mask.
        overwrite: replace existing files.
        overlays: also write the overlay PNGs.

    Returns:
        Its ``areas.csv`` row (:func:`areas_row` plus ``mask``: the mask file, or the folder of a
        volume's slice masks).

    Raises:
        OutputExistsError: a target exists and ``overwrite`` is False.
    """
    volume = case.volume if case.volume is not None else read_case(case)
    row = areas_row(case, mask)
    if case.kind in ("nifti", "dicom"):
        source = case.nifti if case.nifti is not None else _reference_image(case.image)  # type: ignore[arg-type]
        spatial = source.shape[:3] if len(source.shape) >= 3 else source.shape[:2]
        back = from_model_frame(mask, case.frame) if case.frame is not None else np.moveaxis(mask, 0, 2)
        data = back.astype(np.uint8).reshape(spatial)  # the input's own X x Y x Z
        _write_nifti(case.masks[0], data, source, overwrite)
        row["mask"] = _mask_column(case)
        if overlays:
            folder = case.masks[0].parent / f"{case.name}_overlay"
            for z in range(mask.shape[0]):
                target = folder / f"{case.name}_{z:03d}.png"
                write_image(target, overlay(volume[z, ..., 1], mask[z]), overwrite=overwrite)
        return row
    for z, (mask_path, overlay_path) in enumerate(zip(case.masks, case.overlays)):
        write_mask(mask_path, mask[z], overwrite=overwrite)
        if overlays:
            write_image(overlay_path, overlay(volume[z, ..., 1], mask[z]), overwrite=overwrite)
    row["mask"] = _mask_column(case)
    return row


def _mask_column(case: Case) -> str:
    return str(case.masks[0] if case.kind in ("slice", "nifti", "dicom") else case.masks[0].parent)


def _nifti_overlays(case: Case, n_slices: int) -> list[Path]:
    folder = case.masks[0].parent / f"{case.name}_overlay"
    return [folder / f"{case.name}_{z:03d}.png" for z in range(n_slices)]


def _finished_row(case: Case, overlays: bool) -> dict[str, Any] | None:
    """The ``areas.csv`` row of a case whose outputs are all written, read back from its masks; else None.

    Outputs are written atomically, so a file that exists is complete.
    """
    if not all(p.exists() for p in case.masks):
        return None
    if case.kind in ("nifti", "dicom"):
        import nibabel as nib

        # The header only: the voxel size for the row (a DICOM case's mask has the series' grid).
        case.nifti = nib.load(str(case.source if case.kind == "nifti" else case.masks[0]))
        if overlays and not all(p.exists() for p in _nifti_overlays(case, _nifti_slices(case.nifti.shape))):
            return None
        data = np.asarray(nib.load(str(case.masks[0])).dataobj)
        mask = np.moveaxis(data.reshape(*data.shape[:2], -1), 2, 0) > 0
    else:
        if overlays and not all(p.exists() for p in case.overlays):
            return None
        mask = np.stack([read_mask(p) for p in case.masks]).astype(bool)
    return {**areas_row(case, mask), "mask": _mask_column(case)}


def _nifti_header_shape(path: Path) -> tuple[int, ...]:
    """A NIfTI file's shape from its header (the voxels are not read)."""
    import nibabel as nib

    try:
        return tuple(nib.load(str(path)).shape)
    except Exception as err:  # nibabel and gzip raise many types for a damaged file
        raise GliomasegError(f"{path}: unreadable NIfTI header ({err}); check the file") from None


def _nifti_slices(shape: tuple[int, ...]) -> int:
    return int(shape[2]) if len(shape) >= 3 else 1


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


def _refuse_existing(cases: Sequence[Case], overlays: bool, tables: Sequence[Path]) -> None:
    """Raise OutputExistsError when any output of ``cases`` (or one of the ``tables``) exists."""
    targets = [t for case in cases for t in (case.targets if overlays else case.masks)] + list(tables)
    existing = [t for t in targets if t.exists()]
    if existing:
        shown = ", ".join(str(p) for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise OutputExistsError(
            f"{len(existing)} output file(s) exist already ({shown}); pass --resume to continue a stopped "
            "run, --overwrite to replace them, or choose another --out folder"
        )


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
    overlays: bool = True,
    graph_fusion: bool | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    series: str | None = None,
    field_of_view: bool = FIELD_OF_VIEW,
    limits: Limits = DEFAULT_LIMITS,
) -> pd.DataFrame:
    """Segment slices, folders and NIfTI volumes and write masks, overlays and ``areas.csv``.

    Args:
        model_path: a model file (``best.pt``), an ``.onnx`` export, several of them (an ensemble
            averaging their probabilities), or a ready :class:`Segmenter`.
        inputs: one input or several (see the module docstring for the kinds).
        out: output folder (created); outputs mirror the input names.
        overwrite: replace existing outputs; without it nothing is written if any target exists.
        postprocess: a :class:`PostprocessConfig`, or a mapping of the settings to change from the
            model's stored defaults (e.g. ``{"threshold": 0.4, "tta": True}``; None values ignored).
        batch_size: slices per forward pass (None: the backend's default).
        device: PyTorch device for model files (``auto``, ``cpu``, ``cuda``...).
        bf16: bfloat16 autocast for model files (None: the default).
        threads: onnxruntime threads for ``.onnx`` models (None: all cores).
        overlays: also write the overlay PNGs.
        graph_fusion: oneDNN Graph fusion for model files on the CPU (None: the default, on).
        resume: continue a stopped run into the same ``out``: cases whose outputs are all written
            are skipped (their ``areas.csv`` rows are read back from their masks); the others are
            predicted, replacing what the stopped run wrote of them.
        shard: ``(K, N)``: predict only the K-th of N slices of the cases (see
            :mod:`gliomaseg.inference.cohort`; the last shard to finish merges the tables).
        series: the DICOM series to read (its number in the listing, UID or description; None: FLAIR).
        field_of_view: crop or pad NIfTI and DICOM slices to a square window around the head sized as
            in kaggle_3m (see :func:`~gliomaseg.inference.orientation.to_model_frame`); measured on
            shifted real volumes (``benchmarks/field_of_view.py``): mean Dice 0.47 -> 0.89 with the
            head in a corner of 512 x 512, within 0.005 on kaggle_3m's own framing (default:
            :data:`~gliomaseg.inference.inputs.FIELD_OF_VIEW`).
        limits: the memory budget of one case (pixels per slice, voxels, slices), checked from the
            file headers before any pixel is decoded.

    Returns:
        The ``areas.csv`` table (columns :data:`AREAS_COLUMNS`), one row per case predicted (of the
        shard); ``table.attrs["failed"]`` lists the cases that failed (``failed.csv``: input, case,
        error), which do not stop the others.

    Raises:
        GliomasegError: unsupported or missing inputs, corrupt ones when no input could be predicted
            (naming the file; among good inputs they are listed in ``failed.csv``), existing outputs
            without ``overwrite`` or ``resume``, an output folder that cannot be written (found
            before inference), or an unusable model.

    Example:
        >>> table = predict_inputs("best.pt", ["kaggle_3m/TCGA_CS_4942_19970222"], "pred")  # doctest: +SKIP
        >>> table = predict_inputs("best.pt", ["kaggle_3m"], "pred", resume=True)  # doctest: +SKIP
    """
    out = Path(out)
    cohort = discover_inputs(inputs if not isinstance(inputs, (str, os.PathLike)) else [inputs], out, series=series)
    cases = shard_cases(cohort, shard)
    failures = Failures()
    done = {id(case): row for case in cases if resume and (row := _finished_row(case, overlays)) is not None}
    if done:
        log.info("skipping %d of %d case(s) whose outputs are all written already", len(done), len(cases))
    todo = [case for case in cases if id(case) not in done]
    for case in todo:  # every header first: a case over the budget is refused before anything is decoded
        with failures.catch(case):
            check_case(case, limits)
    todo = [case for case in todo if not failures.failed(case)]
    for case in todo if overlays else []:
        if case.kind == "nifti":
            with failures.catch(case):
                case.overlays = _nifti_overlays(case, _nifti_slices(_nifti_header_shape(case.source)))
    todo = [case for case in todo if not failures.failed(case)]
    areas_path = out / "areas.csv"
    if not (overwrite or resume):  # before any volume is read: the targets are known from names and headers
        tables = [areas_path, areas_path.with_name(FAILED_NAME)]
        tables += [shard_table(t, shard) for t in tables] if shard else []
        _refuse_existing(todo, overlays, tables)
    _check_writable(out)
    orientation = KAGGLE_3M_ORIENTATION  # replaced by the model file's own below
    if todo:
        seg = (
            model_path
            if isinstance(model_path, Segmenter)
            else load_segmenter(
                model_path, device=device, batch_size=batch_size, bf16=bf16, threads=threads, graph_fusion=graph_fusion
            )
        )
        seg = _apply_postprocess(seg, postprocess)
        orientation = model_orientation(seg.meta)
    rows, written = [], []
    for case in cases:
        if id(case) in done:
            rows.append(done[id(case)])
            written.append(case)
            continue
        if failures.failed(case):
            continue
        with failures.catch(case):
            # One case in memory at a time: a cohort of hundreds of volumes is never held at once.
            volume = read_case(case, orientation, field_of_view=field_of_view)
            if case.kind in ("nifti", "dicom") and overlays:  # named once the slices in the model's frame are known
                case.overlays = _nifti_overlays(case, volume.shape[0])
            mask = seg.predict_volume(volume)
            # With resume, a case's own outputs from the stopped run are replaced.
            rows.append(write_case(case, mask, overwrite=overwrite or resume, overlays=overlays))
            written.append(case)
            log.info(
                "%s (%s): %d slice(s), %d tumour pixels",
                case.name,
                case.kind,
                mask.shape[0],
                rows[-1]["tumour_pixels"],
            )
        case.volume = case.image = None  # free memory as we go
    if shard is None:
        failures.raise_if_all(cases)  # one bad input alone (or only bad ones) is an error: no table is written
    table = pd.DataFrame(rows, columns=list(AREAS_COLUMNS))
    finish_tables({areas_path: (table, written)}, failures, cohort, shard)
    table.attrs["failed"] = failures.table()
    return table


def run_shard(kwargs: dict[str, Any], k: int, n: int) -> dict[str, int]:
    """One SLURM array task: :func:`predict_inputs` of shard ``k`` of ``n``.

    Args:
        kwargs: ``predict_inputs``'s arguments (``model_path``, ``inputs``, ``out`` as absolute paths...).
        k: the shard, 1-based.
        n: the number of shards.

    Returns:
        ``{"cases": ..., "failed": ...}`` of this shard (failed cases are listed in its failed table).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = predict_inputs(**kwargs, shard=(k, n))
    return {"cases": len(table), "failed": len(table.attrs.get("failed", ()))}
