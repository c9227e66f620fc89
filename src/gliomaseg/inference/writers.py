"""Results in the input's own geometry: a NIfTI mask, a DICOM SEG, a probability map.

Every writer takes the result as an ``X x Y x Z`` array in the :class:`~gliomaseg.inference.volume.Volume`'s
own index order (the orientation step has already brought it back from the model's frame) and the
Volume itself, and writes atomically, never replacing a file without ``overwrite``.

- :func:`write_nifti_mask`: uint8 0/1 with exactly the input's shape and affine; a NIfTI source's
  header is copied (qform/sform and their codes, units), any other source gets both forms from the
  affine with code 1 (scanner).
- :func:`write_dicom_seg`: a BINARY DICOM Segmentation (highdicom) with one segment, one frame per
  source frame in the source's order, referencing the source instances; it needs the source
  datasets in ``volume.extra["datasets"]`` (:data:`DICOM_DATASETS`, as
  :func:`~gliomaseg.inference.dicom.read_dicom` leaves them). Each source frame is placed on the
  volume's grid by its own position and orientation, so the frames' order in the datasets (slice
  order, or an enhanced multi-frame file's stored order) does not matter.
- :func:`write_probabilities`: float32 NIfTI, values 0..1, in the input's geometry. NIfTI for DICOM
  inputs too (with the DICOM-derived affine), not a FRACTIONAL SEG: a FRACTIONAL SEG quantises to
  8 bits, few viewers read it, and whoever asks for probabilities wants numbers for their own
  analysis (ensembling, calibration, thresholds), which every tool reads from NIfTI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from isal import igzip

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.inference.volume import Volume
from gliomaseg.utils import atomic_write

__all__ = [
    "DICOM_DATASETS",
    "NIFTI_IMAGE",
    "SEGMENT_LABEL",
    "source_frames",
    "write_dicom_seg",
    "write_nifti_mask",
    "write_probabilities",
]

#: ``Volume.extra`` key of the source DICOM datasets (:func:`~gliomaseg.inference.dicom.read_dicom`'s).
DICOM_DATASETS = "datasets"
#: ``Volume.extra`` key of the nibabel image a NIfTI source was read from
#: (:func:`~gliomaseg.inference.nifti.read_nifti_volume`'s): its header and affine are copied into the outputs.
NIFTI_IMAGE = "image"
#: The one segment of a DICOM SEG.
SEGMENT_LABEL = "Glioma FLAIR abnormality"
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")


def _check_shape(data: np.ndarray, volume: Volume, what: str) -> None:
    if data.shape != volume.shape:
        raise GliomasegError(
            f"{what} of shape {data.shape} does not match the input {volume.source} ({volume.shape}); "
            "bring it back to the input's geometry first"
        )


def _nifti_suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix


def _nifti_image(data: np.ndarray, volume: Volume, dtype: type, cal: tuple[float, float]) -> Any:
    """A NIfTI image of ``data`` in ``volume``'s geometry, with the source's header when it has one."""
    import nibabel as nib

    source_image = volume.extra.get(NIFTI_IMAGE)
    source_header = getattr(source_image, "header", None)
    # The file's own affine: a reader may stand in a unit affine for a header without voxel sizes.
    affine = np.asarray(source_image.affine, float) if source_image is not None else volume.affine
    if source_header is not None:
        header = source_header.copy()
        spatial = tuple(int(n) for n in header.get_data_shape()[:3])
        if len(spatial) < 3:  # a 2D NIfTI slice comes back 2D, as it went in
            data = data.reshape(spatial)
        header.set_data_dtype(dtype)
        header.set_intent("none")
        header["cal_min"], header["cal_max"] = cal
        image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        image = image_class(data, affine, header)
    else:
        image = nib.Nifti1Image(data, volume.affine)
        image.header.set_data_dtype(dtype)
        image.header.set_xyzt_units("mm")
        # The affine is the scanner's world (DICOM, or another reader with real coordinates).
        image.set_qform(volume.affine, code=1)
        image.set_sform(volume.affine, code=1)
    image.header.set_slope_inter(1, 0)
    return image


def _save_nifti(path: Path, image: Any, overwrite: bool) -> Path:
    import nibabel as nib

    _check_target(path, overwrite)
    if _nifti_suffix(path) != ".nii.gz":
        return atomic_write(path, lambda tmp: nib.save(image, tmp), suffix=_nifti_suffix(path))

    def gzipped(tmp: Path) -> None:
        # ISA-L's deflate (isal.igzip) at level 1, not nibabel's zlib at level 1: a 155-slice mask in 2 ms
        # instead of 20, and a third of the size (binary masks are long runs); any gzip reader reads it.
        with igzip.open(tmp, "wb", compresslevel=1) as stream:
            image.to_stream(stream)

    return atomic_write(path, gzipped, suffix=".nii.gz")


def write_nifti_mask(
    path: str | os.PathLike[str], mask: np.ndarray, volume: Volume, *, overwrite: bool = False
) -> Path:
    """Write a mask as NIfTI with exactly the input's shape and affine.

    Args:
        path: ``.nii`` or ``.nii.gz`` target.
        mask: ``X x Y x Z`` bool or 0/1 in the volume's own index order.
        volume: the input (its affine, and the NIfTI image it was read from under :data:`NIFTI_IMAGE` if any).
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        GliomasegError: the mask's shape differs from the volume's.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    mask = np.asarray(mask)
    _check_shape(mask, volume, "the mask")
    # Fortran order is NIfTI's own: nibabel then writes the array without transposing it slice by slice.
    data = np.asfortranarray(mask if mask.dtype == bool else mask > 0, dtype=np.uint8)
    image = _nifti_image(data, volume, np.uint8, (0, 1))
    return _save_nifti(Path(path), image, overwrite)


def write_probabilities(
    path: str | os.PathLike[str], probabilities: np.ndarray, volume: Volume, *, overwrite: bool = False
) -> Path:
    """Write tumour probabilities as float32 NIfTI in the input's geometry (any input kind; see the module).

    Args:
        path: ``.nii`` or ``.nii.gz`` target.
        probabilities: ``X x Y x Z`` values in [0, 1] in the volume's own index order.
        volume: the input.
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        GliomasegError: wrong shape, or values outside [0, 1].
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    _check_shape(probabilities, volume, "the probability map")
    if probabilities.size and not (float(probabilities.min()) >= 0.0 and float(probabilities.max()) <= 1.0):
        raise GliomasegError(f"probabilities for {volume.source} fall outside [0, 1]; pass sigmoid outputs")
    image = _nifti_image(probabilities, volume, np.float32, (0.0, 1.0))
    return _save_nifti(Path(path), image, overwrite)


# ---------------------------------------------------------------------------------------------- DICOM SEG
def _frame_planes(ds: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(position, row direction, column direction, (row spacing, column spacing))`` per frame, LPS mm.

    Single-frame images carry them at the top level; enhanced multi-frame images in the shared and
    per-frame functional groups (the per-frame entry wins).
    """
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" not in ds:
        iop = np.asarray(ds.ImageOrientationPatient, float)
        return [(np.asarray(ds.ImagePositionPatient, float), iop[:3], iop[3:], np.asarray(ds.PixelSpacing, float))]
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None

    def group(frame: Any, name: str) -> Any:
        for source in (frame, shared):
            if source is not None and name in source:
                return source[name].value[0]
        raise GliomasegError(f"DICOM frame without {name}; cannot place a segmentation frame on it")

    planes = []
    for frame in ds.PerFrameFunctionalGroupsSequence[:n_frames]:
        iop = np.asarray(group(frame, "PlaneOrientationSequence").ImageOrientationPatient, float)
        position = np.asarray(group(frame, "PlanePositionSequence").ImagePositionPatient, float)
        spacing = np.asarray(group(frame, "PixelMeasuresSequence").PixelSpacing, float)
        planes.append((position, iop[:3], iop[3:], spacing))
    return planes


def _frame_indices(plane: tuple[np.ndarray, ...], rows: int, cols: int, volume: Volume) -> tuple[np.ndarray, ...]:
    """Voxel indices ``(i, j, k)``, each ``rows x cols``, of a source frame's pixels in ``volume``.

    Found from the geometry (frame position and orientation against the Volume's affine), not from
    an assumed axis order, so any reader convention (transposed, flipped, reversed slices) works.
    """
    position, row_dir, col_dir, (row_step, col_step) = plane
    to_voxel = np.linalg.inv(np.asarray(volume.affine, float))

    def voxel(r: float, c: float) -> np.ndarray:
        lps = position + c * col_step * row_dir + r * row_step * col_dir
        return to_voxel[:3, :3] @ (lps * _LPS_TO_RAS) + to_voxel[:3, 3]

    origin, along_cols, along_rows = voxel(0, 0), voxel(0, 1) - voxel(0, 0), voxel(1, 0) - voxel(0, 0)
    exact = [np.rint(v) for v in (origin, along_cols, along_rows)]
    steps_ok = all(np.abs(np.abs(v).sum() - 1) < 1e-3 for v in exact[1:]) and np.abs(exact[1] * exact[2]).sum() == 0
    if not steps_ok or max(float(np.abs(a - b).max()) for a, b in zip((origin, along_cols, along_rows), exact)) > 1e-2:
        raise GliomasegError(
            f"{volume.source}: a source DICOM frame does not lie on the volume's voxel grid; the DICOM SEG can only "
            "reference frames of the series the volume was read from"
        )
    r, c = np.arange(rows)[:, None], np.arange(cols)[None, :]
    idx = tuple((exact[0][a] + r * exact[2][a] + c * exact[1][a]).astype(np.intp) for a in range(3))
    if any(int(ix.min()) < 0 or int(ix.max()) >= n for ix, n in zip(idx, volume.shape)):
        raise GliomasegError(f"{volume.source}: a source DICOM frame falls outside the volume; not the same series")
    return idx


def source_frames(mask: np.ndarray, volume: Volume) -> np.ndarray:
    """The mask as one ``Rows x Columns`` frame per source DICOM frame, in the source's order.

    Args:
        mask: ``X x Y x Z`` in the volume's index order.
        volume: a DICOM volume with :data:`DICOM_DATASETS` in ``extra``.

    Returns:
        ``F x Rows x Columns`` uint8, ``F`` the source frames (all frames of the datasets, in order).

    Raises:
        GliomasegError: no source datasets, or frames that do not lie on the volume's grid.
    """
    datasets = volume.extra.get(DICOM_DATASETS)
    if not datasets:
        raise GliomasegError(f"{volume.source}: a DICOM SEG needs the source DICOM series; this input is {volume.kind}")
    mask = np.asarray(mask)
    _check_shape(mask, volume, "the mask")
    frames = []
    for ds in datasets:
        for plane in _frame_planes(ds):
            frames.append(mask[_frame_indices(plane, int(ds.Rows), int(ds.Columns), volume)])
    return (np.stack(frames) > 0).astype(np.uint8)


def _segment(algorithm: tuple[str, str]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        # CID 7150/7151: category "Morphologically Abnormal Structure", type "Neoplasm" (SCT 108369006).
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm[0][:64], version=algorithm[1][:64], family=codes.cid7162.ArtificialIntelligence
        ),
        anatomic_regions=[codes.SCT.Brain],
    )


def write_dicom_seg(
    path: str | os.PathLike[str],
    mask: np.ndarray,
    volume: Volume,
    *,
    algorithm: tuple[str, str],
    overwrite: bool = False,
) -> Path:
    """Write a mask as a BINARY DICOM Segmentation referencing the source series.

    The SEG has one segment (:data:`SEGMENT_LABEL`) and one frame per source frame, empty frames
    included, so that reading it back gives the mask for every source instance; it joins the
    source's study and frame of reference (highdicom copies the patient and study modules, as the
    standard requires: keep it as private as the source).

    Args:
        path: the ``.dcm`` target.
        mask: ``X x Y x Z`` bool or 0/1 in the volume's own index order.
        volume: a DICOM volume with its source datasets under :data:`DICOM_DATASETS`.
        algorithm: ``(name, version)`` of the model, for the segment's algorithm identification
            (:func:`gliomaseg.inference.segmenter.model_algorithm`).
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        GliomasegError: not a DICOM volume, or a mask that does not match it.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.

    Example:
        >>> import highdicom as hd
        >>> write_dicom_seg("case_seg.dcm", mask, volume, algorithm=model_algorithm(seg))  # doctest: +SKIP
        >>> hd.seg.segread("case_seg.dcm").get_pixels_by_source_instance([uid])  # doctest: +SKIP
    """
    import highdicom as hd

    from gliomaseg import __version__

    path = Path(path)
    frames = source_frames(mask, volume)
    _check_target(path, overwrite)
    sources: Sequence[Any] = volume.extra[DICOM_DATASETS]
    series_number = int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000
    seg = hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(algorithm)],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="gliomaseg",
        manufacturer_model_name=algorithm[0][:64],
        software_versions=f"gliomaseg {__version__}",
        device_serial_number="none",
        series_description="gliomaseg glioma segmentation",
        omit_empty_frames=False,
    )
    return atomic_write(path, lambda tmp: seg.save_as(tmp), suffix=".dcm")
