"""The memory budget of one input: pixels per slice, voxels and slices per scan, checked before decoding.

A small file can declare a huge image: a 17 KB 1-bit PNG of 12000 x 12000 pixels, a 95 KB
``.nii.gz`` of 98 MB of int8 that nibabel returns as float64 (its ``scl_slope`` is set), a zip of
5000 tiny slices. Every scan ``predict`` reads and every upload of the web page is therefore
measured from its headers first (Pillow's lazy open gives an image's size and mode before any
pixel is decoded; the NIfTI header gives the shape, one voxel gives the dtype actually returned)
and refused before decoding when it is over :class:`Limits`. Each message names the limit and
the flag that raises it (``gliomaseg predict --max-voxels N``, ``gliomaseg serve --max-voxels N``).

Why these defaults: a request of the web page costs at most about 40 bytes per voxel at its
peak (the decoded data, the uint8 volume, the normalisation in float32 at the input's resolution,
the probabilities, the mask, the pictures of one slice), measured by ``benchmarks/bombs_web.py``
(docs/reliability.md): with :data:`DEFAULT_LIMITS` the largest accepted scan took 0.66 GB besides
the model. 16.8 M voxels is a 256 x 256 x 256 volume (BraTS volumes have 8.9 M), 2048 x 2048
pixels per slice is twice the side of the largest MRI slices, and 1024 slices is more than any
MRI series.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gliomaseg.errors import GliomasegError

if TYPE_CHECKING:  # this module is imported by the command line's parser: it stays free of numpy and nibabel
    from gliomaseg.inference.inputs import Case

__all__ = ["DECODED_BYTES_PER_VOXEL", "DEFAULT_LIMITS", "LIMIT_FLAGS", "Limits", "check_case", "image_size"]

#: The flag that raises each limit (the same spelling in ``predict`` and ``serve``).
LIMIT_FLAGS = {"max_slice_pixels": "--max-slice-pixels", "max_voxels": "--max-voxels", "max_slices": "--max-slices"}
#: Bytes per voxel a decoded scan may take: three channels of float32, the most the pipeline itself
#: makes of a voxel. A NIfTI whose data come out wider (float64 from scaling, several channels) is
#: counted at its real size against ``max_voxels`` x this.
DECODED_BYTES_PER_VOXEL = 12
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How large one scan may be once decoded.

    Attributes:
        max_slice_pixels: pixels per slice (``H x W``).
        max_voxels: voxels per scan (``S x H x W``); the decoded data may take at most this many
            times :data:`DECODED_BYTES_PER_VOXEL` bytes.
        max_slices: slices per scan (files of a folder or zip; the last spatial axis of a NIfTI).
        command: the sub-command whose flags raise the limits, for messages (``predict``, ``serve``).
    """

    max_slice_pixels: int = 2048 * 2048
    max_voxels: int = 2**24
    max_slices: int = 1024
    command: str = "predict"

    def __post_init__(self) -> None:
        for name, flag in LIMIT_FLAGS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GliomasegError(f"{flag} {value!r}: must be a whole number >= 1")

    @property
    def max_decoded_bytes(self) -> int:
        """The most bytes a scan's decoded data may take: ``max_voxels`` x :data:`DECODED_BYTES_PER_VOXEL`."""
        return self.max_voxels * DECODED_BYTES_PER_VOXEL

    def refuse(self, name: str, what: str) -> GliomasegError:
        """The error for a scan over limit ``name`` (a field name): ``what`` says by how much."""
        flag = LIMIT_FLAGS[name]
        return GliomasegError(
            f"{what}, over the limit of {getattr(self, name):,} ({flag}); crop or downsample it, or raise the "
            f"limit with gliomaseg {self.command} {flag} N"
        )


DEFAULT_LIMITS = Limits()


def _header_size(path: Path) -> tuple[int, int] | int | None:
    """``(width, height)`` from the header, the pixel count Pillow's own bomb check refused, or None."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # this check is ours to make
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as err:  # over twice Pillow's MAX_IMAGE_PIXELS: refused at open
        found = re.search(r"\((\d+) pixels\)", str(err))
        return int(found.group(1)) if found else 2 * int(Image.MAX_IMAGE_PIXELS or 0) + 1
    except Exception:  # noqa: BLE001 - any other failure is reported by the reader with the reason
        return None


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image from its header (Pillow's lazy open decodes no pixel), or None
    when the file cannot be opened (the full read then reports why)."""
    size = _header_size(path)
    return size if isinstance(size, tuple) else None


def _check_nifti(case: Case, limits: Limits) -> None:
    from gliomaseg.inference.nifti import nifti_decoded_size

    shape, stored, dtype = nifti_decoded_size(case.source)
    name = case.source.name
    if len(shape) < 2:
        return  # read_nifti refuses the shape with its own message
    spatial = shape[:3]
    pixels = spatial[0] * spatial[1]
    slices = spatial[2] if len(spatial) == 3 else 1
    voxels = pixels * slices
    values = math.prod(shape)
    if pixels > limits.max_slice_pixels:
        raise limits.refuse("max_slice_pixels", f"{name}: slices of {spatial[0]} x {spatial[1]} = {pixels:,} pixels")
    if slices > limits.max_slices:
        raise limits.refuse("max_slices", f"{name}: {slices:,} slices")
    if voxels > limits.max_voxels:
        raise limits.refuse("max_voxels", f"{name}: {' x '.join(map(str, spatial))} = {voxels:,} voxels")
    n_bytes = values * dtype.itemsize
    if n_bytes > limits.max_decoded_bytes:
        scaled = f", stored as {stored.name} and scaled by its header" if stored != dtype else ""
        raise GliomasegError(
            f"{name}: its data decode to {n_bytes / _MB:,.0f} MB ({values:,} values of {dtype.name}{scaled}), over "
            f"the {limits.max_decoded_bytes / _MB:,.0f} MB that {LIMIT_FLAGS['max_voxels']} {limits.max_voxels:,} "
            f"allows ({DECODED_BYTES_PER_VOXEL} bytes a voxel); crop it, or raise the limit with gliomaseg "
            f"{limits.command} {LIMIT_FLAGS['max_voxels']} N"
        )


def _check_images(case: Case, limits: Limits) -> None:
    where = case.source.name or str(case.source)
    if len(case.files) > limits.max_slices:
        raise limits.refuse("max_slices", f"{where}: {len(case.files):,} slices of {case.name!r}")
    total = 0
    for path in case.files:
        size = _header_size(path)
        if size is None:
            continue
        pixels = size[0] * size[1] if isinstance(size, tuple) else size
        if pixels > limits.max_slice_pixels:
            shown = f"{size[0]} x {size[1]} = " if isinstance(size, tuple) else ""
            raise limits.refuse("max_slice_pixels", f"{path.name}: {shown}{pixels:,} pixels")
        total += pixels
        if total > limits.max_voxels:
            raise limits.refuse("max_voxels", f"{where}: the slices of {case.name!r} hold over {total:,} voxels")


def check_case(case: Case, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse a case over ``limits`` from its headers, before any pixel is decoded.

    Args:
        case: a case from :func:`~gliomaseg.inference.inputs.discover_inputs` (not read yet).
        limits: the budget.

    Raises:
        GliomasegError: naming the file, the size found, the limit and the flag that raises it.
            Files whose header cannot be read are left to the reader, which says why.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> from gliomaseg.inference.inputs import discover_inputs
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> Image.new("1", (12000, 12000)).save(tmp / "bomb.png")  # about 17 KB on disk
        >>> try:
        ...     check_case(discover_inputs([tmp / "bomb.png"], tmp / "out")[0])
        ... except GliomasegError as err:
        ...     print(str(err)[:73])
        bomb.png: 12000 x 12000 = 144,000,000 pixels, over the limit of 4,194,304
    """
    if case.kind == "nifti":
        _check_nifti(case, limits)
    else:
        _check_images(case, limits)
