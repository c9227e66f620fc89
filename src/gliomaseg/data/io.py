"""Reading and writing single MRI slices and masks, with validation.

A slice image is ``H x W x 3`` uint8 with channels (pre-contrast, FLAIR, post-contrast), as in the
Kaggle ``kaggle_3m`` dataset; a mask is ``H x W`` uint8 in {0, 1} in memory and {0, 255} on disk.
Every reader raises ``ValueError`` naming the file and what was expected, so a bad file in a user's
folder is easy to find and fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.utils import atomic_write

__all__ = [
    "IMAGE_SUFFIXES",
    "KAGGLE_3M_ORIENTATION",
    "LOSSLESS_SUFFIXES",
    "mask_suffix",
    "read_image",
    "read_image_any",
    "read_mask",
    "write_image",
    "write_mask",
]

#: File suffixes the readers accept (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
"""Every slice image type gliomaseg reads (lower case)."""
LOSSLESS_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png")
"""The types a dataset's slices and masks may have: a mask must stay exactly binary, so no JPEG."""

KAGGLE_3M_ORIENTATION: tuple[str, str, str] = ("P", "L", "S")
"""Where kaggle_3m's (row, column, slice) indices point, as nibabel axis codes (the direction of increase).

Found from the data (issue 24): on every patient looked at (sites CS, DU, FG, HT) the nose, orbits and
frontal sinus are in the top rows and the cerebellum in the bottom rows (rows run anterior ->
posterior: ``P``), and slice 1 shows the skull base, orbits and cerebellum while the last slices show
the vertex (slices run inferior -> superior: ``S``). Left and right cannot be told from anatomy; the
radiological display convention (the patient's right on the image's left, so columns run right ->
left: ``L``) is assumed. A model trained on kaggle_3m sees its slices in this frame.
"""


def mask_suffix(image_suffix: str) -> str:
    """The suffix a predicted mask of an image of this type is written with (JPEG -> PNG: lossless).

    Example:
        >>> mask_suffix(".JPG"), mask_suffix(".tif")
        ('.png', '.tif')
    """
    suffix = image_suffix.lower()
    return suffix if suffix in LOSSLESS_SUFFIXES else ".png"


_EXPECTED_IMAGE = "expected H x W x 3 uint8 (pre-contrast, FLAIR, post-contrast)"
_EXPECTED_ANY = "expected H x W (grey) or H x W x 3 (pre-contrast, FLAIR, post-contrast) uint8"
_EXPECTED_MASK = "expected an H x W uint8 mask with values {0, 1} or {0, 255}"

_PIL_FORMATS = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


class _FormatError(Exception):
    """A decodable file with the wrong channels or bit depth (kept apart from 'unreadable')."""


_RAW_BITS = re.compile(r";(\d+)")


def _bits_per_sample(im: Image.Image) -> int:
    """Bits per stored sample, read before decoding: Pillow opens 16-bit RGB TIFF and PNG files as 8-bit
    ``RGB`` and silently drops the low byte, so the depth must come from the file itself."""
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    bits = 8
    for tile in im.tile:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        match = _RAW_BITS.search(rawmode) if isinstance(rawmode, str) else None
        bits = max(bits, int(match.group(1))) if match else bits
    return bits


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise GliomasegError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")


def _load(path: str | os.PathLike[str], expected: str) -> np.ndarray:
    """Decode a file fully into an array (Pillow's modes mapped to plain numpy arrays).

    Palette and bilevel images are expanded so their values mean what they show; a constant-opaque
    alpha channel is dropped, any other alpha is an error because dropping it would change the image.
    """
    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise GliomasegError(f"{path}: file not found ({expected})")
    try:
        with Image.open(path) as im:
            bits = _bits_per_sample(im)
            if bits > 8:
                dtype = {"F": "float32", "I": "int32"}.get(im.mode, f"uint{bits}")
                raise _FormatError(
                    f"{path}: {bits}-bit samples (dtype {dtype}, mode {im.mode}); {expected}. Convert it to "
                    "8 bits per channel (rescale its intensities to 0-255): gliomaseg does not guess how to "
                    "reduce them."
                )
            # load() decodes everything, so a truncated file fails here rather than later.
            im.load()
            # Pillow silently keeps only the first sample of TIFFs with unusual channel counts (e.g. 2).
            samples = getattr(im, "tag_v2", {}).get(277) if im.format == "TIFF" else None
            if samples is not None and samples != len(im.getbands()):
                raise _FormatError(f"{path}: TIFF has {samples} channels; {expected}.")
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode == "PA":
                im = im.convert("RGBA")
            mode = im.mode
            arr = np.asarray(im)
    except _FormatError as err:
        raise GliomasegError(str(err)) from None
    except PermissionError as err:
        raise GliomasegError(f"{path}: cannot read it (permission denied); fix its permissions") from err
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise GliomasegError(
            f"{path}: unreadable or truncated image file ({err}); {expected}. Re-export or re-download it."
        ) from err
    if mode in ("RGBA", "LA"):
        alpha = arr[..., -1]
        if not np.all(alpha == 255):
            raise GliomasegError(
                f"{path}: has a transparency (alpha) channel that is not fully opaque; {expected}. "
                "Save it without transparency."
            )
        arr = arr[..., :-1]
    if mode not in ("RGB", "RGBA", "L", "LA"):
        raise GliomasegError(
            f"{path}: image mode {mode!r} (dtype {arr.dtype}, shape {arr.shape}); {expected}. "
            "Convert it to 8-bit RGB (or 8-bit greyscale for masks)."
        )
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one three-channel slice.

    Args:
        path: a ``.tif``, ``.tiff``, ``.png``, ``.jpg`` or ``.jpeg`` file.

    Returns:
        ``H x W x 3`` uint8 array (pre-contrast, FLAIR, post-contrast).

    Raises:
        GliomasegError: the file is missing, unreadable or truncated, has the wrong dtype (e.g. uint16),
            the wrong number of channels, or a non-opaque alpha channel.
    """
    arr = _load(path, _EXPECTED_IMAGE)
    if arr.ndim != 3 or arr.shape[2] != 3:
        shape = " x ".join(str(s) for s in arr.shape)
        raise GliomasegError(f"{Path(path)}: got shape {shape} ({arr.dtype}); {_EXPECTED_IMAGE}.")
    return arr


def read_image_any(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a slice that may be greyscale or three-channel (used for prediction on user images).

    Args:
        path: a ``.tif``, ``.tiff``, ``.png``, ``.jpg`` or ``.jpeg`` file.

    Returns:
        ``H x W x C`` uint8 array with ``C`` in {1, 3}.

    Raises:
        GliomasegError: as :func:`read_image`, except that one channel is accepted.
    """
    arr = _load(path, _EXPECTED_ANY)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != 3:
        shape = " x ".join(str(s) for s in arr.shape)
        raise GliomasegError(f"{Path(path)}: got shape {shape} ({arr.dtype}); {_EXPECTED_ANY}.")
    return arr


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one binary mask.

    Args:
        path: a ``.tif``, ``.tiff`` or ``.png`` file (``.jpg`` is read but its lossy values rarely pass).
            Values {0, 1} or {0, 255} (or only one of them); a three-channel mask is accepted when its
            channels are identical.

    Returns:
        ``H x W`` uint8 array with values in {0, 1} (never 255).

    Raises:
        GliomasegError: the file is unreadable, has more than one distinct channel, or holds other values
            (the message lists the unique values found).
    """
    path = Path(path)
    arr = _load(path, _EXPECTED_MASK)
    if arr.ndim == 3:
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, arr.shape[2])):
            raise GliomasegError(
                f"{path}: mask has {arr.shape[2]} channels that differ; {_EXPECTED_MASK}. "
                "Save the mask as a single-channel (greyscale) image."
            )
        arr = arr[..., 0]
    # max/count checks are ~10x faster than np.unique, which only runs to report a bad mask.
    top = int(arr.max()) if arr.size else 0
    binary = top <= 1 or (top == 255 and np.count_nonzero(arr) == np.count_nonzero(arr == 255))
    if not binary:
        values = np.unique(arr)
        shown = ", ".join(str(v) for v in values[:10].tolist()) + (", ..." if values.size > 10 else "")
        raise GliomasegError(
            f"{path}: mask values {{{shown}}} are not binary; {_EXPECTED_MASK}. "
            "Threshold it (and save as lossless TIFF/PNG, not JPEG)."
        )
    return (arr > 0).astype(np.uint8)


def _atomic_save(path: Path, img: Image.Image, overwrite: bool) -> Path:
    suffix = path.suffix.lower()
    if suffix not in _PIL_FORMATS:
        raise GliomasegError(f"{path}: cannot write {suffix!r}; use one of {', '.join(_PIL_FORMATS)}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    return atomic_write(path, lambda tmp: img.save(tmp, format=_PIL_FORMATS[suffix]))


def write_image(path: str | os.PathLike[str], image: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a slice image atomically (TIFF, PNG or JPEG by suffix).

    Args:
        path: target file; its parent folder is created.
        image: ``H x W x 3`` or ``H x W`` uint8 array.
        overwrite: replace an existing file.

    Returns:
        The written path.

    Raises:
        TypeError: ``image`` is not uint8.
        GliomasegError: wrong shape or unsupported suffix.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"write_image({path}): expected uint8, got {image.dtype}; convert with np.uint8")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise GliomasegError(f"write_image({path}): expected H x W x 3 or H x W, got shape {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return _atomic_save(Path(path), Image.fromarray(np.ascontiguousarray(image)), overwrite)


def write_mask(path: str | os.PathLike[str], mask: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a binary mask atomically as uint8 0/255 (TIFF or PNG by suffix).

    Args:
        path: target file; its parent folder is created.
        mask: ``H x W`` (or ``H x W x 1``) bool or integer array with values in {0, 1} or {0, 255}.
        overwrite: replace an existing file.

    Returns:
        The written path.

    Raises:
        GliomasegError: wrong shape, non-binary values, or a lossy/unsupported suffix.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise GliomasegError(f"write_mask({path}): JPEG is lossy and corrupts binary masks; use .tif or .png")
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise GliomasegError(f"write_mask({path}): expected an H x W mask, got shape {mask.shape}")
    values = set(np.unique(mask).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):
        shown = sorted(values)[:10]
        raise GliomasegError(f"write_mask({path}): mask values {shown} are not in {{0, 1}} or {{0, 255}}")
    out = np.where(mask > 0, 255, 0).astype(np.uint8)
    return _atomic_save(path, Image.fromarray(out), overwrite)
