"""Bundled examples: synthetic phantoms made by the project's generator when the server starts.

Nothing binary is committed: :func:`make_examples` writes a few small files into the server's temp
folder, one per kind of upload the page accepts, each with its ground truth, so a user can try
the page with one click before having data.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gliomaseg.data.io import write_image, write_mask
from gliomaseg.data.phantoms import synthesise_dataset, synthesise_volume

__all__ = ["NIFTI_SPACING", "Example", "make_examples"]

#: Voxel size (mm) written into the NIfTI example's header: fine in-plane, thick slices, as in clinical FLAIR.
NIFTI_SPACING = (0.9, 0.9, 3.0)


@dataclass(frozen=True)
class Example:
    """One example upload.

    Attributes:
        key: short id (used in element ids: ``example-<key>``).
        label: button text.
        scan: the files to upload as the scan.
        truth: the files to upload as ground truth (empty when the scan carries its own masks).
    """

    key: str
    label: str
    scan: tuple[Path, ...]
    truth: tuple[Path, ...] = ()


def _slice_examples(folder: Path, size: int) -> list[Example]:
    image, mask = synthesise_volume(np.random.default_rng([7, 1]), 12, size)
    z = int(np.argmax(mask.reshape(len(mask), -1).sum(axis=1)))
    rgb = write_image(folder / "phantom_slice.tif", image[z], overwrite=True)
    rgb_truth = write_mask(folder / "phantom_slice_mask.tif", mask[z], overwrite=True)
    image, mask = synthesise_volume(np.random.default_rng([7, 2]), 12, size)
    z = int(np.argmax(mask.reshape(len(mask), -1).sum(axis=1)))
    grey = write_image(folder / "phantom_flair.png", image[z, ..., 1], overwrite=True)
    grey_truth = write_mask(folder / "phantom_flair_mask.png", mask[z], overwrite=True)
    return [
        Example("slice", "Slice (3-channel TIFF)", (rgb,), (rgb_truth,)),
        Example("flair", "Slice (FLAIR-only PNG)", (grey,), (grey_truth,)),
    ]


def _patient_zip(folder: Path, size: int) -> Example:
    data = synthesise_dataset(folder / "kaggle_3m", 1, slices=(16, 20), size=size, seed=7, overwrite=True)
    patient = next(p for p in sorted(data.iterdir()) if p.is_dir())
    target = folder / f"{patient.name}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(patient.iterdir()):
            archive.write(path, arcname=f"{patient.name}/{path.name}")
    shutil.rmtree(data)
    # The zip holds the kaggle_3m masks beside the slices, so the page finds the ground truth itself.
    return Example("patient", "Patient folder (kaggle_3m zip)", (target,))


def _nifti_example(folder: Path, size: int) -> Example:
    import nibabel as nib

    image, mask = synthesise_volume(np.random.default_rng([7, 3]), 20, size)
    # Stored X x Y x Z (slices on the last axis), FLAIR only, as float like most scanner exports; the
    # phantom's rows run to posterior and its columns to the left (kaggle_3m's frame), and the affine says so.
    affine = np.diag([*NIFTI_SPACING, 1.0])
    affine[:2, :2] = [[0.0, -NIFTI_SPACING[1]], [-NIFTI_SPACING[0], 0.0]]
    flair = np.moveaxis(image[..., 1], 0, 2).astype(np.float32)
    scan, truth = folder / "phantom_flair.nii.gz", folder / "phantom_flair_seg.nii.gz"
    nib.save(nib.Nifti1Image(flair, affine), scan)
    nib.save(nib.Nifti1Image(np.moveaxis(mask, 0, 2).astype(np.uint8), affine), truth)
    spacing = " x ".join(f"{s:g}" for s in NIFTI_SPACING)
    return Example("nifti", f"NIfTI volume ({spacing} mm)", (scan,), (truth,))


def make_examples(folder: str | Path, size: int = 128) -> list[Example]:
    """Write the example phantoms into ``folder``.

    Args:
        folder: where to write them (created; files in it are replaced).
        size: slice height and width in pixels.

    Returns:
        The examples: a 3-channel TIFF slice, a FLAIR-only PNG slice (each with a mask), a zipped
        kaggle_3m patient folder (masks inside) and a NIfTI volume with spacing and a NIfTI mask.

    Example:
        >>> import tempfile
        >>> [e.key for e in make_examples(tempfile.mkdtemp(), size=64)]
        ['slice', 'flair', 'patient', 'nifti']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [*_slice_examples(folder, size), _patient_zip(folder, size), _nifti_example(folder, size)]
