"""The files the page offers for download: the predicted mask in the input's format and a PNG overlay.

Masks are written by :func:`gliomaseg.inference.outputs.write_case`, so they are the files
``gliomaseg predict`` writes for the same input (TIFF -> TIFF, PNG/JPEG -> PNG, NIfTI -> NIfTI
with the input's affine and header, DICOM -> NIfTI in its geometry and a DICOM SEG); a volume of
slices comes as one zip of its slice masks.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from gliomaseg.data.io import write_image
from gliomaseg.inference.outputs import OutputOptions, case_targets, write_case
from gliomaseg.utils import atomic_write
from gliomaseg.web.analysis import Analysis
from gliomaseg.web.render import overlay_image

__all__ = ["write_downloads"]


def _zip(files: list[Path], target: Path) -> Path:
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, arcname=path.name)

    return atomic_write(target, write, suffix=".zip")


def write_downloads(analysis: Analysis, z: int, algorithm: tuple[str, str]) -> list[Path]:
    """Write the current mask and slice ``z``'s overlay into the scan's work folder.

    Args:
        analysis: the scan with a current result.
        z: the slice shown (its overlay PNG, at the input's resolution, is offered).
        algorithm: ``(name, version)`` of the model, recorded in a DICOM SEG
            (:func:`gliomaseg.inference.segmenter.model_algorithm`).

    Returns:
        ``[mask file or zip of slice masks, (DICOM SEG,) overlay PNG]``, replaced on every call.
    """
    assert analysis.result is not None
    case = analysis.scan.case
    options = OutputOptions(overlays=False, overview=False, algorithm=algorithm)
    write_case(case, analysis.result.mask, options=options, overwrite=True)
    seg = case_targets(case, options)["seg"]
    if case.kind in ("nifti", "dicom", "slice"):
        mask_file = case.masks[0]
    else:
        mask_file = _zip(case.masks, analysis.scan.work / "out" / f"{case.name}_masks.zip")
    # predict's names: <stem>_overlay.png for slice files, <stem>_<z>.png (0-based z) for NIfTI.
    stem = f"{case.name}_{z:03d}" if case.kind in ("nifti", "dicom") else case.files[z].stem
    overlay_file = analysis.scan.work / "out" / f"{stem}_overlay.png"
    write_image(overlay_file, overlay_image(analysis, z), overwrite=True)
    return [mask_file, *seg, overlay_file]
