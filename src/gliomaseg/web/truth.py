"""Reading an uploaded ground truth and matching it to the scan it belongs to.

Accepted: for a NIfTI scan, one NIfTI mask of the same ``X x Y x Z`` shape; for slice images, one
mask image per slice (``.tif``/``.png``, values {0, 1} or {0, 255}, the kaggle_3m convention), or a
zip of them. Masks are matched to slices by name (``<slice stem>_mask.<ext>``) when every slice has
one, otherwise in ``<name>_<n>`` number order when the counts agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gliomaseg.data.io import IMAGE_SUFFIXES, read_mask
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.limits import DECODED_BYTES_PER_VOXEL, image_size
from gliomaseg.inference.nifti import nifti_decoded_size, nifti_stem
from gliomaseg.inference.orientation import into_model_frame
from gliomaseg.web.uploads import Scan, check_sizes, unzip_upload

__all__ = ["read_truth"]

_NUMBER = re.compile(r"(\d+)(?:_mask)?$")


def _nifti_truth(path: Path, scan: Scan) -> np.ndarray:
    import nibabel as nib

    image, frame = scan.case.image, scan.case.frame
    expected = image.shape if image is not None else np.moveaxis(scan.volume[..., 0], 0, 2).shape  # X x Y x Z
    # The header's shape and dtype are checked before the data are decoded: a small .nii.gz can
    # declare far more data than the scan it claims to belong to.
    shape, _, dtype = nifti_decoded_size(path)
    if tuple(s for s in shape if s != 1) != tuple(s for s in expected if s != 1):
        raise GliomasegError(
            f"{path.name}: ground truth shape {shape} does not match the scan's {expected}; "
            "upload the mask of this volume"
        )
    if dtype.itemsize > DECODED_BYTES_PER_VOXEL:  # e.g. complex128: no mask needs it
        raise GliomasegError(f"{path.name}: ground truth data type {dtype.name}; save the mask as uint8 0/1")
    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        raise GliomasegError(f"{path.name}: unreadable NIfTI mask ({type(err).__name__}: {err})") from err
    values = np.unique(data)
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        shown = ", ".join(f"{v:g}" for v in values[:8].tolist())
        raise GliomasegError(f"{path.name}: ground truth values {{{shown}}} are not binary (0/1 or 0/255)")
    truth = data.reshape(expected) > 0
    # In the frame the scan was shown in (turned, resliced, windowed like the scan).
    return into_model_frame(truth, frame) if frame is not None else np.moveaxis(truth, 2, 0)


def _slice_order(paths: list[Path]) -> list[Path]:
    def key(p: Path) -> tuple[int, str]:
        m = _NUMBER.search(p.stem)
        return (int(m.group(1)) if m else -1, p.name)

    return sorted(paths, key=key)


def _image_truth(paths: list[Path], scan: Scan) -> np.ndarray:
    labels = scan.slice_labels
    by_stem = {p.stem.lower(): p for p in paths}
    named = [by_stem.get(f"{label}_mask".lower()) for label in labels]
    if all(named):
        ordered = [p for p in named if p is not None]
    elif len(paths) == len(labels):
        ordered = _slice_order(paths)
    else:
        raise GliomasegError(
            f"ground truth has {len(paths)} mask image(s) for {len(labels)} slice(s); upload one mask per slice "
            f"(named <slice>_mask.<ext>, e.g. {labels[0]}_mask.tif)"
        )
    height, width = scan.volume.shape[1:3]
    masks = []
    for path in ordered:
        # The header's size first: a mask of another size (or a pixel bomb) is refused before decoding.
        size = image_size(path)
        found = (size[1], size[0]) if size is not None else None
        mask = read_mask(path) if found in (None, (height, width)) else None
        if mask is None or mask.shape != (height, width):
            found = mask.shape if mask is not None else found
            raise GliomasegError(
                f"{path.name}: ground truth is {found[0]} x {found[1]} but the scan's slices are "
                f"{height} x {width}; upload the mask of this scan"
            )
        masks.append(mask.astype(bool))
    return np.stack(masks)


def read_truth(paths: Sequence[str | os.PathLike[str]], scan: Scan, *, max_bytes: int) -> np.ndarray:
    """Read the uploaded ground truth of ``scan``.

    Args:
        paths: the uploaded truth files (mask images, a zip of them, or one NIfTI mask).
        scan: the scan they belong to.
        max_bytes: the upload size limit.

    Returns:
        ``S x H x W`` bool, aligned with ``scan.volume``.

    Raises:
        GliomasegError: unreadable or non-binary masks, or masks that do not match the scan (count,
            size or shape), with a message naming the file.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from gliomaseg.data.io import write_image, write_mask
        >>> from gliomaseg.web.uploads import load_upload
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_image(tmp / "s.png", np.zeros((64, 64), np.uint8))
        >>> _ = write_mask(tmp / "s_mask.png", np.ones((64, 64), np.uint8))
        >>> scan = load_upload([tmp / "s.png"], tmp / "work", max_bytes=10**6)
        >>> int(read_truth([tmp / "s_mask.png"], scan, max_bytes=10**6).sum())
        4096
    """
    files = [Path(p) for p in paths]
    if not files:
        raise GliomasegError("no ground-truth file uploaded")
    check_sizes(files, max_bytes)
    if len(files) == 1 and files[0].suffix.lower() == ".zip":
        folder = unzip_upload(files[0], scan.work / "truth", max_bytes)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    niftis = [p for p in files if nifti_stem(p) is not None]
    if scan.case.kind == "nifti":
        if len(files) != 1 or not niftis:
            raise GliomasegError("the scan is a NIfTI volume: upload its ground truth as one NIfTI mask (.nii/.nii.gz)")
        return _nifti_truth(niftis[0], scan)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if niftis or len(images) != len(files):
        odd = next(p for p in files if p not in images)
        raise GliomasegError(
            f"{odd.name}: ground truth for slice images must be mask images (.tif/.png), one per slice"
        )
    return _image_truth(images, scan)
