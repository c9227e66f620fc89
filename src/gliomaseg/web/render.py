"""What the page shows: overlay and probability images, the numbers, and messages.

Colours follow the evaluation figures (:mod:`gliomaseg.evaluation.figures`): FLAIR in grey, the
prediction outlined in red, the ground truth in green, yellow where both outlines coincide.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import numpy as np
from matplotlib import colormaps

from gliomaseg.evaluation.figures import overlay_frames
from gliomaseg.evaluation.html import fmt
from gliomaseg.web.analysis import Analysis, Result

__all__ = ["DISPLAY_SIZE", "error_html", "overlay_image", "probability_image", "summary_html", "upscale"]

#: Slices smaller than this (pixels, longer side) are enlarged by an integer factor for display.
DISPLAY_SIZE = 384
_PROB_CMAP = "inferno"


def upscale(image: np.ndarray, target: int = DISPLAY_SIZE) -> np.ndarray:
    """Enlarge ``H x W (x C)`` by the largest integer factor keeping the longer side <= ``target`` (nearest).

    Browsers smooth small images when they scale them up, which blurs one-pixel outlines; pixel
    replication keeps them sharp.
    """
    factor = max(1, target // max(image.shape[:2]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def overlay_image(analysis: Analysis, z: int) -> np.ndarray:
    """Slice ``z``: FLAIR in grey, predicted outline red, ground-truth outline green (``H x W x 3`` uint8)."""
    assert analysis.result is not None
    volume = analysis.scan.volume[z : z + 1]
    pred = analysis.result.mask[z : z + 1]
    truth = analysis.truth[z : z + 1] if analysis.truth is not None else np.zeros_like(pred)
    return overlay_frames(volume, truth, pred, max_size=None)[0]


def probability_image(result: Result, z: int) -> np.ndarray:
    """Slice ``z``'s tumour probability in the ``inferno`` colour map (0 black -> 1 yellow), ``H x W x 3`` uint8."""
    rgba = colormaps[_PROB_CMAP](np.clip(result.probs[z], 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def _quantity(pixels: int, unit_size: float | None, unit: str, bare: str) -> str:
    if unit_size is None:
        return f'<span class="gs-value">{pixels:,}</span> {bare}'
    return f'<span class="gs-value">{pixels * unit_size:,.1f}</span> {unit} ({pixels:,} {bare})'


def _volume(row: dict, voxels_key: str, ml_key: str, bare: str) -> str:
    """``12.34 mL (12,340 voxels)``, or the voxel count alone when the input has no voxel size."""
    voxels = int(row[voxels_key])
    if row["volume_unit"] != "mL":
        return f'<span class="gs-value">{voxels:,}</span> {bare}'
    return f'<span class="gs-value">{float(row[ml_key]):,.2f}</span> mL ({voxels:,} voxels)'


def _quality(quality: dict) -> str:
    """``0.93 ok`` / ``0.41 check: ...``, or why the case is not scored (the figures of ``predict``'s cases.csv)."""
    if not quality.get("quality_flag"):
        return f"not scored ({html.escape(quality.get('quality_note') or 'no quality calibration')})"
    score, flag = float(quality["quality_score"]), quality["quality_flag"]
    note = " (the mask may be wrong: compare it with the scan)" if flag == "check" else ""
    return f'<span class="gs-value">{score:.2f}</span> <span class="gs-flag-{flag}">{flag}</span>{note}'


def summary_html(analysis: Analysis, z: int) -> str:
    """The numbers: tumour volume in mL (or area), quality, components, the slice's area, Dice and IoU.

    Volumes come from the true voxel size (NIfTI or DICOM header), through the same
    :func:`~gliomaseg.inference.outputs.case_row` as ``predict``'s ``cases.csv``; slice images carry
    no spacing, so they are counted in voxels (pixels for one slice) and the page says so. The
    quality score and flag (``quality_score`` < the calibration's threshold: ``check``) are those
    ``predict`` writes. Each value sits in an element with an ``id`` (``tumour-total``, ``quality``,
    ``components``, ``tumour-slice``, ``dice``, ``iou``) so it can be found on the page.
    """
    result = analysis.result
    assert result is not None
    scan, row = analysis.scan, result.row
    geometry = scan.geometry
    n_slices = result.mask.shape[0]
    one_slice = n_slices == 1 and row["volume_unit"] != "mL"
    total_label = "Tumour area" if one_slice else "Tumour volume"
    if row["volume_unit"] == "mL":
        spacing = geometry.spacing
        header = {"nifti": "NIfTI", "dicom": "DICOM"}.get(scan.case.kind, scan.case.kind)
        units = "voxel " + " × ".join(f"{s:g}" for s in spacing) + f" mm from the {header} header"
        # the slices shown are the model's (NIfTI/DICOM turned or resliced): their own pixel size
        in_plane = scan.case.frame.spacing[:2] if scan.case.frame is not None else spacing[:2]
        pixel_area: float | None = in_plane[0] * in_plane[1]
    else:
        units = "image files carry no pixel spacing, so sizes are in voxels"
        pixel_area = None
    lines = [
        (total_label, "tumour-total", _volume(row, "tumour_voxels", "tumour_ml", "pixels" if one_slice else "voxels")),
        ("Quality", "quality", _quality(result.quality)),
        (
            "Components",
            "components",
            f"{int(row['components'])}"
            + (
                f" (largest: {_volume(row, 'largest_component_voxels', 'largest_component_ml', 'voxels')})"
                if int(row["components"]) > 1
                else ""
            ),
        ),
        (
            f"Slice {html.escape(scan.slice_labels[z])} ({z + 1} of {n_slices})",
            "tumour-slice",
            _quantity(int(result.mask[z].sum()), pixel_area, "mm²", "pixels"),
        ),
        ("Slices with tumour", "slices-with-tumour", f"{int(row['slices_with_tumour'])} of {int(row['slices'])}"),
    ]
    if result.metrics is not None:
        m = result.metrics
        note = "" if m["case"] == "tumour" else " (the ground truth has no tumour: Dice and IoU are undefined)"
        lines.append(("Dice (volume)", "dice", fmt(float(m["dice"])) + note))
        lines.append(("IoU (volume)", "iou", fmt(float(m["iou"]))))
        dice_z = float(result.per_slice["dice"].iloc[z])
        lines.append(("Dice (this slice)", "dice-slice", "–" if math.isnan(dice_z) else fmt(dice_z)))
    body = "".join(f'<tr><th>{label}</th><td id="{key}">{value}</td></tr>' for label, key, value in lines)
    name = html.escape(f"{scan.case.name} ({scan.case.kind})")
    return f'<div class="gs-summary"><p class="gs-case">{name}: {html.escape(units)}</p><table>{body}</table></div>'


def error_html(message: str, tmp_root: Path | None = None) -> str:
    """A visible error box (``role=alert``).

    Uploaded files sit in random server folders (``<tmp>/uploads/<hash>/name``); the user knows only
    the name, so paths below ``tmp_root`` are shortened to it.
    """
    if tmp_root is not None:
        message = re.sub(re.escape(str(tmp_root)) + r"/\S*/", "", message)
    return f'<div class="gs-error" role="alert"><strong>Cannot use this upload.</strong> {html.escape(message)}</div>'
