"""``predict``: segment the user's own images (see :mod:`gliomaseg.inference.inputs`) and write masks,
an overview per volume, and the per-case table.

Outputs under ``out`` mirror the input names (a folder input ``.../P1/`` writes into ``out/P1/``,
sub-folders likewise); what each case writes is listed in :mod:`gliomaseg.inference.outputs`
(masks in the input's geometry, DICOM SEG, overview, optional overlays and probabilities). Two
tables go to ``out``:

- ``cases.csv``: one row per case (:data:`~gliomaseg.inference.outputs.CASES_COLUMNS`): the input,
  slices, tumour voxels, volume in mL from the true voxel size (``volume_unit`` says ``voxels``
  when the input has none), 26-connected components and the largest one's volume, the files
  written and (``quality``, default on) ``quality_score`` and ``quality_flag``
  (:mod:`gliomaseg.inference.quality`; blank for a single slice; a case ``resume`` skips keeps
  what the earlier run's table says, blank without one);
- ``components.csv``: one row per component of every case, largest first.
- ``failed.csv`` when cases failed (``input, case, error``): a case that cannot be read or segmented
  does not stop the others. Cohorts, shards and SLURM arrays: :mod:`gliomaseg.inference.cohort`
  (both tables above are merged from the shards).

Existing outputs are never replaced without ``overwrite``; every target is checked and the output
folder's writability probed before the model runs. Inputs are read one case at a time as they are
predicted, so a cohort of any size holds one volume in memory; a single bad input (or only bad
ones) is an error, with nothing written. Every file is written
atomically, so a stopped run leaves complete files only, and ``resume`` continues it by skipping
the cases whose outputs are all there.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gliomaseg.data.io import KAGGLE_3M_ORIENTATION
from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.evaluation.postprocess import PostprocessConfig, postprocess_volume
from gliomaseg.inference.cohort import FAILED_NAME, Failures, finish_tables, shard_cases, shard_table
from gliomaseg.inference.inputs import WINDOWED_KINDS, Case, discover_inputs, read_case
from gliomaseg.inference.limits import DEFAULT_LIMITS, Limits, check_case
from gliomaseg.inference.orientation import model_orientation
from gliomaseg.inference.outputs import (
    CASE_COMPONENT_COLUMNS,
    CASES_COLUMNS,
    OutputOptions,
    case_targets,
    finished_case,
    write_case,
)
from gliomaseg.inference.quality import QUALITY_COLUMNS, quality_for_case
from gliomaseg.inference.quality_calibrations import quality_calibration
from gliomaseg.inference.segmenter import Segmenter, load_segmenter, model_algorithm

__all__ = ["predict_inputs", "run_shard"]

log = logging.getLogger(__name__)


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


def _refuse_existing(cases: Sequence[Case], options: OutputOptions, tables: Sequence[Path]) -> None:
    """Raise OutputExistsError when any output of ``cases`` (or one of the ``tables``) exists.

    Known from names and headers, before any volume is read: a volume's per-slice overlays are named
    once its slices in the model's frame are known, so their folder stands for them here.
    """
    targets = list(tables)
    for case in cases:
        named = case_targets(case, options, n_slices=0)
        targets += [p for paths in named.values() for p in paths]
        if options.wants_overlays(case) and case.kind in ("nifti", "dicom"):
            folder = case.masks[0].parent / f"{case.name}_overlay"
            targets += [folder] if folder.is_dir() and any(folder.iterdir()) else []
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
    overlays: bool | None = None,
    overview: bool = True,
    save_probabilities: bool = False,
    graph_fusion: bool | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    series: str | None = None,
    field_of_view: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    quality: bool | str | Path = True,
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
            are skipped (their rows are read back from their masks); the others are
            predicted, replacing what the stopped run wrote of them.
        shard: ``(K, N)``: predict only the K-th of N slices of the cases (see
            :mod:`gliomaseg.inference.cohort`; the last shard to finish merges the tables).
        series: the DICOM series to read (its number in the listing, UID or description; None: FLAIR).
        field_of_view: the network sees NIfTI and DICOM slices cropped or padded to a square window
            around the head sized as in kaggle_3m (:meth:`Segmenter.with_field_of_view`; the outputs keep
            the input's whole slices); measured on shifted real volumes (``benchmarks/field_of_view.py``):
            mean Dice 0.47 -> 0.89 with the head in a corner of 512 x 512, within 0.005 on kaggle_3m's
            own framing. kaggle_3m folders and slice images are never windowed.
        limits: the memory budget of one case (pixels per slice, voxels, slices), checked from the
            file headers before any pixel is decoded.
        quality: add ``quality_score`` and ``quality_flag`` to every row
            (:func:`~gliomaseg.inference.quality.quality_for_case`; one more forward pass per case
            only when the calibration uses the flip disagreement): True scores with the model's
            calibration, a name of :data:`~gliomaseg.inference.quality_calibrations.BUNDLED_CALIBRATIONS`
            or a JSON file with that one instead.

    Returns:
        The ``cases.csv`` table (:data:`~gliomaseg.inference.outputs.CASES_COLUMNS`, then with ``quality``
        :data:`~gliomaseg.inference.quality.QUALITY_COLUMNS`), one row per case predicted
        (of the shard); ``table.attrs["failed"]`` lists the cases that failed (``failed.csv``: input, case,
        error), which do not stop the others.

    Raises:
        GliomasegError: unsupported or missing inputs, corrupt ones when no input could be predicted
            (naming the file; among good inputs they are listed in ``failed.csv``), existing outputs
            without ``overwrite`` or ``resume``, an output folder that cannot be written (found
            before inference), or an unusable model.

    Example:
        >>> table = predict_inputs("best.pt", ["kaggle_3m/TCGA_CS_4942_19970222"], "pred")  # doctest: +SKIP
        >>> table = predict_inputs("best.pt", ["scan.nii.gz"], "pred", save_probabilities=True)  # doctest: +SKIP
    """
    out = Path(out)
    # read before any input: a wrong name or file is refused at once (None: the model's own calibration)
    calibration = quality_calibration(None, quality) if isinstance(quality, str | Path) else None
    cohort = discover_inputs(inputs if not isinstance(inputs, (str, os.PathLike)) else [inputs], out, series=series)
    cases = shard_cases(cohort, shard)
    failures = Failures()
    options = OutputOptions(overlays=overlays, overview=overview, probabilities=save_probabilities)
    done = {id(case): rows for case in cases if resume and (rows := finished_case(case, options)) is not None}
    if done:
        log.info("skipping %d of %d case(s) whose outputs are all written already", len(done), len(cases))
    todo = [case for case in cases if id(case) not in done]
    for case in todo:  # every header first: a case over the budget is refused before anything is decoded
        with failures.catch(case):
            check_case(case, limits)
    todo = [case for case in todo if not failures.failed(case)]
    tables = [out / "cases.csv", out / "components.csv"]
    if not (overwrite or resume):  # before any volume is read: the targets are known from names and headers
        refused = [*tables, out / FAILED_NAME]
        refused += [shard_table(t, shard) for t in refused] if shard else []
        _refuse_existing(todo, options, refused)
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
        options = OutputOptions(overlays, overview, save_probabilities, model_algorithm(seg))
    earlier = _earlier_quality([tables[0], *([shard_table(tables[0], shard)] if shard else [])]) if done else {}
    rows, parts, written, parted = [], [], [], []
    for case in cases:
        if id(case) in done:  # read back from its masks: the probabilities behind its quality are gone
            row, comps = done[id(case)]
            blank = {"quality_score": math.nan, "quality_flag": ""}
            row = {**row, **earlier.get((row["input"], row["case"]), blank)} if quality else row
        elif failures.failed(case):
            continue
        else:
            with failures.catch(case):
                row, comps = _predict_case(
                    seg, case, options, orientation, field_of_view, overwrite or resume, quality, calibration
                )
            case.volume = case.image = case.nifti = None  # one case in memory at a time
            if failures.failed(case):
                continue
        rows.append(row)
        written.append(case)
        parts.extend(comps)
        parted.extend([case] * len(comps))
    if shard is None:
        failures.raise_if_all(cases)  # one bad input alone (or only bad ones) is an error: no table is written
    table = pd.DataFrame(rows, columns=[*CASES_COLUMNS, *(QUALITY_COLUMNS if quality else ())])
    components = pd.DataFrame(parts, columns=list(CASE_COMPONENT_COLUMNS))
    finish_tables({tables[0]: (table, written), tables[1]: (components, parted)}, failures, cohort, shard)
    table.attrs["failed"] = failures.table()
    return table


def _predict_case(
    seg: Segmenter,
    case: Case,
    options: OutputOptions,
    orientation: Sequence[str],
    field_of_view: bool,
    overwrite: bool,
    quality: bool | str | Path,
    calibration: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read one case into the model's frame, segment it and write its outputs in the input's geometry."""
    volume = read_case(case, orientation)
    if field_of_view and case.kind in WINDOWED_KINDS:
        seg = seg.with_field_of_view()
    probs, probas = seg.probabilities(volume)  # an ensemble's members also give the quality's disagreement
    mask = postprocess_volume(probs, seg.postprocess)  # what Segmenter.predict_volume does
    # With resume, a case's own outputs from the stopped run are replaced.
    row, comps = write_case(
        case, mask, options=options, probabilities=probs if options.probabilities else None, overwrite=overwrite
    )
    if quality:
        members = probas if len(probas) > 1 else None
        found = quality_for_case(seg, volume, probs, mask, member_probas=members, calibration=calibration)
        row.update({k: found[k] for k in QUALITY_COLUMNS})
    text = f"{_volume_text(row)}{_quality_text(row)}"
    log.info("%s (%s): %d slice(s), tumour %s", case.name, case.kind, row["slices"], text)
    return row, comps


def _earlier_quality(tables: Sequence[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """The quality columns an earlier run's tables give its cases, by ``(input, case)``: a case that
    ``resume`` skips is read back from its masks, but the probabilities behind its quality are gone."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in tables:
        try:
            table = pd.read_csv(path, dtype={"input": str, "case": str, "quality_flag": str})
        except (OSError, ValueError):  # none, or unreadable: the rows stay blank
            continue
        if not set(QUALITY_COLUMNS) <= set(table.columns):
            continue
        for r in table.itertuples(index=False):
            flag = r.quality_flag if isinstance(r.quality_flag, str) else ""
            found[(r.input, r.case)] = {"quality_score": float(r.quality_score), "quality_flag": flag}
    return found


def _volume_text(row: Mapping[str, Any]) -> str:
    """``12.3 mL in 2 component(s)``, or voxels when the input has no voxel size."""
    size = f"{row['tumour_ml']:.2f} mL" if row["volume_unit"] == "mL" else f"{row['tumour_voxels']} voxels"
    return f"{size} in {row['components']} component(s)"


def _quality_text(row: Mapping[str, Any]) -> str:
    """``; quality 0.93: ok`` (or ``: check``), ``; quality not scored`` (one slice), or '' without quality."""
    if "quality_flag" not in row:
        return ""
    flag = row["quality_flag"]
    return f"; quality {row['quality_score']:.2f}: {flag}" if flag else "; quality not scored"


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
