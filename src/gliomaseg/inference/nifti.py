"""NIfTI volumes as prediction inputs: names, voxel sizes, reading with checks, scaling to uint8.

A volume is read as stored (no reorientation): slice ``z`` is ``data[:, :, z]``. Before anything is
scaled, the data are checked: NaN or infinite voxels are refused (gliomaseg does not guess what
they should be), slices smaller than 32 x 32 are refused (usually the slices are on another axis),
and axes that look transposed (the slice axis longer than both in-plane axes, or in-plane sides
that differ more than four-fold) are warned about, with the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from isal import igzip

from gliomaseg.data.normalise import MIN_SIZE
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.volume import Volume

__all__ = [
    "NIFTI_SUFFIXES",
    "nifti_decoded_size",
    "nifti_spacing",
    "nifti_spacing_known",
    "nifti_stem",
    "nifti_to_uint8",
    "read_nifti",
    "read_nifti_volume",
]

log = logging.getLogger(__name__)

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
_PERCENTILES = (0.5, 99.5)
#: In-plane sides differing by more than this factor suggest the slice axis is one of them.
_MAX_ASPECT = 4


def nifti_stem(path: Path) -> str | None:
    """The name of a NIfTI file without ``.nii``/``.nii.gz``, or None for another file."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def nifti_spacing(image: Any) -> tuple[float, ...]:
    """Voxel sizes along the spatial axes of a NIfTI image (X, Y and, for volumes, Z), from its header.

    Args:
        image: a nibabel NIfTI image (``Case.nifti``).

    Returns:
        ``(dx, dy, dz)`` for a volume, ``(dx, dy)`` for a single 2D slice, in the header's spatial unit
        (millimetres in practice).
    """
    n_spatial = 3 if len(image.shape) >= 3 else 2
    return tuple(float(z) for z in image.header.get_zooms()[:n_spatial])


def _table_index(channel: np.ndarray) -> tuple[np.ndarray, int, int, bool] | None:
    """``(index, first value, table length, wrapped)``: ``channel`` as non-negative integers indexing a
    lookup table whose entry ``i`` stands for the value ``first + i``; None when the range is too wide.

    ``wrapped``: signed 8/16-bit data are indexed by their own bits read as unsigned (no pass over the
    volume), so the table is in two's-complement order, its halves swapped against value order.
    """
    if channel.dtype in (np.int16, np.int8):
        bits = channel.dtype.itemsize * 8
        return channel.view(np.dtype(f"u{channel.dtype.itemsize}")), -(1 << (bits - 1)), 1 << bits, True
    if channel.dtype == np.uint16:
        return channel, 0, 1 << 16, False
    lo_value, hi_value = int(channel.min()), int(channel.max())
    if hi_value - lo_value > 1 << 20:
        return None
    # int32: the offset values must not wrap around in a narrow type
    return np.subtract(channel, lo_value, dtype=np.int32), lo_value, hi_value - lo_value + 1, False


def _histogram(index: np.ndarray, length: int) -> np.ndarray:
    """Counts of each table index (int64)."""
    flat = index.ravel(order="K")  # no copy, whatever the memory order (NIfTI data are Fortran-ordered)
    if flat.dtype == np.uint16 and flat.size < 1 << 24:
        # OpenCV's histogram is 3x faster than bincount here; its float32 counts are exact below 2**24.
        import cv2

        counts = cv2.calcHist([flat.reshape(-1, 1)], [0], None, [length], [0, length]).ravel()
        return counts.astype(np.int64)
    return np.bincount(flat, minlength=length)


def _lerp_percentiles(cumulative: np.ndarray, first: int) -> tuple[float, float]:
    """:data:`_PERCENTILES` of the values counted in ``cumulative``, as ``np.percentile`` computes them
    ('linear': interpolation between the sorted values around rank ``(n - 1) * q / 100``, in float64)."""
    n = int(cumulative[-1])
    out = []
    for q in _PERCENTILES:
        rank = (n - 1) * (q / 100.0)
        below = int(np.floor(rank))
        a, b = (float(np.searchsorted(cumulative, r, side="right") + first) for r in (below, min(below + 1, n - 1)))
        gamma = rank - below
        out.append(b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma)
    return out[0], out[1]


def _integer_channel_to_uint8(channel: np.ndarray) -> np.ndarray | None:
    """:func:`nifti_to_uint8` of one integer channel through a histogram and a lookup table, or None
    when its value range is too wide for one.

    Scanner data are integers (int16/uint16, a few thousand distinct values): the percentiles come
    from the cumulative histogram, exactly as ``np.percentile`` interpolates them, and the scaling
    is one table lookup built with the float path's own formula, about five times faster than
    sorting and scaling every voxel of a 155-slice head. Same result, voxel for voxel.
    """
    indexed = _table_index(channel)
    if indexed is None:
        return None
    index, first, length, wrapped = indexed
    counts = _histogram(index, length)
    half = length // 2 if wrapped else 0  # swapping the halves turns two's-complement order into value order
    lo, hi = _lerp_percentiles(np.cumsum(np.roll(counts, half)), first)
    if hi <= lo:
        return np.zeros(channel.shape, np.uint8)
    values = np.arange(first, first + length, dtype=np.float64)
    table = np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return np.roll(table, half)[index]


def nifti_spacing_known(image: Any) -> bool:
    """Whether the file gives a real voxel size: stored pixdim > 0 and an invertible affine.

    nibabel replaces a stored pixdim of 0 by 1 when it reads a header (and logs it at a level
    nobody sees), so the stored values are read again without that fix: a file that says nothing
    about its voxel size must not be reported in mm^3 as if its voxels were 1 mm cubes.

    Args:
        image: a nibabel NIfTI image loaded from a file (``Case.nifti``).

    Returns:
        False when a stored spatial pixdim is 0, negative or not finite, or when the affine's
        ``3 x 3`` part is singular (e.g. all zeros); True otherwise.
    """
    n_spatial = 3 if len(image.shape) >= 3 else 2
    pixdim = np.asarray(image.header["pixdim"][1 : 1 + n_spatial], dtype=float)
    filename = image.get_filename()
    if filename:
        from nibabel.openers import ImageOpener

        with contextlib.suppress(Exception), ImageOpener(filename) as f:
            raw = type(image.header).from_fileobj(f, check=False)
            pixdim = np.asarray(raw["pixdim"][1 : 1 + n_spatial], dtype=float)
    linear = np.asarray(image.affine, dtype=float)[:3, :3]
    invertible = bool(np.all(np.isfinite(linear))) and abs(float(np.linalg.det(linear))) > 1e-12
    return bool(np.all(np.isfinite(pixdim)) and np.all(pixdim > 0)) and invertible


def nifti_decoded_size(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype, np.dtype]:
    """The shape and the dtype a NIfTI file's data will have in memory, without reading the data.

    The dtype is the one nibabel actually returns, which is not always the stored one: with
    ``scl_slope``/``scl_inter`` set, stored uint8 or int8 becomes float64 (8 bytes a voxel). It is
    found by reading one voxel (for ``.nii.gz`` only the start of the stream is decompressed).

    Args:
        path: a ``.nii``/``.nii.gz`` file.

    Returns:
        ``(shape, stored_dtype, returned_dtype)``.

    Raises:
        GliomasegError: the header (or the first voxel) cannot be read.
    """
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        shape = tuple(int(n) for n in img.header.get_data_shape())
        corner = np.asanyarray(img.dataobj[tuple(slice(0, 1) for _ in shape)])
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        raise GliomasegError(f"{path}: unreadable or truncated NIfTI file ({type(err).__name__}: {err})") from err
    return shape, np.dtype(img.header.get_data_dtype()), corner.dtype


def nifti_to_uint8(data: np.ndarray) -> np.ndarray:
    """Scale a NIfTI volume to uint8, per channel, robustly.

    Args:
        data: ``... x C`` array of any numeric dtype (channels last).

    Returns:
        uint8 array of the same shape: uint8 input unchanged; otherwise each channel's 0.5th-99.5th
        percentile range of finite values mapped linearly to 0-255 (clipped, NaN -> 0, a constant
        channel -> 0).
    """
    if data.dtype == np.uint8:
        return data
    if data.shape[-1] == 1 and np.issubdtype(data.dtype, np.integer):  # FLAIR alone: its table's output is the result
        scaled = _integer_channel_to_uint8(np.asarray(data[..., 0]))
        if scaled is not None:
            return scaled[..., None]
    out = np.zeros_like(data, dtype=np.uint8)  # same memory order as the data (NIfTI: Fortran): no strided copy
    for c in range(data.shape[-1]):
        if np.issubdtype(data.dtype, np.integer):
            scaled = _integer_channel_to_uint8(np.asarray(data[..., c]))
            if scaled is not None:
                out[..., c] = scaled
                continue
        channel = np.asarray(data[..., c], dtype=np.float32)
        finite = np.isfinite(channel)
        if not finite.any():
            continue
        lo, hi = np.percentile(channel[finite], _PERCENTILES)
        if hi <= lo:
            continue
        scaled = (np.where(finite, channel, lo) - lo) * (255.0 / (hi - lo))
        out[..., c] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def _check_finite(path: Path, data: np.ndarray) -> None:
    """Refuse NaN or infinite voxels (gliomaseg does not guess what they should be)."""
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            n_nan = int(np.isnan(data).sum())
            raise GliomasegError(
                f"{path}: {n_nan} NaN and {finite.size - int(finite.sum()) - n_nan} infinite voxel(s); gliomaseg "
                "does not guess what they should be: replace them (e.g. with the background value, "
                "numpy.nan_to_num) and save the file again"
            )


def _check_data(path: Path, data: np.ndarray) -> None:
    """Refuse non-finite voxels and slices too small to segment; warn about axes that look transposed.

    Args:
        path: the file, for messages.
        data: ``X x Y x Z x C``, slices along Z.
    """
    _check_finite(path, data)
    x, y, z = data.shape[:3]
    if min(x, y) < MIN_SIZE:
        raise GliomasegError(
            f"{path}: slices of {x} x {y} voxels are too small (at least {MIN_SIZE} x {MIN_SIZE}); gliomaseg reads "
            "slices along the last spatial axis: if the slices are on another axis, move them there "
            "(e.g. numpy.moveaxis or nibabel.as_closest_canonical) and save again"
        )
    if z > max(x, y) or max(x, y) > _MAX_ASPECT * min(x, y):
        log.warning(
            "%s: the axes look transposed (X x Y x Z = %d x %d x %d): gliomaseg reads slices along the last axis "
            "(Z) and expects them roughly square; if the axial slices are on another axis, move them to the last "
            "one (e.g. numpy.moveaxis or nibabel.as_closest_canonical)",
            path,
            x,
            y,
            z,
        )


def read_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, Any]:
    """Read a NIfTI volume as slices, checked, with intensities scaled to uint8.

    Args:
        path: a ``.nii``/``.nii.gz`` file: ``X x Y`` (one slice), ``X x Y x Z`` (FLAIR) or
            ``X x Y x Z x C`` with ``C`` in {1, 3} (pre-contrast, FLAIR, post-contrast).

    Returns:
        ``(volume, image)``: ``Z x X x Y x C`` uint8 (slices along the stored last spatial axis, no
        reorientation; see :func:`nifti_to_uint8`) and the nibabel image (header and affine).

    Raises:
        GliomasegError: an unreadable file, an unsupported shape or data type, NaN or infinite
            voxels, or slices smaller than 32 x 32 (see :func:`_check_data`).

    Example:
        >>> import tempfile, numpy as np, nibabel as nib
        >>> path = tempfile.mkdtemp() + "/v.nii.gz"
        >>> nib.save(nib.Nifti1Image(np.ones((48, 40, 5), np.float32), np.eye(4)), path)
        >>> read_nifti(path)[0].shape
        (5, 48, 40, 1)
    """
    img, data = _load(path)
    _check_data(path, data)
    if not nifti_spacing_known(img):
        log.warning(
            "%s: the header gives no voxel size (a pixdim of 0, or an affine without a scale): sizes are reported "
            "in voxels, not mm^3; store the voxel size (e.g. nibabel's header.set_zooms) to get volumes",
            path,
        )
    return np.moveaxis(nifti_to_uint8(data), 2, 0), img  # Z x X x Y x C: slices first, as stored


def _decoded_data(img: Any, path: str | os.PathLike[str]) -> np.ndarray:
    """The image's data as nibabel gives it; a ``.nii.gz`` decompressed by ISA-L (``isal.igzip``), not zlib.

    Decompression was half of reading a 155-slice head; ISA-L's inflate takes half the time of zlib's and
    gives the same bytes. nibabel still parses the header and applies the scaling: it reads from the stream.
    """
    import nibabel as nib

    if not str(path).lower().endswith(".gz") or not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return np.asanyarray(img.dataobj)
    with igzip.open(path, "rb") as stream:
        return np.asanyarray(type(img).from_stream(stream).dataobj)


def _load(path: str | os.PathLike[str]) -> tuple[Any, np.ndarray]:
    """Load a NIfTI file as ``(image, X x Y x Z x C data)``, refusing unreadable files and unsupported shapes."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = _decoded_data(img, path)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        raise GliomasegError(f"{path}: unreadable or truncated NIfTI file ({type(err).__name__}: {err})") from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise GliomasegError(f"{path}: not a NIfTI-1/2 image ({type(img).__name__}); save it as .nii or .nii.gz")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise GliomasegError(f"{path}: NIfTI data type {data.dtype} is not a real number type")
    shape = data.shape
    if data.ndim == 5 and shape[3] == 1:  # NIfTI vector images store channels on the 5th axis
        data = data[:, :, :, 0, :]
    if data.ndim == 2:
        data = data[:, :, None, None]
    elif data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4 or data.shape[-1] not in (1, 3):
        raise GliomasegError(
            f"{path}: NIfTI shape {shape} is not supported; expected X x Y x Z (FLAIR) or X x Y x Z x C "
            "with C = 1 (FLAIR) or 3 (pre-contrast, FLAIR, post-contrast)"
        )
    return img, data


def read_nifti_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI file into a :class:`Volume` with its geometry (for the model's frame, see
    :mod:`gliomaseg.inference.orientation`).

    The checks of :func:`read_nifti` but the slice size, which is checked in the model's frame. A file
    whose header gives no orientation (qform and sform codes 0) is read as stored, as gliomaseg always
    did: first axis rows, second columns, last slices (``extra["as_stored"]``, with a warning).

    Args:
        path: a ``.nii``/``.nii.gz`` file (shapes as :func:`read_nifti`).

    Returns:
        ``X x Y x Z x C`` as stored (integer types kept, else float32), the header's affine, kind ``nifti``;
        ``extra["image"]`` is the nibabel image (its header for writers).

    Raises:
        GliomasegError: as :func:`read_nifti`, but for the slice size.
    """
    img, data = _load(path)
    _check_finite(Path(path), data)
    if not np.issubdtype(data.dtype, np.integer):  # integers kept: scaled exactly to uint8 in the model's frame
        data = data.astype(np.float32, copy=False)
    known = nifti_spacing_known(img)
    as_stored = int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 0
    affine = np.asarray(img.affine, float) if known else np.eye(4)
    if not known:
        log.warning(
            "%s: the header gives no voxel size (a pixdim of 0, or an affine without a scale): sizes are reported "
            "in voxels, not mm^3; store the voxel size (e.g. nibabel's header.set_zooms) to get volumes",
            path,
        )
    if as_stored or not known:
        _check_data(Path(path), data)  # read as stored: the stored axes' checks and warnings, as always
        log.warning(
            "%s: the header gives no orientation%s; read as stored (first axis rows, second columns, last "
            "axis slices): set its qform/sform (e.g. nibabel's set_qform) for gliomaseg to turn it",
            path,
            "" if known else " nor voxel sizes",
        )
    return Volume(data, affine, Path(path), "nifti", known, {"image": img, "as_stored": as_stored or not known})
